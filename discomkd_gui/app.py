"""Entry point of ``discomkd-gui``: show the window first, load PyTorch afterwards."""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="discomkd-gui", description="DisCoM-KD Studio: cross-modal training and prediction.")
    parser.add_argument("--demo", action="store_true", help="open with the embedded demo modalities loaded")
    parser.add_argument("--self-test", action="store_true", help="check the installation (no window) and exit")
    parser.add_argument("--model", metavar="FILE", help="open a .discomkd model on the Predict page")
    args, _qt_args = parser.parse_known_args(argv)
    return args


def create_application(argv: list[str] | None = None):
    """The QApplication with the house style (reused when one exists, as under pytest-qt)."""
    from PySide6.QtCore import QObject
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv)
    app.setApplicationName("DisCoM-KD Studio")
    app.setOrganizationName("DisCoM-KD")
    app.setApplicationDisplayName("DisCoM-KD Studio")
    app.setDesktopFileName("discomkd-studio")
    app.setStyle("Fusion")
    from .resources import app_icon, style_sheet

    app.setWindowIcon(app_icon())
    from .jobs import stop_all_jobs

    app.aboutToQuit.connect(stop_all_jobs)
    app.setStyleSheet(style_sheet())
    # Hand the GIL to the GUI thread faster while a job computes (the default 5 ms makes
    # each of the many GIL hand-overs in a repaint wait behind the training thread).
    sys.setswitchinterval(0.0005)
    if app.findChild(QObject, "refcountGuard") is None:
        from .refcount_guard import install

        install(app)
    return app


def create_main_window(demo: bool = False, model: str | None = None, restore_session: bool = True):
    """Build the window; with ``demo`` the demo modalities are added (scanned in the background)."""
    from .main_window import MainWindow

    window = MainWindow()
    if demo:
        window.data_page.add_demo()
    elif restore_session:
        window.restore_last_modalities()
    if model:
        window.open_model(model)
    return window


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.self_test:
        from discomkd_gui.self_test import main as self_test  # written for packaging checks

        sys.exit(self_test())
    app = create_application(sys.argv if argv is None else [sys.argv[0], *argv])
    window = create_main_window(demo=args.demo, model=args.model)
    window.show()
    from PySide6.QtCore import QTimer

    QTimer.singleShot(0, window.start_background_setup)  # PyTorch loads after the window is up
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
