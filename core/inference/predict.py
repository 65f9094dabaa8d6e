"""Prediction from single files with a loaded bundle, preprocessing exactly as in training."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.decoding import STRAY_NAMES, file_kind, guess_npy_kind, npy_shape, read_raw
from ..data.spec import ModalitySpec
from ..errors import AmbiguousModalityError, DataError, PredictionError
from ..model.bundle import ModelBundle, load_bundle
from ..model.calibration import calibrated_probabilities
from ..storage.outputs import write_output_file
from ..storage.paths import printable_name


@dataclass
class Prediction:
    path: str
    modality: str
    label: str
    probabilities: dict[str, float]  # class -> calibrated probability, in the bundle's class order
    uncertain_below: float = 0.0  # the confidence threshold this answer was judged against

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: kv[1], reverse=True)[:k]

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def is_uncertain(self, threshold: float | None = None) -> bool:
        """Whether the answer's confidence is below ``threshold`` (default: the one it was predicted with)."""
        return self.confidence < (self.uncertain_below if threshold is None else threshold)

    @property
    def uncertain(self) -> bool:
        return self.is_uncertain()


@dataclass
class PredictionFailure:
    path: str
    message: str
    candidates: list[str] = field(default_factory=list)  # set when the modality is ambiguous


def _fits(spec: ModalitySpec, raw_kind: str, array: np.ndarray, npy_shape: tuple[int, ...] | None = None) -> bool:
    if (raw_kind == "audio") != (spec.kind == "audio"):
        return False
    if raw_kind != "audio" and raw_kind != spec.kind:
        return False
    # A 2-D array shaped like a signal (a few rows of many samples: 3x64) read as a one-channel image
    # would be resized into nonsense; it fits an image modality only when it has that modality's size.
    if (spec.kind == "image" and npy_shape is not None and len(npy_shape) == 2
            and guess_npy_kind(npy_shape) == "signal" and tuple(npy_shape) != tuple(spec.size or ())):
        return False
    channels = array.shape[0]
    if spec.bands is not None:
        return channels > max(spec.bands) and (spec.source_channels is None or channels == spec.source_channels)
    return channels == (spec.source_channels or spec.channels)


class _RawFile:
    """One file's decoded arrays, read once per distinct decoding (WAVs depend on spectrogram settings)."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._cache: dict = {}

    @property
    def npy_shape(self) -> tuple[int, ...] | None:
        """The array's shape for a .npy file (read from its header), None for other files."""
        if file_kind(self.path) != "npy":
            return None
        if "npy_shape" not in self._cache:
            self._cache["npy_shape"] = npy_shape(self.path)
        return self._cache["npy_shape"]

    def describe(self) -> str:
        """What the file is, for a message: 'a 3x64 .npy array', 'an image', 'a recording'."""
        shape = self.npy_shape if file_kind(self.path) == "npy" else None
        if shape is not None:
            looks = guess_npy_kind(shape) if len(shape) <= 2 else "image"
            as_what = (f", shaped like a {shape[0]}-channel signal of length {shape[1]}" if looks == "signal" and len(shape) == 2
                       else "")
            return f"a {'x'.join(map(str, shape))} .npy array{as_what}"
        return "a recording" if file_kind(self.path) == "audio" else "an image"

    def decoded(self, spec: ModalitySpec) -> tuple[str, np.ndarray]:
        # WAV decoding depends on the spectrogram settings, a 2-D .npy array on the modality's kind
        # (image or signal); other files decode one way.
        suffix_kind = file_kind(self.path)
        if suffix_kind == "audio":
            key = spec.spectrogram if spec.kind == "audio" else None
        else:
            key = spec.kind if suffix_kind == "npy" else None
        if key not in self._cache:
            if suffix_kind == "audio":
                self._cache[key] = read_raw(self.path, key)
            else:
                self._cache[key] = read_raw(self.path, npy_kind=key if key in ("image", "signal") else None)
        return self._cache[key]


