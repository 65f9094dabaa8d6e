import sys

from discomkd_gui.app import main

sys.exit(main())
