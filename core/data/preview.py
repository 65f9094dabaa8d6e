"""Thumbnails of data files for the GUI (decoded here so that widgets never decode or compute)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .decoding import read_raw
from .spectrogram import SpectrogramSettings


@dataclass
class Thumbnail:
    kind: str  # "image", "audio" or "signal"
    image: np.ndarray | None  # uint8 (H, W) or (H, W, 3), ready to show
    signal: np.ndarray | None  # (C, L) float32 for a line plot
    description: str


def _stretch(array: np.ndarray) -> np.ndarray:
    """Robust 2-98 percentile stretch to uint8 (16-bit and multispectral data are rarely full-range)."""
    array = array.astype(np.float64)  # float32 data near its limits would overflow in the subtraction below
    lo, hi = np.percentile(array, [2, 98])
    if hi <= lo:
        hi = lo + 1e-6
    return (np.clip((array - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def thumbnail(path: str | Path, spectrogram: SpectrogramSettings | None = None,
              bands: tuple[int, ...] | None = None, kind: str | None = None) -> Thumbnail:
    """Raises DataError for unreadable files. Multi-band images show ``bands`` (or the first three).

    ``kind`` is the modality's kind (a 2-D .npy array is drawn as an image or as a signal)."""
    kind, array = read_raw(path, spectrogram, npy_kind=kind)
    shape = "x".join(str(s) for s in array.shape[1:])
    if kind == "signal":
        return Thumbnail("signal", None, array, f"signal, {array.shape[0]} ch, length {array.shape[1]}")
    if kind == "audio":
        # Low frequencies at the bottom, as spectrograms are usually drawn.
        return Thumbnail("audio", _stretch(array[0][::-1]), None, f"spectrogram {shape}")
    channels = array.shape[0]
    if channels >= 3:
        chosen = list(bands[:3]) if bands and len(bands) >= 3 and max(bands) < channels else [0, 1, 2]
        if bands and len(bands) < 3 and max(bands) < channels:
            image = _stretch(array[bands[0]])
        else:
            image = np.stack([_stretch(array[c]) for c in chosen], axis=-1)
    else:
        image = _stretch(array[0])
    return Thumbnail("image", image, None, f"image, {channels} ch, {shape}")
