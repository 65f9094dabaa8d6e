"""Start-up pieces of the application: the styled QApplication and the main window.

``app.main`` (the ``discomkd-gui`` entry point) and the installation self-test both build the
application with these; they live apart from app.py so that the self-test, which ``app.main`` runs
for ``--self-test``, never has to import the module that runs it.
"""

from __future__ import annotations

import sys


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
