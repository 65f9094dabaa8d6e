"""The model bundle: one self-describing file with per-modality weights and JSON metadata.

Written with ``torch.save`` and read with ``torch.load(weights_only=True)``, which only accepts
tensors and plain containers, so a file crafted to run code when unpickled is refused. A SHA-256
digest over the metadata and every tensor detects truncated or edited files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..data.decoding import KINDS
from ..data.spec import AUGMENTATIONS, ModalitySpec
from ..data.spectrogram import SpectrogramSettings
from ..errors import BundleError
from ..storage.atomic import atomic_write
from .calibration import CALIBRATE_COMMAND, MAX_TEMPERATURE, MIN_TEMPERATURE, is_calibrated, uncalibrated
from .networks import ARCHITECTURES, ModalityBranch

BUNDLE_FORMAT = "discomkd-bundle"
# 2: the compact CNN's pool-first architecture ('compact-pool-first'), which format 1 readers do not know
BUNDLE_VERSION = 2
BUNDLE_SUFFIX = ".discomkd"

# Limits checked before anything large is read: a forged file must be refused in milliseconds,
# not after gigabytes of decompression or a huge allocation.
MAX_ARCHIVE_ENTRIES = 20_000
MAX_PICKLE_BYTES = 64 * 2**20  # the archive's object tree (tensors are stored beside it)
MAX_CLASSES = 100_000
MAX_MODALITIES = 64
MAX_CHANNELS = 4096
MAX_SIDE = 8192  # image height or width
MAX_SIGNAL_LENGTH = 10_000_000
MAX_INPUT_VALUES = 2**26  # one model input (C x H x W or C x L): 256 MiB as float32
MAX_EMBED_DIM = 4096
BACKBONE_NAMES = ARCHITECTURES


def library_versions() -> dict[str, str]:
    return {
        "discomkd": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _digest(metadata_json: str, weights: dict[str, dict[str, torch.Tensor]]) -> str:
    h = hashlib.sha256(metadata_json.encode("utf-8"))
    for modality in sorted(weights):
        for key in sorted(weights[modality]):
            tensor = weights[modality][key].detach().cpu().contiguous()
            h.update(f"{modality}/{key}/{tuple(tensor.shape)}/{tensor.dtype}".encode())
            h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


@dataclass
class ModelBundle:
    metadata: dict
    weights: dict[str, dict[str, torch.Tensor]]
    path: str | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    @property
    def modality_names(self) -> list[str]:
        return list(self.metadata["modalities"])

    @property
    def specs(self) -> dict[str, ModalitySpec]:
        return {name: ModalitySpec.from_dict(m["spec"]) for name, m in self.metadata["modalities"].items()}

    @property
    def test_metrics(self) -> dict[str, dict]:
        return self.metadata.get("test_metrics", {})

    def calibration(self, modality: str) -> dict:
        """The modality's temperature and uncertain-answer threshold; a bundle written before
        calibration existed (or without a validation split) has temperature 1."""
        return {**uncalibrated(), **self.metadata["modalities"][modality].get("calibration", {})}

    def temperature(self, modality: str) -> float:
        return float(self.calibration(modality)["temperature"])

    def uncertain_below(self, modality: str) -> float:
        """The default confidence below which the modality's answers are flagged as uncertain."""
        return float(self.calibration(modality)["uncertain_below"])

    def training_folders(self) -> dict[str, str]:
        """Each modality's training data folder as recorded (missing or odd entries left out): data,
        so no command's output is ever written there."""
        training = self.metadata.get("training")
        entries = training.get("modalities") if isinstance(training, dict) else None
        return {m["name"]: m["folder"] for m in (entries if isinstance(entries, list) else [])
                if isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("folder"), str)
                and m["folder"].strip()}

    def build_branch(self, modality: str, device: str | torch.device = "cpu") -> ModalityBranch:
        """The modality's encoders and classifier with the bundle's weights, in eval mode."""
        info = self.metadata["modalities"][modality]
        spec = ModalitySpec.from_dict(info["spec"])
        branch = ModalityBranch(info["backbone"], spec.input_shape, int(self.metadata["embed_dim"]), len(self.classes))
        try:
            branch.load_state_dict(self.weights[modality])
        except (RuntimeError, KeyError) as exc:
            raise BundleError(f"The weights for '{modality}' do not match its recorded architecture ({exc}).") from exc
        return branch.to(device).eval()

    def summary_lines(self) -> list[str]:
        md = self.metadata
        lines = [
            f"DisCoM-KD model bundle (format {md.get('format_version')}), created {md.get('created', '?')}",
            f"classes ({len(self.classes)}): {', '.join(self.classes)}",
        ]
        for name, info in md["modalities"].items():
            spec = ModalitySpec.from_dict(info["spec"])
            line = f"  {name}: {spec.describe()}, backbone {info['backbone']}, best epoch {info.get('best_epoch')}"
            test = self.test_metrics.get(name)
            if test:
                line += f", test accuracy {test['accuracy']:.3f}, weighted F1 {test['weighted_f1']:.3f}"
            lines.append(line)
            lines.append("    " + calibration_summary(self.calibration(name), test))
        lines.extend(_split_group_summary(md.get("training")))
        versions = md.get("versions", {})
        lines.append("trained with " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        return lines


def _split_group_summary(training) -> list[str]:
    """Which groups of files (speakers, subjects...) validation and test held out, when the run grouped
    them; nothing for a run split by class only, or for metadata not shaped as the trainer writes it."""
    from ..data.split import split_group_lines

    groups = training.get("split_groups") if isinstance(training, dict) else None
    if not groups or not isinstance(groups, dict):
        return []
    try:
        return ["split: " + line for line in split_group_lines(groups)]
    except (KeyError, TypeError, AttributeError):
        return []


def make_metadata(
    classes: list[str],
    specs: dict[str, ModalitySpec],
    backbones: dict[str, str],
    embed_dim: int,
    best: dict[str, dict],
    training_config: dict,
    test_metrics: dict[str, dict] | None = None,
    run_name: str | None = None,
    calibration: dict[str, dict] | None = None,
) -> dict:
    """``calibration``: per modality, what ``calibration.fit_calibration`` returned (absent: temperature 1)."""
    calibration = calibration or {}
    return {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_name": run_name,
        "classes": list(classes),
        "embed_dim": int(embed_dim),
        "modalities": {
            name: {"spec": spec.to_dict(), "backbone": backbones[name], **best.get(name, {}),
                   **({"calibration": calibration[name]} if name in calibration else {})}
            for name, spec in specs.items()
        },
        "training": training_config,
        "test_metrics": test_metrics or {},
        "versions": library_versions(),
    }


def first_non_finite_weight(state: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or infinity; None when all are finite."""
    return next((k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)


def save_bundle(path: str | Path, metadata: dict, weights: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write atomically: a crash or a full disk never leaves a half-written bundle in place. Weights
    that are not finite are refused (BundleError), and the file already there is kept."""
    path = Path(path)
    for modality, state in weights.items():
        # The last guard of every path that saves a model: a diverged training never ships one.
        broken = first_non_finite_weight(state)
        if broken is not None:
            raise BundleError(
                f"The weights of '{modality}' are not finite numbers (NaN or infinite) in '{broken}': the training "
                f"diverged, so they were not saved to '{path.name}' (a model saved there before is kept). Train "
                "again with a lower learning rate.")
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {m: {k: v.detach().cpu().clone() for k, v in sd.items()} for m, sd in weights.items()}
    metadata_json = json.dumps(metadata)  # key order kept: modalities stay in the order the user gave
    payload = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "metadata": metadata_json,
        "weights": weights,
        "digest": _digest(metadata_json, weights),
    }
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def load_bundle(path: str | Path) -> ModelBundle:
    """Load and verify a bundle; anything else (foreign, truncated, edited, malicious) is refused."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise BundleError(f"'{path}' is not a file. Choose a {BUNDLE_SUFFIX} model file.")
    if not os.access(path, os.R_OK):  # zipfile would call it "not a model"
        raise BundleError(f"'{path}' cannot be read (permission denied). Check the file's permissions, or copy it "
                          "somewhere you can read it.")
    if not zipfile.is_zipfile(path):
        raise BundleError(
            f"'{name}' is not a DisCoM-KD model (it is not in the bundle's format, or it is truncated). "
            f"Choose the {BUNDLE_SUFFIX} file written by a training run."
        )
    _check_archive(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError for foreign objects, RuntimeError for damaged archives
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "Unpickl" in type(exc).__name__:
            raise BundleError(
                f"'{name}' contains Python objects that could run code when loaded, so it was refused. "
                "Only open model files you trained or got from someone you trust."
            ) from exc
        raise BundleError(f"'{name}' is damaged or truncated and cannot be read ({text[:120]}).") from exc
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"'{name}' is not a DisCoM-KD model bundle (perhaps a plain PyTorch checkpoint).")
    if not _is_int(payload.get("format_version"), 1, 10**6):
        raise BundleError(f"'{name}' has no valid format version; it is not a DisCoM-KD model bundle.")
    if payload["format_version"] > BUNDLE_VERSION:
        raise BundleError(
            f"'{name}' was written by a newer DisCoM-KD Studio (bundle format {payload.get('format_version')}). "
            "Update the application to open it."
        )
    metadata_json, weights = payload.get("metadata"), payload.get("weights")
    if not isinstance(metadata_json, str) or not isinstance(weights, dict):
        raise BundleError(f"'{name}' is missing its metadata or weights.")
    if _digest(metadata_json, weights) != payload.get("digest"):
        raise BundleError(f"'{name}' failed its integrity check: it was modified or damaged after it was saved.")
    try:
        metadata = json.loads(metadata_json)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BundleError(f"'{name}' has unreadable metadata.") from exc
    # The digest only proves the file is unchanged since someone computed it, not that it is
    # ours: everything used later is checked here, so that a bad file fails now, with a reason.
    check_metadata(metadata, weights, name)
    return ModelBundle(metadata=metadata, weights=weights, path=str(path))


def _check_archive(path: Path) -> None:
    """Refuse archives that could not have been written by torch.save before torch reads them:
    compressed entries (a zip bomb expands 2 MB into gigabytes), sizes beyond the file's own."""
    name = path.name
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise BundleError(f"'{name}' is damaged or truncated and cannot be read ({exc}).") from exc
    if len(entries) > MAX_ARCHIVE_ENTRIES:
        raise BundleError(f"'{name}' is not a DisCoM-KD model: it holds {len(entries)} entries.")
    # torch.save writes one top folder holding data.pkl: any other zip (a renamed .zip, .docx, .npz)
    # is named as what it is rather than "damaged" with torch's internal message.
    if not any(e.filename.count("/") == 1 and e.filename.endswith("/data.pkl") for e in entries):
        shown = ", ".join(e.filename for e in entries[:3]) + (", …" if len(entries) > 3 else "")
        raise BundleError(
            f"'{name}' is not a DisCoM-KD model: it is a zip archive of other files ({shown or 'empty'}). "
            f"Choose the {BUNDLE_SUFFIX} file written by a training run.")
    file_size = path.stat().st_size
    total = 0
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED or entry.compress_size != entry.file_size:
            raise BundleError(
                f"'{name}' is not a DisCoM-KD model: it holds compressed entries, which model files never do "
                "(a file built to expand to gigabytes when read), so it was refused unread."
            )
        if entry.filename.endswith(".pkl") and entry.file_size > MAX_PICKLE_BYTES:
            raise BundleError(f"'{name}' is not a DisCoM-KD model: its object tree is {entry.file_size / 2**20:.0f} MB.")
        total += entry.file_size
    if total > file_size:
        raise BundleError(f"'{name}' is damaged: its entries claim {total} bytes in a file of {file_size} bytes.")


def _is_int(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_metadata(metadata, weights: dict, name: str = "the model") -> None:
    """Validate a bundle's metadata against its schema and its weights against the architecture
    the metadata describes; raises BundleError naming the first problem."""

    def bad(what: str) -> None:
        raise BundleError(
            f"'{name}' has invalid metadata ({what}), so it was refused: it was not written by DisCoM-KD Studio "
            "or was edited. Use the model file from the training run."
        )

    if not isinstance(metadata, dict):
        bad("not a JSON object")
    classes = metadata.get("classes")
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES or not all(isinstance(c, str) for c in classes):
        bad("'classes' must be a list of at least two class names")
    if len(set(classes)) != len(classes):
        bad("'classes' has duplicate names")
    if not _is_int(metadata.get("embed_dim"), 2, MAX_EMBED_DIM):
        bad(f"'embed_dim' must be a whole number from 2 to {MAX_EMBED_DIM}")
    modalities = metadata.get("modalities")
    if not isinstance(modalities, dict) or not 1 <= len(modalities) <= MAX_MODALITIES:
        bad("'modalities' must name at least one modality")
    if set(modalities) != set(weights):
        bad("the modalities and the stored weights do not match")
    for modality, info in modalities.items():
        if not isinstance(info, dict) or not isinstance(info.get("spec"), dict):
            bad(f"modality '{modality}' has no preprocessing settings")
        _check_spec(modality, info, bad)
        _check_calibration(modality, info.get("calibration", {}), bad, name)
        _check_weights(modality, info, weights[modality], metadata["embed_dim"], len(classes), bad, name)
    test_metrics = metadata.get("test_metrics", {})
    if not isinstance(test_metrics, dict):
        bad("'test_metrics' must be an object")
    for modality, m in test_metrics.items():
        if not isinstance(m, dict):
            bad(f"test metrics of '{modality}'")
        for key in ("accuracy", "weighted_f1", "macro_f1"):
            if key in m and not _is_number(m[key]):
                bad(f"test {key} of '{modality}' is not a number")
        if not isinstance(m.get("per_class", []), list) or not all(isinstance(r, dict) for r in m.get("per_class", [])):
            bad(f"per-class test metrics of '{modality}'")
        confusion = m.get("confusion", [])
        if not isinstance(confusion, list) or not all(isinstance(r, list) and all(_is_number(v) for v in r) for r in confusion):
            bad(f"confusion matrix of '{modality}'")
    if not isinstance(metadata.get("versions", {}), dict):
        bad("'versions' must be an object")


def _check_spec(modality: str, info: dict, bad) -> None:
    spec = info["spec"]
    known = set(ModalitySpec.__dataclass_fields__)
    unknown = set(spec) - known
    if unknown:
        bad(f"modality '{modality}' has unknown settings {sorted(unknown)}")
    kind = spec.get("kind")
    if kind not in KINDS:
        bad(f"modality '{modality}' has the unknown kind {kind!r}")
    backbone = info.get("backbone")
    if backbone not in BACKBONE_NAMES:
        bad(f"modality '{modality}' has the unknown backbone {backbone!r}")
    if (backbone == "cnn1d") != (kind == "signal"):
        bad(f"modality '{modality}': backbone {backbone} does not fit {kind} data")
    channels = spec.get("channels")
    if not _is_int(channels, 1, MAX_CHANNELS):
        bad(f"modality '{modality}' has an invalid channel count")
    if kind == "signal":
        if not _is_int(spec.get("length"), 1, MAX_SIGNAL_LENGTH):
            bad(f"signal modality '{modality}' has an invalid length")
        values = channels * spec["length"]
    else:
        size = spec.get("size")
        if not isinstance(size, list) or len(size) != 2 or not all(_is_int(v, 1, MAX_SIDE) for v in size):
            bad(f"modality '{modality}' has an invalid size (height and width from 1 to {MAX_SIDE})")
        values = channels * size[0] * size[1]
    if values > MAX_INPUT_VALUES:
        bad(f"modality '{modality}' has inputs of {values} values, more than {MAX_INPUT_VALUES}")
    source = spec.get("source_channels")
    if source is not None and not _is_int(source, 1, MAX_CHANNELS):
        bad(f"modality '{modality}' has an invalid source channel count")
    bands = spec.get("bands")
    if bands is not None:
        if (not isinstance(bands, list) or len(bands) != channels
                or not all(_is_int(b, 0, (source or MAX_CHANNELS) - 1) for b in bands)):
            bad(f"modality '{modality}' has an invalid band selection")
    elif source is not None and source != channels:
        bad(f"modality '{modality}' has {channels} channels but reads {source} without a band selection")
    if spec.get("length_mode", "resample") not in ("resample", "crop"):
        bad(f"modality '{modality}' has an unknown length mode")
    if spec.get("augmentation", "none") not in AUGMENTATIONS:
        bad(f"modality '{modality}' has an unknown augmentation")
    for key in ("mean", "std"):
        values_ = spec.get(key)
        if values_ is not None and (not isinstance(values_, list) or len(values_) != channels
                                    or not all(_is_number(v) for v in values_)):
            bad(f"modality '{modality}' has invalid normalisation statistics")
    if spec.get("std") is not None and min(spec["std"]) <= 0:
        bad(f"modality '{modality}' has a zero or negative standard deviation")
    settings = spec.get("spectrogram")
    if kind == "audio":
        if not isinstance(settings, dict) or set(settings) != set(SpectrogramSettings.__dataclass_fields__):
            bad(f"audio modality '{modality}' has no valid spectrogram settings")
        ok = (_is_int(settings["sample_rate"], 1, 384_000) and _is_number(settings["duration_s"])
              and 0 < settings["duration_s"] <= 600 and _is_int(settings["n_fft"], 2, 65_536)
              and _is_int(settings["hop_length"], 1, settings["n_fft"]) and isinstance(settings["peak_normalize"], bool))
        if not ok or list(SpectrogramSettings.from_dict(settings).shape) != spec["size"]:
            bad(f"audio modality '{modality}' has invalid spectrogram settings")
    elif settings is not None:
        bad(f"modality '{modality}' is not audio but has spectrogram settings")


def _check_calibration(modality: str, calibration, bad, name: str) -> None:
    if not isinstance(calibration, dict):
        bad(f"the calibration of '{modality}' must be an object")
    temperature = calibration.get("temperature", 1.0)  # bundles from before calibration have none: 1
    if not _is_number(temperature) or not temperature > 0:
        bad(f"the temperature of '{modality}' must be a positive number")
    # A fit stays within these bounds (1e-9: the search's rounding); a temperature outside them, such as
    # 1e-30, turns the probabilities into NaN, which predict would blame on the input files.
    if not MIN_TEMPERATURE * (1 - 1e-9) <= temperature <= MAX_TEMPERATURE * (1 + 1e-9):
        raise BundleError(
            f"'{name}' has a damaged calibration: the temperature of '{modality}' is {temperature:g}, outside the "
            f"{MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g} a calibration fits, so its probabilities would not be numbers. "
            f"Refit it: {CALIBRATE_COMMAND} again."
        )
    threshold = calibration.get("uncertain_below", 0.5)
    if not _is_number(threshold) or not 0 <= threshold <= 1:
        bad(f"the uncertain-answer threshold of '{modality}' must be a number from 0 to 1")


def calibration_summary(calibration: dict, test_metrics: dict | None = None) -> str:
    """One line on how a modality's probabilities are calibrated, for `info` and the app."""
    if not is_calibrated(calibration):
        text = "probabilities not calibrated (no validation split, or a model from before calibration)"
    else:
        text = (f"probabilities calibrated on {calibration.get('samples', '?')} validation files "
                f"(temperature {calibration['temperature']:.3f})")
    if test_metrics and test_metrics.get("ece") is not None:
        text += f"; test ECE {test_metrics['ece']:.3f}"
        if test_metrics.get("ece_uncalibrated") is not None:
            text += f" ({test_metrics['ece_uncalibrated']:.3f} uncalibrated)"
    return text + f"; answers below {100 * calibration['uncertain_below']:.0f}% are flagged as uncertain"


def _check_weights(modality: str, info: dict, state: dict, embed_dim: int, n_classes: int, bad,
                   name: str) -> None:
    """The stored tensors must be exactly those of the described network (built on the meta device: no memory)."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        bad(f"the weights of '{modality}' are not a set of tensors")
    spec = ModalitySpec.from_dict(info["spec"])
    with torch.device("meta"):
        expected = ModalityBranch(info["backbone"], spec.input_shape, embed_dim, n_classes).state_dict()
    if set(expected) != set(state):
        bad(f"the weights of '{modality}' do not fit its recorded network")
    for key, tensor in expected.items():
        if tuple(tensor.shape) != tuple(state[key].shape):
            bad(f"the weights of '{modality}' do not fit its recorded network ({key})")
    # A training that diverged leaves NaN or infinite weights, whose predictions are meaningless.
    broken = first_non_finite_weight(state)
    if broken is not None:
        raise BundleError(
            f"'{name}' holds weights that are not finite numbers (NaN or infinite) in '{modality}' ({broken}): "
            "the training that wrote it diverged, so its predictions would be meaningless. Train again with a "
            "lower learning rate."
        )
