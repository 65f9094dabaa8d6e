"""The command line's console: a courtesy that never stops the work.

A console can go away while a command runs: ``discomkd train ... | head`` closes the pipe, stdout
can be a full device, and a windowed or ``pythonw`` process has no console at all (``sys.stdout``
is None). Every command's output goes through :class:`ConsoleStream`, which drops what cannot be
shown from then on, so a training still finishes and is recorded, and nothing prints a traceback.
"""

from __future__ import annotations

import io
import os
import sys
from contextlib import contextmanager
from typing import Iterator, TextIO


class ConsoleStream:
    """sys.stdout or sys.stderr for a command: writes that fail (a closed pipe, a full device, a
    closed or missing stream) lose the console quietly instead of raising into the work."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self.lost = stream is None

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):  # ValueError: the stream was closed
                self._lose()
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._lose()

    def isatty(self) -> bool:
        if self.lost:
            return False
        try:
            return self._stream.isatty()
        except (OSError, ValueError):
            return False

    def writable(self) -> bool:
        return True

    def _lose(self) -> None:
        self.lost = True
        # Point the descriptor at the null device, so that the interpreter's own flush at exit
        # (of text still buffered) neither fails nor prints "Exception ignored ... BrokenPipeError".
        try:
            fd = self._stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass

    def __getattr__(self, name: str):
        return getattr(self._stream, name)  # encoding, errors, buffer … of the real stream


@contextmanager
def guarded_console() -> Iterator[tuple[ConsoleStream, ConsoleStream]]:
    """Within the block, sys.stdout and sys.stderr are ConsoleStreams; restored (and flushed) after."""
    saved = sys.stdout, sys.stderr
    out, err = ConsoleStream(sys.stdout), ConsoleStream(sys.stderr)
    sys.stdout, sys.stderr = out, err
    try:
        yield out, err
    finally:
        out.flush()  # a pipe closed by now is found here, not by the interpreter's flush at exit
        err.flush()
        sys.stdout, sys.stderr = saved
