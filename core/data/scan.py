"""Scanning a modality folder: class sub-folders, usable and skipped files, and the modality's
kind, channels and size guessed from a sample of its files."""

from __future__ import annotations

import os
import stat
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..storage.paths import printable_name
from .decoding import KINDS, STRAY_NAMES, file_kind, guess_npy_kind, npy_shape, read_raw
from .spec import AUGMENTATIONS, ModalitySpec, default_augmentation
from .spectrogram import SpectrogramSettings


UNLABELLED_FOLDERS = ("_unlabelled", "_unlabeled")  # a sub-folder of files without a class


def is_unlabelled_folder(cls: str) -> bool:
    """Whether a class folder is the _unlabelled one (read like a class, split off later: dataset.py)."""
    return cls.lower() in UNLABELLED_FOLDERS


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class FolderListing:
    classes: list[str]
    files: list[tuple[Path, str]]  # (path, class name)
    skipped: list[SkippedFile]
    # (size, modification time in ns) of each listed file, read once here: the cache key uses them,
    # so a file that disappears after the listing cannot end the reading with a traceback.
    stats: dict[Path, tuple[int, int]] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # class folders merged (see class_name)


def class_name(folder_name: str) -> str:
    """The class a folder stands for: its name in Unicode NFC form, without surrounding white space.

    Folders whose names differ only in these (``café`` typed on Linux and copied from macOS, ``cat `` with
    a trailing space) look identical to people, so they are one class, in one modality and across them."""
    return unicodedata.normalize("NFC", folder_name).strip()


def shown_name(name: str) -> str:
    """A folder name with every invisible difference visible: 'caf\\u00e9', 'cafe\\u0301', 'cat '."""
    return ascii(printable_name(name))


def _unreadable(exc: OSError, what: str = "file") -> str:
    if isinstance(exc, FileNotFoundError):
        return f"the {what} disappeared while the folder was read (or is a link to nothing)"
    if isinstance(exc, PermissionError):
        return f"cannot read the {what} (permission denied); check its permissions"
    return f"cannot read the {what} ({exc.strerror or exc})"


def checked_folder(folder: str | Path) -> Path:
    """A modality folder that exists and can be looked at; a DataError that says what to do otherwise."""
    if not str(folder).strip():  # Path("") is the current folder: never read all of it by accident
        raise DataError("No folder was given (the path is empty). Choose the folder that holds one sub-folder per class.")
    path = Path(folder).expanduser()
    try:
        exists = path.exists()
    except OSError as exc:  # a parent folder that may not be entered
        raise DataError(f"Cannot read the folder '{path}' ({exc.strerror or exc}). Check its permissions.") from exc
    if not exists:
        raise DataError(f"The folder '{path}' does not exist. Choose the folder that holds one sub-folder per class.")
    return path


def list_modality_folder(folder: str | Path) -> FolderListing:
    """Find class sub-folders and their files; strays, unsupported and unreadable entries are
    listed with a reason, never fatal and never silently left out."""
    folder = checked_folder(folder)
    if not folder.is_dir():
        raise DataError(f"'{folder}' is a file, not a folder. Choose the folder that holds one sub-folder per class.")
    skipped: list[SkippedFile] = []
    per_class: dict[str, list[tuple[Path, str]]] = {}
    stats: dict[Path, tuple[int, int]] = {}
    merged: dict[str, list[str]] = {}  # class -> the folder names it was read from
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise DataError(f"Cannot read the folder '{folder}' ({exc.strerror}). Check its permissions.") from exc
    for entry in entries:
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()
        except OSError as exc:
            skipped.append(SkippedFile(entry.name, _unreadable(exc, "entry")))
            continue
        if entry.name.lower() in STRAY_NAMES or (entry.name.startswith(".") and not is_dir):
            skipped.append(SkippedFile(entry.name, "system file, not data"))
            continue
        if is_file:
            skipped.append(SkippedFile(entry.name, "not inside a class folder"))
            continue
        if not is_dir:
            skipped.append(SkippedFile(entry.name, "not a file or a folder (a link to nothing, a pipe or a device)"))
            continue
        if entry.name.startswith("."):
            skipped.append(SkippedFile(entry.name + "/", "hidden folder (its name starts with '.'), not read as a "
                                       "class; rename it without the '.' to use it as one"))
            continue
        cls = class_name(entry.name)
        if not cls:
            skipped.append(SkippedFile(entry.name + "/", "the folder's name is only white space; give it the class name"))
            continue
        class_files = _class_files(folder, entry, cls, skipped, stats)
        if class_files:
            merged.setdefault(cls, []).append(entry.name)
            per_class.setdefault(cls, []).extend(class_files)
    refuse_case_only_differences(list(merged), f"'{folder}'")
    notices = [f"The folders {' and '.join(shown_name(n) for n in names)} differ only in invisible ways (Unicode "
               f"form or white space at the ends), so they were read as one class '{cls}'."
               for cls, names in merged.items() if len(names) > 1]
    files = [f for cls in merged for f in sorted(per_class[cls], key=lambda f: f[0])]
    return FolderListing(list(merged), files, skipped, stats, notices)


