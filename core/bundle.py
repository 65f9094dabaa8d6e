"""The model bundle: one self-describing file with per-modality weights and JSON metadata.

Written with ``torch.save`` and read with ``torch.load(weights_only=True)``, which only accepts
tensors and plain containers, so a file crafted to run code when unpickled is refused. A SHA-256
digest over the metadata and every tensor detects truncated or edited files.
"""

from __future__ import annotations

import hashlib
import json
import platform
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .atomic import atomic_write
from .data import ModalitySpec
from .errors import BundleError
from .models import ModalityBranch

BUNDLE_FORMAT = "discomkd-bundle"
BUNDLE_VERSION = 1
BUNDLE_SUFFIX = ".discomkd"


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
        versions = md.get("versions", {})
        lines.append("trained with " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        return lines


def make_metadata(
    classes: list[str],
    specs: dict[str, ModalitySpec],
    backbones: dict[str, str],
    embed_dim: int,
    best: dict[str, dict],
    training_config: dict,
    test_metrics: dict[str, dict] | None = None,
    run_name: str | None = None,
) -> dict:
    return {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_name": run_name,
        "classes": list(classes),
        "embed_dim": int(embed_dim),
        "modalities": {
            name: {"spec": spec.to_dict(), "backbone": backbones[name], **best.get(name, {})}
            for name, spec in specs.items()
        },
        "training": training_config,
        "test_metrics": test_metrics or {},
        "versions": library_versions(),
    }


def save_bundle(path: str | Path, metadata: dict, weights: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write atomically: a crash or a full disk never leaves a half-written bundle in place."""
    path = Path(path)
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
    if not zipfile.is_zipfile(path):
        raise BundleError(
            f"'{name}' is not a DisCoM-KD model (it is not in the bundle's format, or it is truncated). "
            f"Choose the {BUNDLE_SUFFIX} file written by a training run."
        )
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
    if payload.get("format_version", 0) > BUNDLE_VERSION:
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
    except json.JSONDecodeError as exc:
        raise BundleError(f"'{name}' has unreadable metadata.") from exc
    return ModelBundle(metadata=metadata, weights=weights, path=str(path))
