"""Scanning a modality folder: class sub-folders, usable and skipped files, and the modality's
kind, channels and size guessed from a sample of its files."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .decoding import KINDS, STRAY_NAMES, file_kind, guess_npy_kind, npy_shape, read_raw
from .spec import AUGMENTATIONS, ModalitySpec, default_augmentation
from .spectrogram import SpectrogramSettings


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class FolderListing:
    classes: list[str]
    files: list[tuple[Path, str]]  # (path, class name)
    skipped: list[SkippedFile]


def list_modality_folder(folder: str | Path) -> FolderListing:
    """Find class sub-folders and their files; strays and unsupported files are listed, not fatal."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise DataError(f"The folder '{folder}' does not exist. Choose the folder that holds one sub-folder per class.")
    if not folder.is_dir():
        raise DataError(f"'{folder}' is a file, not a folder. Choose the folder that holds one sub-folder per class.")
    skipped: list[SkippedFile] = []
    files: list[tuple[Path, str]] = []
    classes: list[str] = []
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise DataError(f"Cannot read the folder '{folder}' ({exc.strerror}). Check its permissions.") from exc
    for entry in entries:
        if entry.name.startswith(".") or entry.name.lower() in STRAY_NAMES:
            if entry.is_file():
                skipped.append(SkippedFile(entry.name, "system file, not data"))
            continue
        if entry.is_file():
            skipped.append(SkippedFile(entry.name, "not inside a class folder"))
            continue
        class_files = []
        for path in sorted(p for p in entry.rglob("*") if p.is_file()):
            rel = str(path.relative_to(folder))
            if any(part.startswith(".") for part in path.relative_to(entry).parts) or path.name.lower() in STRAY_NAMES:
                skipped.append(SkippedFile(rel, "system file, not data"))
            elif file_kind(path) is None:
                skipped.append(SkippedFile(rel, f"unsupported file type '{path.suffix or path.name}'"))
            else:
                class_files.append((path, entry.name))
        if class_files:
            classes.append(entry.name)
            files.extend(class_files)
    return FolderListing(classes, files, skipped)


@dataclass
class KindGuess:
    """The kind a modality's files are read as, the kinds they could be read as, and why."""

    kind: str
    options: tuple[str, ...]
    reason: str


def _sample_files(listing: FolderListing, sample_size: int) -> list[Path]:
    """Up to ``sample_size`` files spread over the classes."""
    by_class: dict[str, list[Path]] = {}
    for path, cls in listing.files:
        by_class.setdefault(cls, []).append(path)
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
    sample = _sample_files(listing, sample_size)
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
