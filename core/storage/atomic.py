"""Atomic file writes: a crash, a full disk or a stop never leaves a half-written file in place."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO, Callable

from ..errors import OutputExistsError, StorageError

TEMP_SUFFIX = ".tmp"
# Below this much free space a failed write is reported as a full disk (torch's zip writer says
# "unexpected pos ..." instead of ENOSPC when the disk fills up).
NEARLY_FULL_BYTES = 64 * 2**20


def atomic_write(path: str | Path, write: Callable[[IO], None], text: bool = False, replace: bool = True) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then rename it over ``path``.

    Raises StorageError, with a message for the user, when the disk is full or the folder cannot
    be written; the previous file, if any, is left untouched. With ``replace=False`` a file that
    exists at ``path`` when the new one is put in place (even one created meanwhile by another
    program) is kept and OutputExistsError is raised.
    """
    return atomic_write_together([(path, write, text)], replace)[0]


def atomic_write_together(files: list[tuple[str | Path, Callable[[IO], None], bool]], replace: bool = True) -> list[Path]:
    """Write files that belong together (a network and the sidecar that describes it) as atomic_write
    does each: ``files`` is (path, write, text) per file. Every file is written to its temporary file
    first, and only then are they put in place, so a full disk or a failed write leaves all the earlier
    files as they were, never a new one beside an old one it does not match."""
    temps: list[tuple[Path, Path]] = []
    published: list[Path] = []
    current = Path(files[0][0])
    try:
        for path, write, text in files:
            current = Path(path)
            temps.append((_write_temporary(current, write, text), current))
        for tmp, path in temps:
            current = path
            if replace:
                os.replace(tmp, path)
            else:
                _publish_without_replacing(tmp, path)
            published.append(path)
    except BaseException as exc:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        if not replace:  # these were new files: take them back rather than leave part of the set
            for path in published:
                path.unlink(missing_ok=True)
        if isinstance(exc, (StorageError, OutputExistsError)):
            raise
        if isinstance(exc, OSError) or (isinstance(exc, RuntimeError) and _looks_like_write_failure(exc)):
            raise storage_error(current, exc) from exc
        raise
    return [path for _, path in temps]


def _write_temporary(path: Path, write: Callable[[IO], None], text: bool) -> Path:
    """A temporary file beside ``path`` holding what ``write`` wrote (removed again if writing fails)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=TEMP_SUFFIX)
    try:
        # Text: file names with undecodable bytes are written escaped rather than failing the write.
        opened = os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", newline="") if text else os.fdopen(fd, "wb")
        with opened as fh:
            write(fh)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _publish_without_replacing(tmp: Path, path: Path) -> None:
    """Put ``tmp`` in place as ``path`` only if nothing is there, in one step the file system checks."""
    try:
        if os.name == "nt":
            os.rename(tmp, path)  # Windows' rename never replaces an existing file
        else:
            os.link(tmp, path)  # a hard link fails with EEXIST instead of replacing
            tmp.unlink()
        return
    except FileExistsError:
        raise OutputExistsError(
            f"'{path}' appeared while it was being written (another program?) and was kept; nothing was replaced. "
            "Choose another name."
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
            raise
    # A file system without hard links (FAT, some network shares): check, then rename.
    if os.path.lexists(path):
        raise OutputExistsError(f"'{path}' appeared while it was being written and was kept; nothing was replaced. "
                                "Choose another name.")
    os.replace(tmp, path)


def _looks_like_write_failure(exc: RuntimeError) -> bool:
    text = str(exc)
    return "unexpected pos" in text or "file write failed" in text


def storage_error(path: Path, exc: BaseException) -> StorageError:
    """A user message for a failed write: full disk, read-only folder or missing permission."""
    code = getattr(exc, "errno", None)
    # A read-only or forbidden folder says so even when its disk has little space left (a read-only
    # medium or share often reports none at all).
    if code not in (errno.EACCES, errno.EPERM, errno.EROFS) and (
            code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)) or _free_bytes(path) < NEARLY_FULL_BYTES):
        free = _free_bytes(path)
        left = f" ({free / 2**20:.1f} MB left)" if free != float("inf") else ""
        return StorageError(
            f"The disk holding '{path.parent}' is full{left}, so '{path.name}' could not be saved. "
            "Free some space (or choose a folder on another disk) and try again; earlier files were kept."
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(
            f"'{path.parent}' cannot be written (permission denied or read-only), so '{path.name}' could not "
            "be saved. Choose a folder you can write to."
        )
    if code in (errno.ENOTDIR, errno.EEXIST):
        return StorageError(f"'{path.parent}' is a file, not a folder, so '{path.name}' could not be saved. Choose a folder.")
    reason = getattr(exc, "strerror", None) or str(exc)
    return StorageError(f"'{path}' could not be saved ({reason}). Check the disk and the folder's permissions.")


def _free_bytes(path: Path) -> float:
    for folder in (path.parent, *path.parent.parents):
        if folder.exists():
            try:
                return float(shutil.disk_usage(folder).free)
            except OSError:
                return float("inf")
    return float("inf")


def remove_orphan_temp_files(folder: str | Path, older_than_s: float = 0.0) -> list[Path]:
    """Delete temporary files that a killed process left behind (only call when nothing writes there)."""
    removed = []
    now = time.time()
    try:
        candidates = list(Path(folder).glob(f".*{TEMP_SUFFIX}"))
    except OSError:
        return removed
    for tmp in candidates:
        try:
            if tmp.is_file() and now - tmp.stat().st_mtime >= older_than_s:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue  # another process's file, or a read-only folder: harmless to leave
    return removed
