"""Entry point of ``discomkd-gui``: show the window first, load PyTorch afterwards."""

from __future__ import annotations

import argparse
import sys

# Re-exported: tests and scripts build the window from discomkd_gui.app.
from .startup import create_application, create_main_window


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="discomkd-gui", description="DisCoM-KD Studio: cross-modal training and prediction.")
    parser.add_argument("--demo", action="store_true", help="open with the embedded demo modalities loaded")
    parser.add_argument("--self-test", action="store_true", help="check the installation (no window) and exit")
    parser.add_argument("--model", metavar="FILE", help="open a .discomkd model on the Predict page")
    args, _qt_args = parser.parse_known_args(argv)
    return args


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