def _class_files(folder: Path, entry: Path, cls: str, skipped: list[SkippedFile],
                 stats: dict[Path, tuple[int, int]]) -> list[tuple[Path, str]]:
    """Every data file under one class folder (sub-folders included), sorted; the rest is listed as skipped."""
    def relative(path: str | Path) -> str:
        return str(Path(path).relative_to(folder))

    def folder_unreadable(exc: OSError) -> None:
        skipped.append(SkippedFile(relative(exc.filename) + "/", _unreadable(exc, "folder")))

    class_files = []
    for dirpath, dirnames, filenames in os.walk(entry, onerror=folder_unreadable):
        dirnames.sort()
        for d in [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            skipped.append(SkippedFile(relative(os.path.join(dirpath, d)) + "/", "a link to a folder, not followed"))
        for filename in filenames:
            path = Path(dirpath) / filename
            rel = relative(path)
            if any(part.startswith(".") for part in path.relative_to(entry).parts) or filename.lower() in STRAY_NAMES:
                skipped.append(SkippedFile(rel, "system file, not data"))
                continue
            if file_kind(path) is None:
                skipped.append(SkippedFile(rel, f"unsupported file type '{path.suffix or path.name}'"))
                continue
            try:
                st = path.stat()
            except OSError as exc:
                skipped.append(SkippedFile(rel, _unreadable(exc)))
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped.append(SkippedFile(rel, "not a regular file (a pipe, socket or device)"))
                continue
            stats[path] = (st.st_size, st.st_mtime_ns)
            class_files.append((path, cls))
    return class_files


def refuse_case_only_differences(classes: list[str], where: str) -> None:
    """Class names that differ only in letter case are refused: whether 'Cat' and 'cat' are one class
    or two cannot be known (on Windows and macOS they would be the same folder)."""
    by_fold: dict[str, list[str]] = {}
    for cls in classes:
        by_fold.setdefault(cls.casefold(), []).append(cls)
    clash = next((names for names in by_fold.values() if len(names) > 1), None)
    if clash:
        raise DataError(
            f"The class folders {' and '.join(shown_name(n) for n in clash)} in {where} differ only in upper and "
            "lower case, so it is not clear whether they are one class or two. Rename them: the same name to make "
            "one class, clearly different names for two."
        )


@dataclass
class KindGuess:
    """The kind a modality's files are read as, the kinds they could be read as, and why."""

    kind: str
    options: tuple[str, ...]
    reason: str


def listing_sample(listing: FolderListing, sample_size: int) -> list[Path]:
    """Up to ``sample_size`` files spread over the classes. The _unlabelled folder's files are left out
    when there are labelled ones: the labelled files decide the modality's kind, channels and size (a
    folder of recordings of another size or type would otherwise outvote a few labelled files)."""
    by_class: dict[str, list[Path]] = {}
    for path, cls in listing.files:
        by_class.setdefault(cls, []).append(path)
    by_class = {c: paths for c, paths in by_class.items() if not is_unlabelled_folder(c)} or by_class
    sample: list[Path] = []
    per_class = max(1, sample_size // max(1, len(by_class)))
    for paths in by_class.values():
        step = max(1, len(paths) // per_class)
        sample.extend(paths[::step][:per_class])
    return sample


def _kinds_of_file(path: Path) -> tuple[tuple[str, ...], tuple[int, ...] | None]:
    """The kinds one file can be read as, and its .npy shape (None for other files)."""
    suffix_kind = file_kind(path)
    if suffix_kind != "npy":
        return (suffix_kind,), None
    shape = npy_shape(path)
    if len(shape) == 2:
        return ("image", "signal"), shape
    return ("signal",) if len(shape) == 1 else ("image",), shape


def infer_kind(sample: list[Path], name: str = "") -> KindGuess:
    """Decide the kind of a modality from all its sampled files, not file by file.

    A 2-D .npy array is either a single-channel image (H x W) or a multichannel signal (C x L).
    Arrays sharing their first dimension while the second varies are signals whatever C is
    (motion capture, EEG); fixed-size arrays follow the per-file rule (few rows of many samples).
    """
    options: Counter = Counter()
    shapes_2d: list[tuple[int, ...]] = []
    for path in sample:
        try:
            kinds, shape = _kinds_of_file(path)
        except DataError:
            continue
        options[kinds] += 1
        if shape is not None and len(shape) == 2:
            shapes_2d.append(shape)
    if not options:
        raise DataError(f"No readable file in the modality '{name}'. Supported: PNG, JPEG, BMP, TIFF, .npy, WAV.")
    kinds = options.most_common(1)[0][0]
    if len(kinds) == 1:
        return KindGuess(kinds[0], kinds, "")
    if len({s[0] for s in shapes_2d}) == 1 and len({s[1] for s in shapes_2d}) > 1:
        c = shapes_2d[0][0]
        return KindGuess("signal", kinds, f"2-D arrays of {c} rows and varying lengths: {c}-channel signals")
    votes = Counter(guess_npy_kind(s) for s in shapes_2d)
    kind = votes.most_common(1)[0][0]
    h, w = Counter(shapes_2d).most_common(1)[0][0]
    reason = (f"{h}x{w} arrays: {h}-channel signals of length {w}" if kind == "signal"
              else f"{h}x{w} arrays: single-channel images")
    return KindGuess(kind, kinds, reason)


def infer_spec(name: str, listing: FolderListing, overrides: dict | None = None, sample_size: int = 48) -> ModalitySpec:
    """Guess kind, channels and size from a sample of files spread over the classes; overrides win."""
    return infer_spec_and_kind(name, listing, overrides, sample_size)[0]


def infer_spec_and_kind(name: str, listing: FolderListing, overrides: dict | None = None,
                        sample_size: int = 48) -> tuple[ModalitySpec, KindGuess]:
    overrides = dict(overrides or {})
    spectrogram = overrides.pop("spectrogram", None)
    if isinstance(spectrogram, dict):
        spectrogram = SpectrogramSettings.from_dict(spectrogram)
    sample = listing_sample(listing, sample_size)
    guess = infer_kind(sample, name)
    kind = overrides.pop("kind", None) or guess.kind
    if kind not in KINDS:
        raise DataError(f"Unknown kind '{kind}' for the modality '{name}'; choose image, audio or signal.")
    if kind not in guess.options:
        raise DataError(
            f"The modality '{name}' cannot be read as {kind}: its files can only be {' or '.join(guess.options)} data. "
            f"Choose the kind {' or '.join(guess.options)} (or leave it to be detected)."
        )
    channels, sizes, lengths = Counter(), Counter(), []
    readable = 0
    for path in sample:
        try:
            raw_kind, array = read_raw(path, spectrogram, npy_kind=kind)
        except DataError:
            continue
        if raw_kind != kind:
            continue  # another kind of file; skipped with its reason when the modality is read
        readable += 1
        channels[array.shape[0]] += 1
        if kind == "signal":
            lengths.append(array.shape[1])
        else:
            sizes[array.shape[1:]] += 1
    if not readable:
        raise DataError(
            f"No readable {kind} file in the modality '{name}'. Supported: PNG, JPEG, BMP, TIFF, .npy, WAV."
        )
    source_channels = channels.most_common(1)[0][0]
    bands = overrides.pop("bands", None)
    bands = tuple(int(b) for b in bands) if bands is not None else None
    if bands is not None:
        if not bands or min(bands) < 0 or max(bands) >= source_channels:
            raise DataError(
                f"Band selection {[b + 1 for b in bands]} does not fit the modality '{name}', whose files "
                f"have {source_channels} channel(s). Bands are numbered from 1."
            )
    spec = ModalitySpec(
        name=name,
        kind=kind,
        channels=len(bands) if bands is not None else source_channels,
        size=tuple(sizes.most_common(1)[0][0]) if sizes else None,
        length=int(np.median(lengths)) if lengths else None,
        bands=bands,
        source_channels=source_channels,
        spectrogram=(spectrogram or SpectrogramSettings()) if kind == "audio" else None,
    )
    spec.augmentation = default_augmentation(spec.kind, spec.channels)
    for key, value in overrides.items():
        if not hasattr(spec, key):
            raise DataError(f"Unknown setting '{key}' for the modality '{name}'.")
        if key == "size" and value is not None:
            value = tuple(int(v) for v in value)
        setattr(spec, key, value)
    if spec.augmentation not in AUGMENTATIONS:
        raise DataError(f"Unknown augmentation '{spec.augmentation}'; choose one of {', '.join(AUGMENTATIONS)}.")
    return spec, guess
