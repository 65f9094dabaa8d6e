"""Work around a PySide6 6.12 bug on Python 3.11: every widget repaint drops one reference to
``None`` (and some to ``True``/``False``) that it never took.

On Python >= 3.12 these singletons are immortal and nothing happens. On 3.11 their reference
counts fall with every paint until CPython aborts with "Fatal Python error: none_dealloc" after
some hours of live plotting. The guard tops the counts up from time to time; the singletons are
never freed anyway, so a high count is harmless.
"""

from __future__ import annotations

import ctypes
import platform
import sys

FLOOR = 10_000_000
TOP_UP = 100_000_000
SINGLETONS = (None, True, False)


def needed() -> bool:
    return sys.version_info < (3, 12) and platform.python_implementation() == "CPython"


def top_up() -> None:
    """Raise the reference counts of None/True/False when they fall below ``FLOOR``."""
    if not needed():
        return
    for obj in SINGLETONS:
        if sys.getrefcount(obj) < FLOOR:
            # ob_refcnt is the first field of every CPython object.
            ctypes.c_ssize_t.from_address(id(obj)).value += TOP_UP


def install(parent) -> object | None:
    """Top up now and every 10 s (a QTimer owned by ``parent``, usually the QApplication)."""
    if not needed():
        return None
    from PySide6.QtCore import QTimer

    top_up()
    timer = QTimer(parent)
    timer.setObjectName("refcountGuard")
    timer.setInterval(10_000)
    timer.timeout.connect(top_up)
    timer.start()
    return timer
