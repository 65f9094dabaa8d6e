"""Entry script of the frozen application (build.spec): start the GUI, or run ``--self-test``."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen app must not re-run itself in worker processes

    from discomkd_gui.app import main

    sys.exit(main())
