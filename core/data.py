"""Modality folders -> decoded, cached arrays -> stratified splits with training-split statistics.

A modality is a folder with one sub-folder per class. Each file is decoded once; the decoded
arrays are cached on disk keyed by the folder contents and the preprocessing, so later runs and
every epoch read tensors, never files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .atomic import atomic_write, remove_orphan_temp_files
from .decoding import (
    KINDS,
    STRAY_NAMES,
    fit_signal_length,
    file_kind,
    guess_npy_kind,
    npy_shape,
    read_raw,
    resize_image,
)
from .errors import Cancelled, DataError, DisComKDError
from .paths import user_cache_dir
from .spectrogram import SpectrogramSettings

CACHE_VERSION = 1
AUGMENTATIONS = ("none", "shift", "time_shift", "flips_rot90", "flips_rot90_shift")
ProgressCallback = Callable[[int, int], None]
StopCheck = Callable[[], bool]


@dataclass
class ModalitySpec:
    """How files of one modality become model inputs; stored in the bundle for prediction."""

    name: str
    kind: str  # "image", "audio" (spectrogram image) or "signal"
    channels: int  # after band selection
    size: tuple[int, int] | None = None  # (H, W) of images and spectrograms
    length: int | None = None  # samples per signal
    bands: tuple[int, ...] | None = None  # source channels kept, None = all
    source_channels: int | None = None
    length_mode: str = "resample"  # signals: "resample" or "crop"
    spectrogram: SpectrogramSettings | None = None
    augmentation: str = "none"
    mean: list[float] | None = None  # per channel, training split only
    std: list[float] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.kind == "signal":
            return (self.channels, int(self.length or 0))
        return (self.channels, *(self.size or (0, 0)))

    def describe(self) -> str:
        ch = f"{self.channels} channel{'s' if self.channels != 1 else ''}"
        if self.kind == "signal":
            return f"signal, {ch}, length {self.length}"
        h, w = self.size or (0, 0)
        what = "audio (log spectrogram)" if self.kind == "audio" else "image"
        return f"{what}, {ch}, {h}x{w}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spectrogram"] = self.spectrogram.to_dict() if self.spectrogram else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModalitySpec":
        d = dict(d)
        if d.get("spectrogram"):
            d["spectrogram"] = SpectrogramSettings.from_dict(d["spectrogram"])
        for key in ("size", "bands"):
            if d.get(key) is not None:
                d[key] = tuple(int(v) for v in d[key])
        return cls(**d)

    def cache_identity(self) -> dict:
        """The fields that change decoded arrays (statistics and augmentation do not)."""
        d = self.to_dict()
        for key in ("name", "augmentation", "mean", "std"):
            d.pop(key)
        return d

    def preprocess(self, raw_kind: str, array: np.ndarray) -> np.ndarray:
        """Band selection and resizing of one decoded file; raises DataError if it does not fit."""
        expected_kind = "image" if self.kind == "audio" else self.kind
        got_kind = "image" if raw_kind == "audio" else raw_kind
        if got_kind != expected_kind or (raw_kind == "audio") != (self.kind == "audio"):
            raise DataError(f"this file is {raw_kind} data, but the modality '{self.name}' holds {self.kind}")
        if self.bands is not None:
            if array.shape[0] <= max(self.bands):
                raise DataError(
                    f"has {array.shape[0]} channels; band {max(self.bands) + 1} was selected"
                )
            array = array[list(self.bands)]
        elif self.source_channels is not None and array.shape[0] != self.source_channels:
            raise DataError(
                f"has {array.shape[0]} channel(s); the modality '{self.name}' has {self.source_channels}"
            )
        if self.kind == "signal":
            return fit_signal_length(array, int(self.length), self.length_mode)
        return resize_image(array, tuple(self.size))

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Standardise a batch (N, C, ...) with the training statistics."""
        if self.mean is None or self.std is None:
            return x
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(shape)
        std = np.asarray(self.std, dtype=np.float32).reshape(shape)
        return (x - mean) / std


