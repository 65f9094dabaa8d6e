"""Files and folders the user names for output: one rule for every command and page that writes one.

The rule (docs/architecture.md, "Output paths"):

1. An output is checked before any work (reading data, training, predicting, exporting): it is
   not a folder when a file is meant (nor a file when a folder is meant), it is not under a file,
   and its folder can be written.
2. An existing file is replaced only when the user asked for it (``replace=True``: ``--force`` on
   the command line, the app's overwrite confirmation); otherwise OutputExistsError. The final
   write (storage.atomic) checks again, so a file that appears meanwhile is kept too.
3. Never one of the command's own inputs, even when asked: the model bundle, a file being
   classified, a data folder or anything inside one (files written there would be read as data);
   nor anything inside a data folder the model or run was trained on (``data_folders``), which the
   command does not read but a later training would.

Run folders have their own rule on top (a folder that is not a run is never claimed as one), in
runs.claim_run_dir with check_run_folder_location below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, IO, Iterable

from ..errors import OutputExistsError, OutputPathError, RunFolderError
from .atomic import atomic_write
from .run_files import RUN_FILE, RUN_WRITTEN_FILES
from .run_lock import LOCK_FILE

REPLACE_HINT = "Choose another name, or replace it on purpose (--force on the command line; the app asks first)."


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare the path as written
        return path


def _is_within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it, symlinks followed."""
    path, folder = _resolved(path), _resolved(folder)
    if path == folder or folder in path.parents:
        return True
    # On a case-insensitive file system (macOS, Windows) 'Data/Image' is 'data/image' under another
    # name, which comparing names misses: ask the file system about each existing folder above.
    if not folder.is_dir():
        return False
    for candidate in (path, *path.parents):
        try:
            if os.path.samefile(candidate, folder):
                return True
        except OSError:  # not there (yet)
            continue
    return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # hard links and symlinks included
    except OSError:
        return _resolved(a) == _resolved(b)


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor)  # not reached for an absolute path: its root exists