class Predictor:
    """Holds one bundle's branches (built lazily, once) and routes files to modalities.

    Probabilities are calibrated with each modality's temperature from the bundle (1 for a bundle
    without calibration); an answer below ``uncertain_below`` (default: the modality's threshold
    from the bundle) is flagged as uncertain.
    """

    def __init__(self, bundle: ModelBundle, device: str = "cpu", uncertain_below: float | None = None) -> None:
        self.bundle = bundle
        self.device = torch.device(device)
        self.specs = bundle.specs
        self.classes = bundle.classes
        self.uncertain_below_override = uncertain_below
        self._branches: dict[str, torch.nn.Module] = {}

    @classmethod
    def from_path(cls, path: str | Path, device: str = "cpu", uncertain_below: float | None = None) -> "Predictor":
        return cls(load_bundle(path), device, uncertain_below)

    def uncertain_below(self, modality: str) -> float:
        """The confidence below which this modality's answers are flagged."""
        if self.uncertain_below_override is not None:
            return float(self.uncertain_below_override)
        return self.bundle.uncertain_below(modality)

    @property
    def modality_names(self) -> list[str]:
        return list(self.specs)

    def branch(self, modality: str) -> torch.nn.Module:
        if modality not in self._branches:
            self._branches[modality] = self.bundle.build_branch(modality, self.device)
        return self._branches[modality]

    def candidate_modalities(self, path: str | Path) -> list[str]:
        """Modalities whose kind and channel count fit the file; several when ambiguous.

        Raises DataError when the file itself cannot be read.
        """
        return self._candidates(_RawFile(path))

    def _candidates(self, raw: "_RawFile") -> list[str]:
        fitting: list[tuple[str, np.ndarray]] = []
        problems: list[DataError] = []
        for name, spec in self.specs.items():
            try:
                raw_kind, array = raw.decoded(spec)
            except DataError as exc:  # e.g. a 3-D .npy read for a signal modality: it just does not fit
                problems.append(exc)
                continue
            if _fits(spec, raw_kind, array, raw.npy_shape):
                fitting.append((name, array))
        if not fitting and problems and len(problems) == len(self.specs):
            raise problems[0]
        if len(fitting) > 1:  # when channels do not decide, an exact size match does
            exact = [n for n, a in fitting if self.specs[n].kind == "signal" or tuple(a.shape[1:]) == tuple(self.specs[n].size or ())]
            if len(exact) == 1:
                return exact
        return [n for n, _ in fitting]

    def preprocess(self, path: str | Path | "_RawFile", modality: str) -> np.ndarray:
        """The model input (1, C, ...) for one file, exactly as in training."""
        raw = path if isinstance(path, _RawFile) else _RawFile(path)
        spec = self.specs[modality]
        with np.errstate(over="ignore", invalid="ignore"):  # values that overflow are refused by predict_file
            return spec.normalize(spec.preprocess(*raw.decoded(spec))[None])

    @torch.no_grad()
    def predict_file(self, path: str | Path, modality: str | None = None) -> Prediction:
        """Predict one file; raises PredictionError (ambiguous/unknown modality) or DataError (bad file)."""
        path = Path(path)
        shown = printable_name(path.name)
        if file_kind(path) is None:
            raise PredictionError(
                f"'{shown}' is not a supported file (PNG, JPEG, BMP, TIFF, .npy or WAV)."
            )
        raw = _RawFile(path)  # decoded once, for routing and for the model input
        if modality is None:
            candidates = self._candidates(raw)
            if not candidates:
                raise PredictionError(
                    f"'{shown}' ({raw.describe()}) fits none of this model's modalities: it has "
                    f"{'; '.join(f'{n} ({s.describe()})' for n, s in self.specs.items())}. Give it files of one of "
                    "these modalities."
                )
            if len(candidates) > 1:
                raise AmbiguousModalityError(
                    f"'{shown}' could belong to {', '.join(candidates)}; choose the modality.", candidates
                )
            modality = candidates[0]
        elif modality not in self.specs:
            raise PredictionError(f"The model has no modality '{modality}'; it has {', '.join(self.specs)}.")
        x = torch.from_numpy(self.preprocess(raw, modality)).to(self.device)
        logits = self.branch(modality)(x)["logits"]
        probs = calibrated_probabilities(logits, self.bundle.temperature(modality))[0].cpu().numpy()
        if not np.isfinite(probs).all():
            # Finite values far beyond the training data's (3e38 in a float32 array) overflow once
            # standardised: an answer from NaN probabilities would be an arbitrary class shown as "ok".
            raise DataError(f"the model gives no usable answer for this file: its values (up to "
                            f"{float(np.abs(raw.decoded(self.specs[modality])[1]).max()):.3g}) are far outside those "
                            f"of the training data of '{modality}', so its probabilities are not numbers. Check that it "
                            f"holds the same kind of data, in the same units, as the training files.")
        probabilities = {c: float(p) for c, p in zip(self.classes, probs)}
        return Prediction(str(path), modality, self.classes[int(probs.argmax())], probabilities,
                          self.uncertain_below(modality))

    def predict_files(self, paths: list[str | Path], modality: str | None = None) -> list[Prediction | PredictionFailure]:
        """Predict many files (folders are expanded); a bad file gives a failure entry, never an exception."""
        results: list[Prediction | PredictionFailure] = []
        for path in expand_paths(paths):
            try:
                results.append(self.predict_file(path, modality))
            except AmbiguousModalityError as exc:
                results.append(PredictionFailure(str(path), str(exc), exc.candidates))
            except PredictionError as exc:
                results.append(PredictionFailure(str(path), str(exc)))
            except DataError as exc:
                results.append(PredictionFailure(str(path), f"'{printable_name(Path(path).name)}': {exc}"))
            except Exception as exc:  # noqa: BLE001 - one odd file must not lose the other files' results
                results.append(PredictionFailure(
                    str(path), f"'{printable_name(Path(path).name)}' could not be predicted ({type(exc).__name__}: {exc})."))
        return results


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given; folders replaced by their files (recursively, sorted, system files left out)."""
    out: list[Path] = []
    for p in paths:
        if not str(p).strip():  # Path("") is the current folder: never classify all of it by accident
            raise PredictionError("An empty path was given. Name the files or folders to classify.")
        p = Path(p)
        if p.is_dir():
            out.extend(
                f for f in sorted(p.rglob("*"))
                if f.is_file() and not f.name.startswith(".") and f.name.lower() not in STRAY_NAMES
            )
        else:
            out.append(p)
    return out


def write_predictions_csv(results: list[Prediction | PredictionFailure], destination: str | Path, classes: list[str],
                          replace: bool = False, inputs: list[str | Path] = (),
                          uncertain_below: float | None = None, data_folders: list[str | Path] = ()) -> Path:
    """One row per file: path, modality, label, (calibrated) confidence, whether it is below the
    uncertain-answer threshold (``uncertain_below``, default each answer's own), one probability
    column per class, error.

    ``destination`` follows the output rule (storage/outputs.py): an existing file only when
    ``replace``, never one of the predicted files or ``inputs`` (the bundle, a classified folder), nor
    inside ``data_folders`` (the model's training folders).
    """
    import csv

    def write(fh) -> None:
        writer = csv.writer(fh)
        writer.writerow(["file", "modality", "prediction", "confidence", "uncertain", *[f"p_{c}" for c in classes], "error"])
        for r in results:
            if isinstance(r, Prediction):
                writer.writerow([printable_name(r.path), r.modality, r.label, f"{r.confidence:.6f}",
                                 "yes" if r.is_uncertain(uncertain_below) else "no",
                                 *[f"{r.probabilities[c]:.6f}" for c in classes], ""])
            else:
                writer.writerow([printable_name(r.path), "", "", "", "", *[""] * len(classes), r.message])

    return write_output_file(destination, write, [*inputs, *(r.path for r in results)], replace, text=True,
                             what="the CSV file", data_folders=data_folders)
