"""Export one modality's classifier to ONNX or TorchScript, for devices without Python or our code.

Usage (no Qt)::

    result = export_modality("run/model.discomkd", "audio", "onnx")   # run/model-audio.onnx + .json

Each export writes the network (input ``input``: the preprocessed tensor (N, C, ...) with a
dynamic batch; outputs ``logits`` and ``probabilities``) and a JSON sidecar beside it
(``<file>.json``) that states every step from a raw file to that tensor, so the input can be
reproduced without this project. Before anything is written, the exported network is run
(onnxruntime, or the reloaded TorchScript module) on real files and must give the PyTorch
branch's probabilities within ``PARITY_TOLERANCE``; otherwise nothing is written.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.decoding import file_kind
from ..data.spec import ModalitySpec
from ..errors import DataError, DisComKDError
from ..model.bundle import ModelBundle, load_bundle
from ..model.calibration import CALIBRATE_COMMAND, NOT_CALIBRATED_WHY, calibrated_probabilities, is_calibrated
from ..storage.atomic import atomic_write_together
from ..storage.outputs import check_output_file

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
PARITY_TOLERANCE = 1e-4  # max abs difference of the probabilities, exported vs PyTorch
ONNX_OPSET = 17
EXPORT_FORMAT = "discomkd-export"
EXPORT_VERSION = 1
MAX_CHECK_FILES = 16
INSTALL_HINT = "pip install 'discomkd-studio[export]' (or: pip install onnx onnxruntime)"


class ExportError(DisComKDError):
    """An export cannot be made or does not reproduce the model's outputs."""


class ExportableClassifier(nn.Module):
    """A modality branch reduced to what a device needs: input tensor -> (logits, probabilities),
    the probabilities calibrated with the modality's temperature (a constant of the graph)."""

    def __init__(self, branch: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.branch = branch
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.branch(x)["logits"]
        return logits, calibrated_probabilities(logits, self.temperature)


@dataclass
class ExportResult:
    model_path: Path
    sidecar_path: Path
    format: str
    modality: str
    max_abs_diff: float  # probabilities, exported network vs PyTorch branch
    checked_on: str  # what the parity check ran on, in words
    calibrated: bool | None = None  # whether the probabilities output is calibrated (the bundle had a temperature)


def default_output_path(bundle_path: str | Path, modality: str, fmt: str) -> Path:
    """``run/model.discomkd`` -> ``run/model-audio.onnx`` (or ``.pt`` for TorchScript)."""
    bundle_path = Path(bundle_path)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in modality)
    return bundle_path.with_name(f"{bundle_path.stem}-{safe}{SUFFIXES[fmt]}")


