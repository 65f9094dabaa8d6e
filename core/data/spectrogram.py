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


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a PCM WAV file; returns mono float32 samples in [-1, 1] and the sample rate."""
    try:
        with wave.open(str(path), "rb") as wav:
            n_channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            # A damaged header must not make us allocate or resample gigabytes (1 Hz "recordings").
            if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
                raise DataError(f"the WAV header gives an implausible sample rate ({rate} Hz); the file is damaged")
            if n_channels < 1 or wav.getnframes() * n_channels > MAX_WAV_SAMPLES:
                raise DataError(
                    f"the WAV file is too long to decode safely ({wav.getnframes() / rate / 3600:.1f} hours, "
                    f"{n_channels} channels); cut it into shorter recordings")
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise DataError(f"not a PCM WAV file ({exc}); convert it to 8/16/24/32-bit PCM") from exc
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