def _check_can_create_in(folder: Path, what: str, target: Path) -> None:
    """``folder`` (which may not exist yet) can hold ``target``: nothing above it is a file, and the
    nearest existing folder can be written."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise OutputPathError(f"'{existing}' is a file, so {what} '{target}' cannot be written under it. "
                              "Choose a path in a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"'{existing}' cannot be written (permission denied or read-only), so {what} "
                              f"'{target}' cannot be saved there. Choose a folder you can write to.")


def _input_paths(inputs: Iterable[str | Path]) -> list[Path]:
    return [_absolute(p) for p in inputs if p is not None and str(p) != ""]


def _check_not_an_input(target: Path, inputs: list[Path], what: str, data_folders: list[Path] = ()) -> None:
    # The input itself first (the more telling message), then "inside an input folder", then "inside
    # a training folder" (which this command does not read: saying it does would be untrue).
    for source in inputs:
        if not source.is_dir() and os.path.lexists(target) and os.path.exists(source) and _same_file(target, source):
            raise OutputPathError(
                f"'{target}' is one of this command's inputs ('{source}'), so it is never replaced, even when "
                "replacing is allowed. Choose another file name.")
    for source in inputs:
        if source.is_dir() and _is_within(target, source):
            raise OutputPathError(
                f"{what[0].upper()}{what[1:]} '{target}' would be inside '{source}', which this command reads as "
                f"input (what is written there would later be read as data). Choose a path outside '{source}'.")
    for source in data_folders:
        if _is_within(target, source):
            raise OutputPathError(
                f"{what[0].upper()}{what[1:]} '{target}' would be inside '{source}', a data folder the model was "
                f"trained on (what is written there would be read as data by a later training). Choose a path "
                f"outside '{source}'.")


def _check_not_a_run_file(target: Path, what: str) -> None:
    """A file a training run wrote (or will write) in its folder is the run's, never an output's:
    writing a CSV over run.json or a network over checkpoint.pt would break that run for good."""
    folder = _resolved(target.parent)
    name = target.name.casefold()  # 'RUN.JSON' is run.json on a case-insensitive file system
    if not (folder / RUN_FILE).is_file():
        return
    if name in {n.casefold() for n in RUN_WRITTEN_FILES} or name.startswith(f".{LOCK_FILE}".casefold()):
        raise OutputPathError(
            f"{what[0].upper()}{what[1:]} '{target}' would be the file '{target.name}' of the training run in "
            f"'{folder}' (its record, history, checkpoint or model), so it is never written there, even when "
            "replacing is allowed. Choose another file name, or a folder outside the run.")


def check_output_file(path: str | Path, inputs: Iterable[str | Path] = (), replace: bool = False,
                      what: str = "the output file", data_folders: Iterable[str | Path] = ()) -> Path:
    """Check a file the user named for output before any work; return it as an absolute path.

    Raises OutputPathError (a folder, a name ending in a slash, under a file, not writable, one of
    ``inputs`` or inside an input folder or one of ``data_folders`` (the model's or run's training
    folders), one of a run folder's own files) or OutputExistsError (it exists and ``replace`` is False).
    """
    if path is None or not str(path).strip():
        raise OutputPathError(f"No name was given for {what}. Give a file name.")
    target = _absolute(path)
    if target.is_dir():
        raise OutputPathError(f"'{target}' is a folder; {what} must be a file. Give a file name, for example "
                              f"'{target / 'output'}'.")
    if str(path).endswith(("/", os.sep)):  # 'results/' names a folder: never written as a file 'results'
        raise OutputPathError(f"'{path}' ends with a slash, so it names a folder; {what} must be a file. Give a "
                              f"file name, for example '{target / 'output'}'.")
    _check_can_create_in(target.parent, what, target)
    _check_not_an_input(target, _input_paths(inputs), what, _input_paths(data_folders))
    _check_not_a_run_file(target, what)
    if os.path.lexists(target) and not replace:
        raise OutputExistsError(f"'{target}' already exists and was not replaced. {REPLACE_HINT}")
    return target


def check_output_folder(path: str | Path, inputs: Iterable[str | Path] = (), files: Iterable[str] = (),
                        replace: bool = False, what: str = "the output folder",
                        data_folders: Iterable[str | Path] = ()) -> Path:
    """Check a folder the user named for output, and the ``files`` that will be written in it, before
    any work; return it as an absolute path. Raises OutputPathError or OutputExistsError."""
    if path is None or not str(path).strip():
        raise OutputPathError(f"No folder was given for {what}. Give a folder.")
    target = _absolute(path)
    if os.path.lexists(target) and not target.is_dir():
        raise OutputPathError(f"'{target}' is a file, not a folder; {what} must be a folder. Choose a folder.")
    _check_can_create_in(target, what, target)
    input_paths, data_paths = _input_paths(inputs), _input_paths(data_folders)
    _check_not_an_input(target, input_paths, what, data_paths)
    for name in files:
        check_output_file(target / name, input_paths, replace, what=f"'{name}'", data_folders=data_paths)
    return target


def write_output_file(path: str | Path, write: Callable[[IO], None], inputs: Iterable[str | Path] = (),
                      replace: bool = False, text: bool = False, what: str = "the output file",
                      data_folders: Iterable[str | Path] = ()) -> Path:
    """Check ``path`` by the rule above, then write it atomically (never replacing unless ``replace``)."""
    target = check_output_file(path, inputs, replace, what, data_folders)
    return atomic_write(target, write, text=text, replace=replace)


# ----- run folders -----------------------------------------------------------------------------

def check_run_folder_location(run_dir: str | Path, data_folders: Iterable[str | Path]) -> None:
    """A run folder is not under a file, never a data folder, nor inside one (its files would be
    read as a class), nor a folder that holds one. Raises RunFolderError."""
    target = _absolute(run_dir)
    existing = _nearest_existing(target)
    if existing != target and not existing.is_dir():
        raise RunFolderError(f"'{existing}' is a file, so the run folder '{target}' cannot be created under it. "
                             "Choose a folder for the run (or leave --out out).")
    for folder in _input_paths(data_folders):
        if _is_within(target, folder):
            where = "is the data folder" if _resolved(target) == _resolved(folder) else "is inside the data folder"
            raise RunFolderError(
                f"The run folder '{target}' {where} '{folder}'; the run's files would be read as data (a class "
                "folder) by the next training. Choose a run folder outside your data (or leave --out out).")
        if _is_within(folder, target):
            raise RunFolderError(
                f"The run folder '{target}' holds the data folder '{folder}'; deleting the run must never touch "
                "your data. Choose a new, empty folder for the run (or leave --out out).")