def sidecar_path_for(model_path: str | Path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def calibration_note(calibration: dict) -> str:
    """What the exported ``probabilities`` are: calibrated with the bundle's temperature, or, for a model
    without calibration, plain softmax (said plainly, with how to calibrate it)."""
    if is_calibrated(calibration):
        return f"calibrated: softmax(logits / temperature), temperature {calibration['temperature']:.6g}"
    return f"NOT calibrated: softmax(logits), temperature 1 ({NOT_CALIBRATED_WHY}); {CALIBRATE_COMMAND}, then export again"


def missing_onnx_packages() -> list[str]:
    """The optional packages an ONNX export needs that are not installed."""
    import importlib.util

    return [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]


def preprocessing_description(spec: ModalitySpec, classes: list[str]) -> dict:
    """Everything needed to turn one raw file into the network's input, in words and numbers."""
    steps: list[str] = []
    info: dict = {"kind": spec.kind, "input_shape": ["batch", *spec.input_shape]}
    if spec.kind == "audio":
        s = spec.spectrogram
        info["spectrogram"] = {
            **s.to_dict(), "n_samples": s.n_samples, "shape": list(s.shape),
            "window": "Hann, symmetric (numpy.hanning(n_fft))", "magnitude": "abs(numpy.fft.rfft(frame * window))",
            "scale": "log1p(magnitude)", "layout": "(1, frequency, time)",
        }
        steps += [
            "Read the WAV (PCM): 8-bit (x - 128) / 128, 16-bit x / 32768, 24-bit x / 2**23, 32-bit x / 2**31; "
            "average the channels to mono.",
            f"Resample linearly to {s.sample_rate} Hz (numpy.interp at t * rate / {s.sample_rate}).",
            *(["Divide by the peak absolute value (if it is not 0)."] if s.peak_normalize else []),
            f"Keep the first {s.n_samples} samples, or pad with zeros at the end to {s.n_samples}.",
            f"Frames of {s.n_fft} samples every {s.hop_length} samples ({s.shape[1]} frames); multiply each by "
            f"numpy.hanning({s.n_fft}); magnitude of numpy.fft.rfft; log1p; transpose to "
            f"(1, {s.shape[0]}, {s.shape[1]}) (frequency by time).",
        ]
    elif spec.kind == "image":
        steps += [
            "Read the image as (channels, height, width) float32: greyscale stays 1 channel, palette and CMYK "
            "become RGB, an alpha channel is dropped; multi-band TIFF keeps every band (planar or interleaved).",
            "Scale integers by their type's range: (x - min) / (max - min), e.g. 8-bit / 255, 16-bit / 65535; "
            "floats unchanged.",
        ]
    else:
        steps += ["Load the .npy array (C, L) as float32 (a 1-D array is one channel); unsigned integers are "
                  "scaled by their type's range, other numbers unchanged."]
    if spec.bands is not None:
        steps.append(f"Keep the bands {list(spec.bands)} (0-based; {[b + 1 for b in spec.bands]} counting from 1) "
                     f"of the file's {spec.source_channels} in this order.")
    elif spec.source_channels is not None and spec.kind != "audio":
        steps.append(f"The file must have {spec.source_channels} channel(s).")
    if spec.kind == "signal":
        if spec.length_mode == "crop":
            steps.append(f"Bring the length to {spec.length}: crop the centre, or zero-pad both ends equally "
                         "(the extra sample at the end).")
        else:
            steps.append(f"Resample each channel linearly to {spec.length} samples "
                         f"(numpy.interp at numpy.linspace(0, L - 1, {spec.length})).")
    elif spec.kind == "image" or (spec.kind == "audio" and tuple(spec.size or ()) != tuple(spec.spectrogram.shape)):
        h, w = spec.size
        steps.append(f"Resize each channel bilinearly to {h} x {w} (height x width; Pillow mode 'F', "
                     "Image.BILINEAR) unless it already has that size.")
    if spec.mean is not None:
        steps.append("Standardise per channel: (x - mean[c]) / std[c] with the statistics below "
                     "(from the training split).")
    steps.append("Add the batch axis: (1, " + ", ".join(str(v) for v in spec.input_shape) + ") float32.")
    info.update({
        "steps": steps,
        "channels": spec.channels,
        "source_channels": spec.source_channels,
        "bands": list(spec.bands) if spec.bands is not None else None,
        "size": list(spec.size) if spec.size else None,
        "resize": "bilinear" if spec.kind != "signal" else None,
        "length": spec.length,
        "length_mode": spec.length_mode if spec.kind == "signal" else None,
        "mean": spec.mean,
        "std": spec.std,
        "classes": list(classes),
    })
    return info


def _check_inputs(bundle: ModelBundle, modality: str, check_files: list[str | Path] | None) -> tuple[np.ndarray, str]:
    """Preprocessed real files for the parity check: the given ones, else the training folder's."""
    from .predict import Predictor, expand_paths

    spec = bundle.specs[modality]
    if check_files:
        paths = expand_paths(check_files)
        where = "the given files"
    else:
        folder = next((m.get("folder") for m in bundle.metadata.get("training", {}).get("modalities", [])
                       if m.get("name") == modality), None)
        paths = expand_paths([folder]) if folder and Path(folder).is_dir() else []
        where = f"files of the training folder {folder}"
    # Spread the check over the folder (classes are sorted sub-folders), one file per stride.
    paths = [p for p in paths if file_kind(p) is not None]
    paths = paths[:: max(1, len(paths) // MAX_CHECK_FILES)][:MAX_CHECK_FILES]
    predictor = Predictor(bundle)
    arrays = []
    for path in paths:
        try:
            arrays.append(predictor.preprocess(path, modality)[0])
        except DataError:
            continue  # a file of another shape: the check uses the others
    if not arrays:
        if check_files:
            raise ExportError(f"None of the files given for the check fits the modality '{modality}' "
                              f"({spec.describe()}).")
        # The training folder is gone (e.g. the model came from another machine): standardised noise
        # has the inputs' statistics and still exercises every layer.
        generator = torch.Generator().manual_seed(0)
        return torch.randn((8, *spec.input_shape), generator=generator).numpy(), \
            "8 random standardised inputs (the training folder is not available; pass files to check on real data)"
    return np.stack(arrays).astype(np.float32), f"{len(arrays)} real file(s) from {where}"


def _export_onnx_bytes(module: nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter (dynamo=False) is deprecated in favour of torch.export, which
        # needs the extra onnxscript package; these plain CNNs export exactly with the older one.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), buffer, dynamo=False, opset_version=ONNX_OPSET,
            input_names=["input"], output_names=["logits", "probabilities"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}, "probabilities": {0: "batch"}},
        )
    return buffer.getvalue()


def _onnx_probabilities(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"input": x})[0]


def _export_torchscript_bytes(module: nn.Module, example: torch.Tensor) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated but still what C++/mobile runtimes load
        traced = torch.jit.trace(module, (example,), check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _torchscript_probabilities(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(io.BytesIO(model_bytes), map_location="cpu")
    with torch.no_grad():
        return loaded(torch.from_numpy(x))[1].numpy()


def export_modality(
    bundle_path: str | Path,
    modality: str,
    fmt: str = "onnx",
    out: str | Path | None = None,
    check_files: list[str | Path] | None = None,
    replace: bool = False,
) -> ExportResult:
    """Export one modality's classifier and its preprocessing sidecar; raises ExportError, BundleError or
    OutputPathError. Existing files are replaced only when ``replace``; never the bundle or an input."""
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format '{fmt}'; choose onnx or torchscript.")
    if fmt == "onnx" and missing_onnx_packages():
        raise ExportError(f"Exporting to ONNX needs the optional package(s) {', '.join(missing_onnx_packages())}: "
                          f"{INSTALL_HINT}. TorchScript export works without them.")
    bundle = load_bundle(bundle_path)
    if modality not in bundle.specs:
        raise ExportError(f"The model has no modality '{modality}'; it has {', '.join(bundle.modality_names)}.")
    spec = bundle.specs[modality]
    # Both files are checked before the export's work (storage/outputs.py); every modality's training
    # folder is data (a later training would read what is written there), checked on or not.
    inputs, data_folders = [bundle_path, *(check_files or [])], list(bundle.training_folders().values())
    # ``out`` as typed: 'exports/' names a folder, never a file 'exports'.
    model_path = check_output_file(out if out else default_output_path(bundle_path, modality, fmt), inputs, replace,
                                   "the exported network", data_folders)
    sidecar = check_output_file(sidecar_path_for(model_path), inputs, replace, "the exported network's sidecar",
                                data_folders)

    calibration = bundle.calibration(modality)
    module = ExportableClassifier(bundle.build_branch(modality), calibration["temperature"]).eval()
    x, checked_on = _check_inputs(bundle, modality, check_files)
    # Trace with a batch of 2 (BatchNorm in eval mode; the batch axis is then declared dynamic).
    example = torch.from_numpy(x[:2] if x.shape[0] >= 2 else np.concatenate([x, x]))
    with torch.no_grad():
        expected = module(torch.from_numpy(x))[1].numpy()
        if fmt == "onnx":
            model_bytes = _export_onnx_bytes(module, example)
            got = _onnx_probabilities(model_bytes, x)
        else:
            model_bytes = _export_torchscript_bytes(module, example)
            got = _torchscript_probabilities(model_bytes, x)
    max_abs_diff = float(np.abs(got - expected).max())
    if not max_abs_diff <= PARITY_TOLERANCE:
        raise ExportError(f"The exported {fmt} network does not reproduce the model: probabilities differ by up to "
                          f"{max_abs_diff:.2e} (allowed {PARITY_TOLERANCE:g}) on {checked_on}. Nothing was written.")

    description = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "model_file": model_path.name,
        "model_format": fmt,
        "modality": modality,
        "classes": bundle.classes,
        "input": {"name": "input", "dtype": "float32", "shape": ["batch", *spec.input_shape]},
        "outputs": {
            "logits": {"shape": ["batch", len(bundle.classes)]},
            "probabilities": {"shape": ["batch", len(bundle.classes)],
                              "note": calibration_note(calibration)},
        },
        "calibration": {
            "temperature": calibration["temperature"],
            "fitted_on": calibration["fitted_on"],
            "method": "temperature scaling (Guo et al. 2017); the predicted class is the argmax of the logits either way",
            "uncertain_below": calibration["uncertain_below"],
            "uncertain_note": "an answer whose top probability is below uncertain_below is uncertain",
        },
        "preprocessing": preprocessing_description(spec, bundle.classes),
        "source": {
            "bundle": Path(bundle_path).name,
            "run_name": bundle.metadata.get("run_name"),
            "backbone": bundle.metadata["modalities"][modality].get("backbone"),
            "test_metrics": {k: v for k, v in bundle.test_metrics.get(modality, {}).items()
                             if k in ("accuracy", "weighted_f1", "macro_f1", "n", "ece", "ece_uncalibrated")},
        },
        "parity_check": {"max_abs_diff_probabilities": max_abs_diff, "tolerance": PARITY_TOLERANCE,
                         "checked_on": checked_on, "runtime": "onnxruntime" if fmt == "onnx" else "torch.jit.load"},
        "versions": {"torch": torch.__version__, **({"onnx_opset": ONNX_OPSET} if fmt == "onnx" else {})},
    }
    # Both files or neither: a full disk never leaves the new network beside an old sidecar (or none).
    atomic_write_together([(model_path, lambda fh: fh.write(model_bytes), False),
                           (sidecar, lambda fh: fh.write(json.dumps(description, indent=2)), True)], replace=replace)
    return ExportResult(model_path, sidecar, fmt, modality, max_abs_diff, checked_on,
                        is_calibrated(calibration))
