"""Reading one modality folder: scan, decode each file once (or read the cache), skip bad files
with a reason, and refuse data that would not fit in memory before decoding it."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import Cancelled, DataError
from .cache import cache_file, read_cache, write_cache
from .dataset import ModalityData, keep_rows, split_off_unlabelled
from .decoding import read_raw
from .scan import SkippedFile, checked_folder, infer_spec_and_kind, is_unlabelled_folder, list_modality_folder
from .spec import ModalitySpec

ProgressCallback = Callable[[int, int], None]
StopCheck = Callable[[], bool]


def load_modality(
    folder: str | Path,
    name: str | None = None,
    overrides: dict | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    use_cache: bool = True,
    min_classes: int = 2,
    skip_extreme: bool = True,
) -> ModalityData:
    """Scan, decode and cache one modality folder. Bad files are skipped with a reason.

    ``min_classes``: a training needs two classes; evaluating a model on one class's files is fine.
    ``skip_extreme``: skip raw arrays whose values would swamp the folder's standardisation
    (:func:`skip_extreme_files`); evaluation turns it off, as it compares files with the model's
    training data instead."""
    folder = checked_folder(folder).resolve()
    name = name or folder.name
    listing = list_modality_folder(folder)
    if not listing.files:
        raise DataError(
            f"The modality '{name}' has no usable file in '{folder}'. Put one sub-folder per class in it, "
            f"each holding PNG, JPEG, BMP, TIFF, .npy or WAV files."
        )
    spec, guess = infer_spec_and_kind(name, listing, overrides)
    _check_memory(name, len(listing.files), spec)
    cache_path = cache_file(listing, spec)
    cache_note = ""
    if use_cache and cache_path.exists():
        try:
            data = read_cache(cache_path, name, folder, spec, listing)
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
            data = replace(data, kind_guess=guess.kind, kind_options=guess.options, kind_reason=guess.reason)
            if skip_extreme:
                data = skip_extreme_files(data)
            return _check_modality(split_off_unlabelled(data), min_classes)

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
                        cache_note=cache_note, notices=list(listing.notices))
    if use_cache:
        write_cache(cache_path, x, y, classes, files, decode_skipped)
    if skip_extreme:  # after the cache, which holds what was decoded: the rule depends on the whole folder
        data = skip_extreme_files(data)
    return _check_modality(split_off_unlabelled(data), min_classes)


# Raw arrays (.npy, TIFF) can hold any float; PNG/JPEG/BMP and integer arrays decode to [0, 1] and WAV
# to a log-spectrogram (at most log(float32 max), about 89), so only raw arrays are checked below.
RAW_ARRAY_SUFFIXES = {".npy", ".tif", ".tiff"}
# A value whose square overflows float32 (about 1.8e19) breaks any float32 variance, and the per-channel
# standard deviation of a folder holding it is swamped: every other file standardises to about zero.
MAX_ABS_VALUE = float(np.sqrt(np.finfo(np.float32).max))
# A file whose largest magnitude is a million times the folder's typical one (the median over its
# labelled files of each file's largest magnitude) is in other units or damaged; it would swamp the statistics.
MAX_RATIO_TO_MEDIAN = 1e6


def skip_extreme_files(data: ModalityData) -> ModalityData:
    """Skip, with a reason, the raw-array files whose values would overflow or swamp the modality's
    standardisation (see MAX_ABS_VALUE and MAX_RATIO_TO_MEDIAN); refuse when no file is left."""
    if not data.files:
        return data
    flat = data.x.reshape(len(data.x), -1)
    # In blocks of rows: no second copy of the whole data in memory.
    peaks = np.concatenate([np.abs(flat[i:i + 1024]).max(axis=1) for i in range(0, len(flat), 1024)]).astype(np.float64)
    # The labelled files set the typical magnitude when there are some: the standardisation takes their
    # statistics, and an _unlabelled folder (often far larger) in other units must not become the norm.
    labelled = ~np.isin(data.labels, [i for i, c in enumerate(data.classes) if is_unlabelled_folder(c)])
    typical = float(np.median(peaks[labelled] if labelled.any() else peaks))
    raw = np.asarray([Path(f).suffix.lower() in RAW_ARRAY_SUFFIXES for f in data.files])
    overflow = raw & (peaks > MAX_ABS_VALUE)
    outlier = raw & ~overflow & (typical > 0) & (peaks > MAX_RATIO_TO_MEDIAN * typical)
    if not (overflow.any() or outlier.any()):
        return data
    skipped = []
    for f, peak, too_large, too_far in zip(data.files, peaks, overflow, outlier):
        if too_large:
            skipped.append(SkippedFile(f, f"its values are too large (up to {peak:.3g}; the limit is {MAX_ABS_VALUE:.3g}, "
                                          "beyond which they would overflow the standardisation). Rescale the file"))
        elif too_far:
            skipped.append(SkippedFile(f, f"its values (up to {peak:.3g}) are more than {MAX_RATIO_TO_MEDIAN:.0e} times "
                                          f"those of the folder's typical labelled file ({typical:.3g}), so they would "
                                          "swamp the standardisation; check its units, or move it out of the folder"))
    keep = ~(overflow | outlier)
    if not keep.any():
        raise DataError(
            f"No file of the modality '{data.name}' could be used; the first problem was: "
            f"{skipped[0].path}: {skipped[0].reason}"
        )
    # Classes whose files were all skipped disappear.
    return keep_rows(data, keep, np.unique(data.labels[keep]), skipped=data.skipped + skipped)


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


def _check_modality(data: ModalityData, min_classes: int = 2) -> ModalityData:
    if len(data.classes) < min_classes:
        raise DataError(
            f"The modality '{data.name}' has only {len(data.classes)} usable class "
            f"({', '.join(data.classes) or 'none'}). A classifier needs at least two class sub-folders."
        )
    return data
