"""Reading one data file into a float32 array: images (C, H, W), spectrograms (1, F, T), signals (C, L)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError
from .spectrogram import SpectrogramSettings, log_spectrogram, read_wav

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
TIFF_SUFFIXES = {".tif", ".tiff"}
NPY_SUFFIXES = {".npy"}
WAV_SUFFIXES = {".wav"}
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES | TIFF_SUFFIXES | NPY_SUFFIXES | WAV_SUFFIXES

# Files that operating systems and editors drop into folders; never data.
STRAY_NAMES = {".ds_store", "thumbs.db", "desktop.ini", ".directory", "icon\r"}

KINDS = ("image", "audio", "signal")


def file_kind(path: str | Path) -> str | None:
    """The data kind a file's suffix promises ('image', 'audio', 'npy'), or None if unsupported.

    ``.npy`` files can be images or signals: their kind is known only from the array's shape.
    """
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES or suffix in TIFF_SUFFIXES:
        return "image"
    if suffix in WAV_SUFFIXES:
        return "audio"
    if suffix in NPY_SUFFIXES:
        return "npy"
    return None


def _scale_integer(array: np.ndarray) -> np.ndarray:
    """Integers to float32 in [0, 1] by their type's range; floats unchanged."""
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return (array.astype(np.float32) - info.min) / float(info.max - info.min)
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    return array.astype(np.float32)


def read_image(path: str | Path) -> np.ndarray:
    """Read PNG/JPEG/BMP/TIFF (8/16-bit, multi-band) into float32 (C, H, W)."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile  # Pillow cannot read multi-band TIFF

        try:
            array = tifffile.imread(str(path))
        except Exception as exc:  # tifffile raises many types for broken files
            raise DataError(f"unreadable TIFF ({exc})") from exc
        array = np.asarray(array)
        if array.ndim == 2:
            array = array[None]
        elif array.ndim == 3:
            # Interleaved (H, W, C) is the common layout for few bands; planar (C, H, W) otherwise.
            if array.shape[-1] <= 16 and array.shape[0] > 16:
                array = np.moveaxis(array, -1, 0)
        else:
            raise DataError(f"TIFF with {array.ndim} dimensions is not an image")
        return _scale_integer(array)

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
                mode = img.mode
            if mode == "1":
                img = img.convert("L")
                mode = "L"
            if mode in ("LA", "RGBA"):  # alpha is presentation, not signal
                img = img.convert("L" if mode == "LA" else "RGB")
                mode = img.mode
            if mode == "CMYK":
                img = img.convert("RGB")
            array = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"unreadable image ({exc})") from exc
    if mode in ("I;16", "I;16B", "I;16L"):
        array = array.astype(np.uint16)
    elif mode == "I":
        array = array.astype(np.int32)
    array = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    return _scale_integer(array)


def read_npy(path: str | Path) -> tuple[str, np.ndarray]:
    """Read a .npy array without pickles; returns ('image', C x H x W) or ('signal', C x L)."""
    try:
        array = np.load(str(path), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"unreadable .npy file ({exc})") from exc
    if array.dtype.kind not in "biuf":
        raise DataError(f".npy array of type {array.dtype} is not numeric")
    array = _scale_integer(array) if array.dtype.kind in "bu" else array.astype(np.float32)
    if array.size == 0:
        raise DataError("the .npy array is empty")
    if array.ndim == 1:
        return "signal", array[None]
    if array.ndim == 2:
        # A few rows of many samples is a multichannel signal; otherwise a single-channel image.
        if array.shape[0] <= 16 and array.shape[1] >= 4 * array.shape[0] and array.shape[1] >= 32:
            return "signal", array
        return "image", array[None]
    if array.ndim == 3:
        if array.shape[-1] <= 16 and array.shape[0] > 16:
            array = np.moveaxis(array, -1, 0)
        return "image", np.ascontiguousarray(array)
    raise DataError(f".npy array with {array.ndim} dimensions is neither an image nor a signal")


def read_raw(path: str | Path, spectrogram: SpectrogramSettings | None = None) -> tuple[str, np.ndarray]:
    """Decode one file into (kind, array) before any resizing or band selection."""
    path = Path(path)
    kind = file_kind(path)
    if kind is None:
        raise DataError(f"unsupported file type '{path.suffix or path.name}'")
    try:
        if path.stat().st_size == 0:
            raise DataError("empty file (0 bytes)")
    except OSError as exc:
        raise DataError(f"cannot open the file ({exc.strerror})") from exc
    if kind == "image":
        array = read_image(path)
    elif kind == "audio":
        samples, rate = read_wav(path)
        array = log_spectrogram(samples, rate, spectrogram or SpectrogramSettings())
    else:
        kind, array = read_npy(path)
    if not np.all(np.isfinite(array)):
        raise DataError("the data holds NaN or infinite values")
    return kind, array


def resize_image(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (C, H, W) float32 to (C, *size), band by band (works for any band count)."""
    if array.shape[1:] == tuple(size):
        return array
    from PIL import Image

    h, w = size
    out = np.empty((array.shape[0], h, w), dtype=np.float32)
    for c in range(array.shape[0]):
        out[c] = np.asarray(Image.fromarray(array[c], mode="F").resize((w, h), Image.BILINEAR))
    return out


def fit_signal_length(array: np.ndarray, length: int, mode: str = "resample") -> np.ndarray:
    """Bring a (C, L) signal to a fixed length by linear resampling, or by cropping/zero-padding."""
    current = array.shape[1]
    if current == length:
        return array
    if mode == "crop":
        if current > length:
            start = (current - length) // 2
            return np.ascontiguousarray(array[:, start : start + length])
        pad = length - current
        return np.pad(array, ((0, 0), (pad // 2, pad - pad // 2)))
    positions = np.linspace(0, current - 1, length)
    return np.stack([np.interp(positions, np.arange(current), ch) for ch in array]).astype(np.float32)
