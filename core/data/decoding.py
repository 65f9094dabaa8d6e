"""Reading one data file into a float32 array: images (C, H, W), spectrograms (1, F, T), signals (C, L)."""

from __future__ import annotations

import logging
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError
from .spectrogram import SpectrogramSettings, log_spectrogram, read_wav

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
TIFF_SUFFIXES = {".tif", ".tiff"}
NPY_SUFFIXES = {".npy"}
WAV_SUFFIXES = {".wav"}
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES | TIFF_SUFFIXES | NPY_SUFFIXES | WAV_SUFFIXES

# Files that operating systems and editors drop into folders; never data.
STRAY_NAMES = {".ds_store", "thumbs.db", "desktop.ini", ".directory", "icon\r"}

KINDS = ("image", "audio", "signal")
_QUIET = logging.NullHandler()  # one shared handler (adding it again is a no-op): library logs stay off the terminal

# Larger files are refused before they are decoded, so that one huge or forged file cannot
# exhaust the memory (a 20000 x 20000 PNG decodes to 1.6 GB of float32 per channel).
MAX_IMAGE_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold
MAX_ARRAY_ELEMENTS = 2**28  # .npy and TIFF: 1 GiB as float32


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
    return _to_float32(array)


def _to_float32(array: np.ndarray) -> np.ndarray:
    """Float data as float32. Values beyond float32's range become infinite here without numpy's
    console warning: read_raw then skips the file with a reason, which is the message that matters."""
    with np.errstate(over="ignore", invalid="ignore"):
        return array.astype(np.float32)


def read_image(path: str | Path) -> np.ndarray:
    """Read PNG/JPEG/BMP/TIFF (8/16-bit, multi-band) into float32 (C, H, W)."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile  # Pillow cannot read multi-band TIFF

        # tifffile logs each problem of a damaged file; the DataError below already says it, once.
        logging.getLogger("tifffile").addHandler(_QUIET)

        try:
            with tifffile.TiffFile(str(path)) as tif:
                _check_element_count(tuple(tif.series[0].shape), "TIFF")
                array = tif.asarray()
        except DataError:
            raise
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked just below
            img = Image.open(path)
        with img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(_too_large(f"{width}x{height} pixels"))
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
    except Image.DecompressionBombError as exc:  # Pillow refuses even to open the largest images
        found = re.search(r"(\d+) pixels", str(exc))
        raise DataError(_too_large(f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "too many pixels")) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"unreadable image ({exc})") from exc
    if mode in ("I;16", "I;16B", "I;16L"):
        array = array.astype(np.uint16)
    elif mode == "I":
        array = array.astype(np.int32)
    array = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    return _scale_integer(array)


def _too_large(what: str) -> str:
    return (f"the image is too large to decode safely ({what}; the limit is {MAX_IMAGE_PIXELS / 1e6:.0f} "
            "megapixels). Shrink it, or move it out of the folder")


def _check_element_count(shape: tuple[int, ...], what: str) -> None:
    count = int(np.prod(shape, dtype=np.float64)) if shape else 1
    if count > MAX_ARRAY_ELEMENTS:
        raise DataError(
            f"the {what} array is too large to decode safely ({'x'.join(map(str, shape))} values; the limit is "
            f"{MAX_ARRAY_ELEMENTS / 1e6:.0f} million). Shrink or split it, or move it out of the folder"
        )


def _read_npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and type from the header of the .npy file open at its start."""
    version = np.lib.format.read_magic(fh)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(fh)
    return tuple(int(n) for n in shape), bool(fortran_order), dtype


def npy_shape(path: str | Path) -> tuple[int, ...]:
    """The shape stored in a .npy header, read without loading the array."""
    try:
        with open(path, "rb") as fh:
            return _read_npy_header(fh)[0]
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise DataError(f"unreadable .npy file ({exc})") from exc


def _load_npy(path: str | Path) -> np.ndarray:
    """The array of a .npy file, its header read once (the size checked before any data is read) and no
    pickles: what numpy's own reader does for plain arrays (numpy.lib.format.read_array), without
    its second pass over the header, which was a fifth of the time to read a folder of small arrays."""
    try:
        with open(path, "rb") as fh:
            shape, fortran_order, dtype = _read_npy_header(fh)
            _check_element_count(shape, ".npy")
            if dtype.hasobject:
                raise DataError(f".npy array of type {dtype} (Python objects) is not numeric")
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            array = np.fromfile(fh, dtype=dtype, count=count) if count else np.empty(0, dtype)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise DataError(f"unreadable .npy file ({exc})") from exc
    if array.size != count:
        raise DataError(f"the .npy file is cut short ({array.size} of its {count} values are there)")
    return array.reshape(shape[::-1]).transpose() if fortran_order else array.reshape(shape)


