"""WAV reading and log-magnitude spectrograms (NumPy only, so the engine needs no audio stack)."""

from __future__ import annotations

import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class SpectrogramSettings:
    """Everything needed to turn a WAV file into the same image at training and prediction time."""

    sample_rate: int = 8000
    duration_s: float = 1.0
    n_fft: int = 256
    hop_length: int = 128
    peak_normalize: bool = True  # recordings differ in gain; the class is in the shape, not the level

    @property
    def n_samples(self) -> int:
        return int(round(self.sample_rate * self.duration_s))

    @property
    def shape(self) -> tuple[int, int]:
        frames = 1 + max(0, self.n_samples - self.n_fft) // self.hop_length
        return (self.n_fft // 2 + 1, frames)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SpectrogramSettings":
        return cls(**d)


MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 100, 1_000_000
MAX_WAV_SAMPLES = 2**28  # all channels together: 1.5 hours of 48 kHz stereo


WAVE_FORMAT_PCM, WAVE_FORMAT_EXTENSIBLE = 0x0001, 0xFFFE
# The sub-format GUID of PCM in a WAVE_FORMAT_EXTENSIBLE header (its first two bytes are the format tag).
PCM_SUBFORMAT_TAIL = bytes.fromhex("000000001000800000aa00389b71")


def _check_wav_header(n_channels: int, rate: int, n_frames: int) -> None:
    # A damaged header must not make us allocate or resample gigabytes (1 Hz "recordings").
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise DataError(f"the WAV header gives an implausible sample rate ({rate} Hz); the file is damaged")
    if n_channels < 1 or n_frames * n_channels > MAX_WAV_SAMPLES:
        raise DataError(
            f"the WAV file is too long to decode safely ({n_frames / rate / 3600:.1f} hours, "
            f"{n_channels} channels); cut it into shorter recordings")


def _read_extensible_pcm(path: str | Path) -> tuple[int, int, int, bytes]:
    """(channels, sample width, rate, frames) of a WAVE_FORMAT_EXTENSIBLE file holding integer PCM,
    which Python's wave module reads only from 3.12 on (what 24-bit and multichannel recorders write)."""
    import struct

    with open(path, "rb") as fh:
        if fh.read(4) != b"RIFF" or len(fh.read(4)) != 4 or fh.read(4) != b"WAVE":
            raise DataError("not a WAV file (no RIFF/WAVE header)")
        fmt = None
        while True:
            header = fh.read(8)
            if len(header) < 8:
                raise DataError("the WAV file has no data chunk; it is damaged or truncated")
            kind, size = header[:4], struct.unpack("<I", header[4:])[0]
            if kind == b"fmt ":
                body = fh.read(size)
                if len(body) < 40:
                    raise DataError("the WAV file's format header is too short; it is damaged")
                tag, n_channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
                if tag != WAVE_FORMAT_EXTENSIBLE or body[26:40] != PCM_SUBFORMAT_TAIL or body[24:26] != b"\x01\x00":
                    raise DataError("the WAV file holds compressed or floating-point audio, not PCM; convert it to "
                                    "8/16/24/32-bit PCM")
                if n_channels < 1 or block_align != n_channels * ((bits + 7) // 8):
                    raise DataError("the WAV file's format header is inconsistent; the file is damaged")
                fmt = (n_channels, block_align // n_channels, rate)
            elif kind == b"data":
                if fmt is None:
                    raise DataError("the WAV file has its data before its format header; it is damaged")
                n_channels, width, rate = fmt
                _check_wav_header(n_channels, rate, size // (n_channels * width))
                data = fh.read(size)
                return n_channels, width, rate, data[: len(data) - len(data) % (n_channels * width)]
            else:
                fh.seek(size + (size & 1), 1)  # chunks are padded to an even size


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a PCM WAV file (plain or WAVE_FORMAT_EXTENSIBLE); returns mono float32 samples in [-1, 1]
    and the sample rate."""
    try:
        with wave.open(str(path), "rb") as wav:
            n_channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            _check_wav_header(n_channels, rate, wav.getnframes())
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        if f"unknown format: {WAVE_FORMAT_EXTENSIBLE}" not in str(exc):
            raise DataError(f"not a PCM WAV file ({exc}); convert it to 8/16/24/32-bit PCM") from exc
        n_channels, width, rate, raw = _read_extensible_pcm(path)
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        samples = ints.astype(np.float32) / float(1 << 23)
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:
        raise DataError(f"unsupported WAV sample width {width} bytes")
    if samples.size == 0:
        raise DataError("the WAV file holds no samples")
    samples = samples[: (samples.size // n_channels) * n_channels].reshape(-1, n_channels).mean(axis=1)
    return samples.astype(np.float32), rate


def resample_linear(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Linear-interpolation resampling; enough for spectrogram features."""
    if rate == target_rate:
        return samples
    n_out = max(1, int(round(samples.size * target_rate / rate)))
    t_out = np.arange(n_out, dtype=np.float64) * (rate / target_rate)
    return np.interp(t_out, np.arange(samples.size), samples).astype(np.float32)


def log_spectrogram(samples: np.ndarray, rate: int, settings: SpectrogramSettings) -> np.ndarray:
    """Log-magnitude STFT of a mono signal as a (1, freq, time) float32 image."""
    x = resample_linear(samples, rate, settings.sample_rate)
    if settings.peak_normalize:
        peak = float(np.abs(x).max())
        if peak > 0:
            x = x / peak
    n = settings.n_samples
    x = x[:n] if x.size >= n else np.pad(x, (0, n - x.size))
    n_freq, n_frames = settings.shape
    starts = np.arange(n_frames) * settings.hop_length
    frames = x[starts[:, None] + np.arange(settings.n_fft)[None, :]]
    window = np.hanning(settings.n_fft).astype(np.float32)
    magnitude = np.abs(np.fft.rfft(frames * window, axis=1))  # (time, freq)
    return np.log1p(magnitude.T).astype(np.float32)[None]