def default_augmentation(kind: str, channels: int) -> str:
    """Flips and 90-degree rotations suit overhead imagery only; they destroy digits and spectrograms."""
    if kind == "image" and channels > 3:
        return "flips_rot90"
    if kind == "image":
        return "shift"
    return "time_shift"  # spectrograms and signals: a later or earlier start, same content


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class ModalityData:
    """One modality, decoded: inputs x (N, C, ...), labels into ``classes``, what was skipped."""

    name: str
    folder: str
    spec: ModalitySpec
    classes: list[str]
    x: np.ndarray
    labels: np.ndarray
    files: list[str]  # relative to folder, parallel to x
    skipped: list[SkippedFile] = field(default_factory=list)
    from_cache: bool = False
    kind_guess: str = ""  # the kind inferred from the files (spec.kind differs when the user chose another)
    kind_options: tuple[str, ...] = ()  # the kinds these files can be read as (2-D .npy: image or signal)
    kind_reason: str = ""  # why the kind was guessed, for the user (empty when the file type decides)
    cache_note: str = ""  # set when a damaged cache file was found, removed and rebuilt

    @property
    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    @property
    def stems(self) -> list[str]:
        return [Path(f).stem for f in self.files]


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


def _cache_key(listing: FolderListing, spec: ModalitySpec) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "spec": spec.cache_identity()}, sort_keys=True).encode())
    for path, cls in listing.files:
        st = path.stat()
        # fsencode: file names with bytes that are not UTF-8 hash as their bytes, never fail.
        h.update(os.fsencode(path) + os.fsencode(f"\0{cls}\0{st.st_size}\0{st.st_mtime_ns}\n"))
    return h.hexdigest()[:32]


def load_modality(
    folder: str | Path,
    name: str | None = None,
    overrides: dict | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    use_cache: bool = True,
) -> ModalityData:
    """Scan, decode and cache one modality folder. Bad files are skipped with a reason."""
    folder = Path(folder).expanduser().resolve() if Path(folder).expanduser().exists() else Path(folder)
    name = name or folder.name
    listing = list_modality_folder(folder)
    if not listing.files:
        raise DataError(
            f"The modality '{name}' has no usable file in '{folder}'. Put one sub-folder per class in it, "
            f"each holding PNG, JPEG, BMP, TIFF, .npy or WAV files."
        )
    spec, guess = infer_spec_and_kind(name, listing, overrides)
    _check_memory(name, len(listing.files), spec)
    cache_dir = user_cache_dir() / "decoded"
    cache_path = cache_dir / f"{_cache_key(listing, spec)}.npz"
    cache_note = ""
    if use_cache and cache_path.exists():
        try:
            data = _read_cache(cache_path, name, folder, spec, listing)
        except MemoryError:
            raise  # the cache is fine; the decoded data does not fit (reported as such by the caller)
        except Exception as exc:  # noqa: BLE001 - a cache is only a copy: whatever is wrong with it, rebuild it
            cache_note = f"A damaged cache file ({cache_path.name}: {type(exc).__name__}) was removed and the data read again."
            try:
                cache_path.unlink(missing_ok=True)
            except OSError:
                pass
        else:
            if progress:
                progress(len(listing.files), len(listing.files))
            return _check_modality(replace(data, kind_guess=guess.kind, kind_options=guess.options,
                                           kind_reason=guess.reason))

    class_index = {c: i for i, c in enumerate(listing.classes)}
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    files: list[str] = []
    decode_skipped: list[SkippedFile] = []
    total = len(listing.files)
    for i, (path, cls) in enumerate(listing.files):
        if should_stop and i % 32 == 0 and should_stop():
            raise Cancelled()
        rel = str(path.relative_to(folder))
        try:
            kind, raw = read_raw(path, spec.spectrogram, npy_kind=spec.kind)
            arrays.append(spec.preprocess(kind, raw))
            labels.append(class_index[cls])
            files.append(rel)
        except DataError as exc:
            decode_skipped.append(SkippedFile(rel, str(exc)))
        if progress and (i % 64 == 0 or i == total - 1):
            progress(i + 1, total)
    if not arrays:
        raise DataError(
            f"No file of the modality '{name}' could be used; the first problem was: "
            f"{decode_skipped[0].path}: {decode_skipped[0].reason}"
        )
    present = sorted(set(labels))
    # Classes whose files were all skipped disappear; remap labels to the remaining ones.
    classes = [listing.classes[i] for i in present]
    remap = {old: new for new, old in enumerate(present)}
    x = np.stack(arrays).astype(np.float32)
    y = np.asarray([remap[l] for l in labels], dtype=np.int64)
    data = ModalityData(name, str(folder), spec, classes, x, y, files, listing.skipped + decode_skipped,
                        kind_guess=guess.kind, kind_options=guess.options, kind_reason=guess.reason,
                        cache_note=cache_note)
    if use_cache:
        # Temporary files of cache writes that a kill interrupted (an hour old: none is still being written).
        remove_orphan_temp_files(cache_dir, older_than_s=3600)
        try:
            meta = {"classes": classes, "files": files, "skipped": [asdict(s) for s in decode_skipped]}
            atomic_write(cache_path, lambda fh: np.savez(fh, x=x, labels=y, meta=np.array(json.dumps(meta))))
        except DisComKDError:
            pass  # a cache that cannot be written (full disk, read-only) only costs time
    return _check_modality(data)


