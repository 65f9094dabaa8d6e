"""A corpus of bad inputs, made by code at test time (small: nothing here is larger than a few kB)."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# A file name that is not UTF-8 (Latin-1 "café"), as copied from an old camera or a Windows share.
NON_UTF8_NAME = os.fsdecode(b"caf\xe9.png")


def write_png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width x height pixels (a decompression bomb as Pillow sees it) in 60 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return path


def make_image_modality(root: Path, classes=("a", "b", "c"), per_class: int = 8, size: int = 12, seed: int = 0) -> Path:
    """Grey PNGs whose class is the brightness of a square (learnable in one epoch)."""
    rng = np.random.default_rng(seed)
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 40, (size, size)).astype(np.uint8)
            pixels[2:-2, 2:-2] += np.uint8(60 * (k + 1))
            Image.fromarray(pixels).save(root / cls / f"{i:03d}.png")
    return root


def make_signal_modality(root: Path, channels: int, lengths, classes=("a", "b", "c"), per_class: int = 8,
                         seed: int = 0) -> Path:
    """(channels, L) .npy signals, L taken in turn from ``lengths``; the class is the frequency."""
    rng = np.random.default_rng(seed)
    lengths = list(lengths)
    n = 0
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            length = lengths[n % len(lengths)]
            n += 1
            t = np.linspace(0, 1, length)
            phase = rng.uniform(0, 2 * np.pi, (channels, 1))
            signal = np.sin(2 * np.pi * (k + 1) * 3 * t[None] + phase) + 0.1 * rng.normal(size=(channels, length))
            np.save(root / cls / f"{i:03d}.npy", signal.astype(np.float32))
    return root


def write_wav(path: Path, seconds: float = 0.3, rate: int = 8000) -> Path:
    import wave

    t = np.arange(int(seconds * rate)) / rate
    samples = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def mutants(original: bytes, count: int, seed: int) -> list[bytes]:
    """Damaged copies of a file: truncations, flipped bytes in the header and the body, zeroed runs."""
    rng = np.random.default_rng(seed)
    out = [original[:n] for n in (1, 8, 30, len(original) // 2, len(original) - 1)]
    while len(out) < count:
        data = bytearray(original)
        for _ in range(int(rng.integers(1, 6))):
            # Half of the damage lands in the first 64 bytes, where the headers (sizes, rates) are.
            at = int(rng.integers(0, min(64, len(data)))) if rng.random() < 0.5 else int(rng.integers(0, len(data)))
            if rng.random() < 0.8:
                data[at] = int(rng.integers(0, 256))
            else:
                data[at:at + 16] = bytes(len(data[at:at + 16]))
        out.append(bytes(data))
    return out


def write_extensible_wav(path: Path, seconds: float = 0.3, rate: int = 8000, subformat_tag: int = 1) -> Path:
    """A 16-bit mono WAV with a WAVE_FORMAT_EXTENSIBLE header (as many recorders write), the same
    samples as :func:`write_wav`; ``subformat_tag`` 3 makes it claim 32-bit float instead of PCM."""
    t = np.arange(int(seconds * rate)) / rate
    data = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()
    guid = struct.pack("<H", subformat_tag) + bytes.fromhex("000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, rate, rate * 2, 2, 16, 22, 16, 0x4) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path

