"""How the files of one modality become model inputs: the ModalitySpec stored in every bundle."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DataError
from .decoding import fit_signal_length, resize_image
from .spectrogram import SpectrogramSettings

AUGMENTATIONS = ("none", "shift", "time_shift", "flips_rot90", "flips_rot90_shift")


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