def _read_cache(cache_path: Path, name: str, folder: Path, spec: ModalitySpec, listing: FolderListing) -> ModalityData:
    """Read a decoded-data cache file and check that it is whole; raises on any damage."""
    with np.load(cache_path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        x, labels = z["x"], z["labels"]  # reading checks each entry's CRC: a changed byte raises here
    classes, files = list(meta["classes"]), list(meta["files"])
    if not (x.shape[0] == labels.shape[0] == len(files)) or tuple(x.shape[1:]) != spec.input_shape:
        raise ValueError("inconsistent shapes")
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError("labels out of range")
    return ModalityData(
        name=name, folder=str(folder), spec=spec, classes=classes, x=x, labels=labels, files=files,
        skipped=listing.skipped + [SkippedFile(**s) for s in meta["skipped"]], from_cache=True,
    )


def _available_memory() -> int | None:
    """Bytes of free physical memory, where the platform tells (Linux, macOS); None elsewhere."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _check_memory(name: str, n_files: int, spec: ModalitySpec) -> None:
    """Refuse before decoding when the decoded arrays could not fit in memory (no swap storm, no crash)."""
    needed = n_files * int(np.prod(spec.input_shape)) * 4
    available = _available_memory()
    if available is not None and needed > 0.6 * available:
        shape = "x".join(str(s) for s in spec.input_shape)
        raise DataError(
            f"The modality '{name}' would need {needed / 2**30:.1f} GiB decoded ({n_files} files of {shape}), "
            f"but only {available / 2**30:.1f} GiB of memory is free. Choose a smaller size for it "
            f"(for example size 64x64) or fewer files."
        )


def _check_modality(data: ModalityData) -> ModalityData:
    if len(data.classes) < 2:
        raise DataError(
            f"The modality '{data.name}' has only {len(data.classes)} usable class "
            f"({', '.join(data.classes) or 'none'}). A classifier needs at least two class sub-folders."
        )
    return data


@dataclass
class PairingReport:
    status: str  # "paired", "partial" or "unpaired"
    shared_stems: int
    detail: str


@dataclass
class DatasetReport:
    """What the user needs to see before training: classes, gaps, counts, pairing, skipped files."""

    classes: list[str]
    missing: dict[str, list[str]]  # modality -> classes it lacks
    counts: dict[str, dict[str, int]]  # modality -> class -> files
    skipped: dict[str, list[SkippedFile]]
    pairing: PairingReport

    def summary_lines(self) -> list[str]:
        lines = [f"{len(self.classes)} classes: {', '.join(self.classes)}"]
        for name, counts in self.counts.items():
            lines.append(f"{name}: {sum(counts.values())} files, {len(self.skipped[name])} skipped")
        for name, gaps in self.missing.items():
            if gaps:
                lines.append(f"{name} has no files for: {', '.join(gaps)}")
        lines.append(f"pairing: {self.pairing.detail}")
        return lines


def pairing_report(modalities: list[ModalityData]) -> PairingReport:
    """Samples are paired when the same file stem (within the same class) exists in every modality."""
    keyed = [{(m.classes[l], s) for l, s in zip(m.labels, m.stems)} for m in modalities]
    shared = set.intersection(*keyed)
    union = set.union(*keyed)
    if shared and len(shared) == len(union):
        return PairingReport("paired", len(shared), f"paired: all {len(shared)} samples have a file in every modality")
    if shared:
        return PairingReport(
            "partial", len(shared), f"partly paired: {len(shared)} of {len(union)} samples exist in every modality"
        )
    return PairingReport("unpaired", 0, "unpaired: no file name is shared across modalities (DisCoM-KD does not need pairing)")


@dataclass
class MultiModalDataset:
    """Several decoded modalities on one shared label set (labels are indices into ``classes``)."""

    modalities: list[ModalityData]
    classes: list[str]
    report: DatasetReport

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.modalities]

    def global_labels(self, m: int) -> np.ndarray:
        modality = self.modalities[m]
        lookup = np.asarray([self.classes.index(c) for c in modality.classes], dtype=np.int64)
        return lookup[modality.labels]


def combine_modalities(modalities: list[ModalityData]) -> MultiModalDataset:
    """Match classes by folder name; a class missing somewhere is reported, a modality sharing none is an error."""
    if len(modalities) < 2:
        raise DataError("DisCoM-KD needs at least two modalities. Add another modality folder.")
    names = [m.name for m in modalities]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"Two modalities are named '{duplicates[0]}'. Give each modality its own name.")
    classes = natural_class_order(set().union(*(m.classes for m in modalities)))
    for m in modalities:
        others = set().union(*(o.classes for o in modalities if o is not m))
        if not others & set(m.classes):
            raise DataError(
                f"The modality '{m.name}' shares no class with the others (its classes: "
                f"{', '.join(m.classes[:8])}). Class sub-folders must have the same names in every modality."
            )
    report = DatasetReport(
        classes=classes,
        missing={m.name: [c for c in classes if c not in m.classes] for m in modalities},
        counts={m.name: m.class_counts for m in modalities},
        skipped={m.name: m.skipped for m in modalities},
        pairing=pairing_report(modalities),
    )
    return MultiModalDataset(list(modalities), classes, report)


def natural_class_order(names: Iterable[str]) -> list[str]:
    """Class names sorted as people expect: '2' before '10', 'cat' before 'dog'."""
    return sorted(names, key=_natural_key)


def _natural_key(name: str):
    """'2' before '10'; class folders are often numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in _split_digits(name)]


