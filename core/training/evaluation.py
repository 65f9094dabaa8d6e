"""How a trained branch is measured: its outputs in evaluation mode, its metrics on a split, and a
saved model's metrics on a labelled folder (``discomkd evaluate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.load import load_modality
from ..data.scan import SkippedFile, infer_kind, list_modality_folder, listing_sample
from ..errors import ConfigError
from ..model.bundle import ModelBundle, load_bundle
from ..model.calibration import calibrated_probabilities, calibration_report, top1
from .metrics import classification_metrics


@torch.no_grad()
def branch_outputs(branch, x: torch.Tensor, device: torch.device, batch: int = 512) -> dict[str, torch.Tensor]:
    """A branch's logits, z_inv and z_inf on ``x`` in evaluation mode, batch by batch, on the CPU."""
    branch.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    for start in range(0, x.shape[0], batch):
        xb = x[start : start + batch].to(device, non_blocking=True)
        out = branch(xb)
        for key in ("logits", "z_inv", "z_inf"):
            chunks.setdefault(key, []).append(out[key].float().cpu())
    if not chunks:
        return {}
    return {k: torch.cat(v) for k, v in chunks.items()}


def metrics_from_logits(logits: torch.Tensor, y: torch.Tensor, classes: list[str]) -> dict:
    """Classification metrics and mean cross-entropy of logits (N, classes) against labels y (N,)."""
    metrics = classification_metrics(y.numpy(), logits.argmax(1).numpy(), classes)
    metrics["loss"] = float(F.cross_entropy(logits, y))
    return metrics


def evaluate_bundle_on_folder(bundle_path: str | Path | ModelBundle, modality: str, folder: str | Path,
                              progress: Callable[[int, int], None] | None = None) -> dict:
    """Metrics of one modality's classifier on every usable file of a class-per-folder directory,
    with its calibration there: ``ece`` with the bundle's temperature, ``ece_uncalibrated`` with
    none, and the share of answers the bundle's threshold flags as uncertain. ``bundle_path`` may be
    a bundle already loaded."""
    bundle = bundle_path if isinstance(bundle_path, ModelBundle) else load_bundle(bundle_path)
    if modality not in bundle.specs:
        raise ConfigError(f"The model has no modality '{modality}'; it has {', '.join(bundle.modality_names)}.")
    spec = bundle.specs[modality]
    overrides = {
        "kind": spec.kind, "bands": spec.bands, "size": spec.size, "length": spec.length,
        "length_mode": spec.length_mode, "spectrogram": spec.spectrogram.to_dict() if spec.spectrogram else None,
        "source_channels": spec.source_channels,
    }
    _check_folder_fits(bundle, modality, folder)
    # Files far beyond the model's training data are left out below, with the model's statistics as reference.
    data = load_modality(folder, modality, overrides, progress, min_classes=1, skip_extreme=False)
    unknown = [c for c in data.classes if c not in bundle.classes]
    keep = np.asarray([data.classes[l] in bundle.classes for l in data.labels])
    if not keep.any():
        raise ConfigError(f"None of the class folders ({', '.join(data.classes)}) is a class of this model "
                          f"(its classes: {', '.join(bundle.classes[:12])}{', …' if len(bundle.classes) > 12 else ''}). "
                          "Name the class sub-folders as the model's classes.")
    with np.errstate(over="ignore", invalid="ignore"):  # values that overflow are left out just below
        x = torch.from_numpy(spec.normalize(data.x[keep]))
    y = np.asarray([bundle.classes.index(data.classes[l]) for l in data.labels[keep]])
    branch = bundle.build_branch(modality)
    out = branch_outputs(branch, x, torch.device("cpu"))
    # Files whose values, finite but far beyond the training data's, overflow the model give NaN
    # outputs: left out with why (as predict refuses them), never counted as an arbitrary class.
    usable = torch.isfinite(out["logits"]).all(dim=1).numpy()
    overflowing = [SkippedFile(f, f"its values are far outside those of the training data of '{modality}', so the "
                                  "model's outputs are not numbers")
                   for f, ok in zip(np.asarray(data.files, dtype=object)[keep], usable) if not ok]
    if not usable.any():
        raise ConfigError(f"The model gives no usable answer for any file in '{folder}': their values are far outside "
                          f"those of the training data of '{modality}'. Check that they hold the same kind of data, in "
                          "the same units, as the training files.")
    out, y = {k: v[torch.from_numpy(usable)] for k, v in out.items()}, y[usable]
    metrics = classification_metrics(y, out["logits"].argmax(1).numpy(), bundle.classes)
    calibration = bundle.calibration(modality)
    labels = torch.from_numpy(y)
    metrics.update(calibration_report(out["logits"], labels, calibration["temperature"]))
    metrics["calibrated_on"] = calibration["fitted_on"]
    confidence, correct = top1(calibrated_probabilities(out["logits"], calibration["temperature"]), labels)
    flagged = confidence < calibration["uncertain_below"]
    metrics["uncertain"] = {
        "below": calibration["uncertain_below"],
        "share": float(flagged.mean()),
        "accuracy_flagged": float(correct[flagged].mean()) if flagged.any() else None,
        "accuracy_not_flagged": float(correct[~flagged].mean()) if (~flagged).any() else None,
    }
    metrics["skipped"] = [{"path": s.path, "reason": s.reason} for s in [*data.skipped, *overflowing]]
    metrics["unknown_classes"] = unknown
    return metrics


def _check_folder_fits(bundle, modality: str, folder: str | Path) -> None:
    """The folder's files must be of the kind the model's modality reads. The model is fixed, so the
    message names the modalities these files fit, never a kind to choose."""
    listing = list_modality_folder(folder)
    if not listing.files:
        return  # load_modality says what is wrong with an empty folder
    options = infer_kind(listing_sample(listing, 48), modality).options
    spec = bundle.specs[modality]
    if spec.kind in options:
        return
    fitting = [n for n, s in bundle.specs.items() if s.kind in options]
    raise ConfigError(
        f"The files in '{folder}' are {' or '.join(options)} data, but the model's modality '{modality}' reads "
        f"{spec.kind} data ({spec.describe()}). "
        + (f"Evaluate them as {' or '.join(repr(n) for n in fitting)} (--modality {fitting[0]}=FOLDER), or choose "
           f"a folder of {spec.kind} files." if fitting else f"Choose a folder of {spec.kind} files.")
    )