def guess_npy_kind(shape: tuple[int, ...]) -> str:
    """One file on its own: a few rows of many samples is a multichannel signal, otherwise an image.

    A modality decides from all its files (see ``discomkd.data.scan.infer_kind``): a shared first
    dimension with varying second ones is a signal whatever its channel count.
    """
    if len(shape) == 1:
        return "signal"
    if len(shape) == 2 and shape[0] <= 16 and shape[1] >= 4 * shape[0] and shape[1] >= 32:
        return "signal"
    return "image"


def read_npy(path: str | Path, kind: str | None = None) -> tuple[str, np.ndarray]:
    """Read a .npy array without pickles; returns ('image', C x H x W) or ('signal', C x L).

    ``kind`` ("image" or "signal", the modality's) decides how a 2-D array is read; without it the
    array's own shape does (:func:`guess_npy_kind`).
    """
    array = _load_npy(path)
    if array.dtype.kind not in "biuf":
        raise DataError(f".npy array of type {array.dtype} is not numeric")
    array = _scale_integer(array) if array.dtype.kind in "bu" else _to_float32(array)
    if array.size == 0:
        raise DataError("the .npy array is empty")
    if kind == "image" and array.ndim == 1:
        raise DataError("a 1-D array is a signal, not an image; choose the kind 'signal' for this modality")
    if kind == "signal" and array.ndim == 3:
        raise DataError("a 3-D array is an image (C x H x W), not a signal; choose the kind 'image' for this modality")
    if array.ndim == 1:
        return "signal", array[None]
    if array.ndim == 2:
        if (kind or guess_npy_kind(array.shape)) == "signal":
            return "signal", array
        return "image", array[None]
    if array.ndim == 3:
        if array.shape[-1] <= 16 and array.shape[0] > 16:
            array = np.moveaxis(array, -1, 0)
        return "image", np.ascontiguousarray(array)
    raise DataError(f".npy array with {array.ndim} dimensions is neither an image nor a signal")


def read_raw(path: str | Path, spectrogram: SpectrogramSettings | None = None,
             npy_kind: str | None = None) -> tuple[str, np.ndarray]:
    """Decode one file into (kind, array) before any resizing or band selection.

    Every problem with the file, expected or not, is a DataError naming it in words, so one bad
    file is skipped and listed and never ends a training, a scan or a batch of predictions.
    ``npy_kind`` is the modality's kind, which decides how a 2-D .npy array is read.
    """
    path = Path(path)
    kind = file_kind(path)
    if kind is None:
        raise DataError(f"unsupported file type '{path.suffix or path.name}'")
    try:  # checked here, so that a file that vanished or may not be read gets a reason of its own
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # opening a pipe or a device would wait or read forever
            raise DataError("not a regular file (a folder, pipe, socket or device)")
        if st.st_size == 0:
            raise DataError("empty file (0 bytes)")
        open(path, "rb").close()
    except FileNotFoundError as exc:
        raise DataError("the file disappeared before it could be read") from exc
    except PermissionError as exc:
        raise DataError("cannot read the file (permission denied); check its permissions") from exc
    except OSError as exc:
        raise DataError(f"cannot open the file ({exc.strerror or exc})") from exc
    try:
        if kind == "image":
            array = read_image(path)
        elif kind == "audio":
            samples, rate = read_wav(path)
            array = log_spectrogram(samples, rate, spectrogram or SpectrogramSettings())
        else:
            kind, array = read_npy(path, npy_kind if npy_kind in ("image", "signal") else None)
    except DataError:
        raise
    except MemoryError as exc:
        raise DataError("too large to decode in the memory available; shrink it or move it out of the folder") from exc
    except Exception as exc:  # a decoder's own bug or an odd file: skip it, never crash
        raise DataError(f"unreadable file ({type(exc).__name__}: {exc})") from exc
    if array.size == 0 or 0 in array.shape:
        raise DataError(f"the file holds no data (its array is {'x'.join(map(str, array.shape))})")
    if not np.all(np.isfinite(array)):
        raise DataError("the data holds NaN or infinite values (or values too large for 32-bit floats)")
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