def _split_digits(text: str) -> Iterable[str]:
    token = ""
    for ch in text:
        if token and ch.isdigit() != token[-1].isdigit():
            yield token
            token = ""
        token += ch
    if token:
        yield token


@dataclass
class SplitIndices:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def stratified_split(labels: np.ndarray, fractions: tuple[float, float, float], seed: int) -> SplitIndices:
    """Per class: shuffle, then cut train/val/test by the fractions (each class keeps >= 1 train sample)."""
    train_f, val_f, test_f = fractions
    total_f = train_f + val_f + test_f
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n = idx.size
        n_test = int(round(n * test_f / total_f))
        n_val = int(round(n * val_f / total_f))
        if n - n_test - n_val < 1:  # tiny classes: training comes first
            n_test = max(0, min(n_test, n - 1))
            n_val = max(0, n - 1 - n_test) if n - n_test - n_val < 1 else n_val
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    return SplitIndices(**{k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in parts.items()})


def split_dataset(
    dataset: MultiModalDataset, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 0
) -> dict[str, SplitIndices]:
    """Each modality is split on its own; paired data is split by sample so pairs stay together."""
    if any(f < 0 for f in fractions) or fractions[0] <= 0:
        raise DataError("Split fractions must be non-negative and the training fraction positive.")
    splits: dict[str, SplitIndices] = {}
    if dataset.report.pairing.status == "paired":
        first = dataset.modalities[0]
        keys = [(first.classes[l], s) for l, s in zip(first.labels, first.stems)]
        base = stratified_split(dataset.global_labels(0), fractions, seed)
        assignment = {}
        for part in ("train", "val", "test"):
            for i in getattr(base, part):
                assignment[keys[i]] = part
        for m in dataset.modalities:
            groups: dict[str, list[int]] = {"train": [], "val": [], "test": []}
            for i, (l, s) in enumerate(zip(m.labels, m.stems)):
                groups[assignment[(m.classes[l], s)]].append(i)
            splits[m.name] = SplitIndices(**{k: np.asarray(v, dtype=np.int64) for k, v in groups.items()})
        return splits
    for k, m in enumerate(dataset.modalities):
        splits[m.name] = stratified_split(dataset.global_labels(k), fractions, seed + 1000 * k)
    return splits


def channel_statistics(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of (N, C, ...) data, in float64 for stability."""
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, dtype=np.float64)
    std = x.std(axis=axes, dtype=np.float64)
    std = np.where(std < 1e-6, 1.0, std)  # constant channels stay finite
    return mean.tolist(), std.tolist()


def with_statistics(spec: ModalitySpec, x_train: np.ndarray) -> ModalitySpec:
    mean, std = channel_statistics(x_train)
    return replace(spec, mean=mean, std=std)
