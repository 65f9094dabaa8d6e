"""The lock a training holds on its run folder (``train.lock``): who holds it, whether that process
still lives (on this computer), and taking over a stale one. Standard library only."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..errors import RunFolderError
from .atomic import storage_error

LOCK_FILE = "train.lock"


@dataclass
class LockOwner:
    """Who holds a run folder's lock, read from ``train.lock``."""

    pid: int
    host: str
    started: str = ""
    process_start: str | None = None  # Linux: the process start time, so a reused pid is not mistaken
    being_written: bool = False  # created an instant ago, its owner still writing it

    @property
    def alive(self) -> bool:
        if self.being_written:
            return True
        if self.host != socket.gethostname():
            return True  # another computer (shared folder): we cannot tell, so never steal its lock
        return _process_alive(self.pid) and (self.process_start is None or self.process_start == _process_start(self.pid))

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}, since {self.started or 'an unknown time'}"


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.OpenProcess.restype = ctypes.c_void_p  # a HANDLE, not a 32-bit int
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() == 5  # access denied: it exists
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(ctypes.c_void_p(handle), ctypes.byref(code))
        kernel32.CloseHandle(ctypes.c_void_p(handle))
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def lock_owner(run_dir: Path) -> LockOwner | None:
    """The lock's holder, None when the folder is not locked. A damaged lock file counts as stale."""
    return lock_owner_file(Path(run_dir) / LOCK_FILE)


def lock_owner_file(path: Path) -> LockOwner | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockOwner(int(data["pid"]), str(data["host"]), str(data.get("started", "")), data.get("process_start"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # Unreadable: being written this instant, or left by a process killed while writing it.
        try:
            fresh = time.time() - path.stat().st_mtime < 10
        except OSError:
            fresh = False
        return LockOwner(-1, socket.gethostname(), being_written=fresh)


class RunLock:
    """Exclusive claim of a run folder by one training (a ``train.lock`` file created with O_EXCL).

    The file holds the owner's pid and host; a lock whose process has ended (killed, crashed) is
    stale and is taken over. Standard library only, so it works the same on Linux, macOS and Windows.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.held = False

    def acquire(self) -> "RunLock":
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = lock_owner(self.run_dir)
                if owner is not None and owner.alive:
                    elsewhere = ("" if owner.host == socket.gethostname() else
                                 f" If no training runs on {owner.host} any more, delete '{self.path}'.")
                    raise RunFolderError(
                        f"Another training is writing to '{self.run_dir}' ({owner.describe()}). Wait for it to end, "
                        f"or choose another run folder.{elsewhere}"
                    ) from None
                self._remove_stale(owner)
                continue
            except OSError as exc:
                raise storage_error(self.path, exc) from exc
            owner = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": datetime.now().isoformat(timespec="seconds"), "process_start": _process_start(os.getpid())}
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(owner))
            self.held = True
            return self
        raise RunFolderError(f"'{self.run_dir}' could not be locked for training; try again.")

    def _remove_stale(self, stale: LockOwner | None) -> None:
        # Move the lock aside, then check it is the stale one we saw: two processes that found the
        # same stale lock must not remove the fresh lock the faster one has just created.
        aside = self.path.with_name(f".{LOCK_FILE}-{os.getpid()}.stale")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise storage_error(self.path, exc) from exc
        moved = lock_owner_file(aside)
        if stale is not None and moved is not None and moved.pid != stale.pid and moved.alive:
            os.replace(aside, self.path)  # a live lock: put it back
            return
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.held = False
            owner = lock_owner(self.run_dir)
            if owner is not None and owner.pid == os.getpid():
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
