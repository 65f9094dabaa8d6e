"""The decoded-data cache: one .npz per modality folder, keyed by the folder's files and the
preprocessing, checked whole on every read (a damaged file raises and is rebuilt by the caller)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import DisComKDError
from ..storage.atomic import atomic_write, remove_orphan_temp_files
from ..storage.paths import user_cache_dir
from .dataset import ModalityData
from .scan import FolderListing, SkippedFile
from .spec import ModalitySpec

CACHE_VERSION = 1


def cache_file(listing: FolderListing, spec: ModalitySpec) -> Path:
    """Where the decoded arrays of these files under this preprocessing are cached."""
    return user_cache_dir() / "decoded" / f"{cache_key(listing, spec)}.npz"


def cache_key(listing: FolderListing, spec: ModalitySpec) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "spec": spec.cache_identity()}, sort_keys=True).encode())
    for path, cls in listing.files:
        size, mtime_ns = listing.stats[path]  # read by the listing: no second stat that could fail here
        # fsencode: file names with bytes that are not UTF-8 hash as their bytes, never fail.
        h.update(os.fsencode(path) + os.fsencode(f"\0{cls}\0{size}\0{mtime_ns}\n"))
    return h.hexdigest()[:32]


def read_cache(cache_path: Path, name: str, folder: Path, spec: ModalitySpec, listing: FolderListing) -> ModalityData:
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
        notices=list(listing.notices),
    )


def write_cache(cache_path: Path, x: np.ndarray, labels: np.ndarray, classes: list[str], files: list[str],
                decode_skipped: list[SkippedFile]) -> None:
    """Write the decoded arrays; a cache that cannot be written (full disk, read-only) only costs time."""
    # Temporary files of cache writes that a kill interrupted (an hour old: none is still being written).
    remove_orphan_temp_files(cache_path.parent, older_than_s=3600)
    try:
        meta = {"classes": classes, "files": files, "skipped": [asdict(s) for s in decode_skipped]}
        atomic_write(cache_path, lambda fh: np.savez(fh, x=x, labels=labels, meta=np.array(json.dumps(meta))))
    except DisComKDError:
        pass
