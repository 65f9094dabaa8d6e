"""Export to ONNX and TorchScript: same probabilities as PyTorch on real files, a sidecar that is enough
to rebuild the input without this project, and a clear message when the optional packages are missing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from support import REPO, tiny_config
from discomkd.cli import main
from discomkd.inference.export import PARITY_TOLERANCE, ExportError, export_modality
from discomkd.inference.predict import Predictor, expand_paths
from discomkd.training.trainer import train

onnxruntime = pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")


@pytest.fixture(scope="module")
def three_kind_run(tiny_demo, tmp_path_factory):
    """Real digit images and recordings plus .npy signals (per-class sinusoids), one short training."""
    root = tmp_path_factory.mktemp("export-run")
    rng = np.random.default_rng(0)
    for digit in range(5):
        folder = root / "signal" / str(digit)
        folder.mkdir(parents=True)
        for i in range(8):
            t = np.linspace(0, 1, rng.integers(90, 110))
            np.save(folder / f"{i}.npy", np.stack([np.sin(2 * np.pi * (digit + 1) * t), rng.normal(size=t.size) * 0.1]))
    folders = dict(tiny_demo, signal=root / "signal")
    result = train(tiny_config(folders, epochs=2, embed_dim=8, batch_size=16), run_dir=root / "run")
    assert result.status == "finished", result.reason
    return result, folders


def _real_files(folder, n=12):
    files = expand_paths([folder])
    return files[:: max(1, len(files) // n)][:n]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("modality", ["image", "audio", "signal"])
def test_export_gives_the_model_probabilities_on_real_files(three_kind_run, tmp_path, modality, fmt):
    result, folders = three_kind_run
    out = tmp_path / f"{modality}.{'onnx' if fmt == 'onnx' else 'pt'}"
    exported = export_modality(result.bundle_path, modality, fmt, out)
    assert exported.max_abs_diff <= PARITY_TOLERANCE
    assert "real file(s)" in exported.checked_on  # the training folder was found and used

    # Independently of the export's own check: the exported file, run on its own, against the predictor.
    predictor = Predictor.from_path(result.bundle_path)
    files = _real_files(folders[modality])
    x = np.concatenate([predictor.preprocess(f, modality) for f in files]).astype(np.float32)
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        logits, probs = session.run(["logits", "probabilities"], {"input": x})
    else:
        import warnings

        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still what devices load
            module = torch.jit.load(str(out))
        logits, probs = (t.detach().numpy() for t in module(torch.from_numpy(x)))
    expected = np.asarray([[p.probabilities[c] for c in predictor.classes]
                           for p in (predictor.predict_file(f, modality) for f in files)])
    assert probs.shape == logits.shape == (len(files), len(predictor.classes))  # dynamic batch
    assert np.abs(probs - expected).max() <= PARITY_TOLERANCE
    # The probabilities are the calibrated ones: softmax(logits / T) with the bundle's temperature, not 1.
    temperature = predictor.bundle.temperature(modality)
    assert temperature != 1.0
    calibrated = np.exp(logits / temperature - (logits / temperature).max(1, keepdims=True))
    np.testing.assert_allclose(probs, calibrated / calibrated.sum(1, keepdims=True), atol=PARITY_TOLERANCE)

    sidecar = json.loads(exported.sidecar_path.read_text())
    assert exported.sidecar_path == out.with_name(out.name + ".json")
    assert sidecar["model_file"] == out.name and sidecar["classes"] == predictor.classes
    pre = sidecar["preprocessing"]
    assert pre["kind"] == modality and pre["mean"] == predictor.specs[modality].mean
    assert sidecar["input"]["shape"] == ["batch", *predictor.specs[modality].input_shape]
    assert pre["steps"]
    assert sidecar["calibration"]["temperature"] == temperature and sidecar["calibration"]["fitted_on"] == "validation"
    assert sidecar["calibration"]["uncertain_below"] == predictor.bundle.uncertain_below(modality)


def test_readme_example_classifies_a_wav_with_numpy_and_onnxruntime_alone(three_kind_run, tmp_path):
    result, folders = three_kind_run
    export_modality(result.bundle_path, "audio", "onnx", tmp_path / "audio.onnx")
    wav = expand_paths([folders["audio"] / "3"])[0]
    shutil.copyfile(wav, tmp_path / "speech.wav")
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Export a classifier for a device"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    # No import of this project or torch: a device has neither.
    assert "discomkd" not in code and "torch" not in code
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    label, confidence = run.stdout.split()
    prediction = Predictor.from_path(result.bundle_path).predict_file(wav, "audio")
    assert label == prediction.label
    assert abs(float(confidence) - prediction.confidence) < 2e-3  # the example rounds to 3 decimals


def test_cli_exports_and_reports_the_check(three_kind_run, tmp_path, capsys):
    result, _ = three_kind_run
    out = tmp_path / "image.pt"
    assert main(["export", result.bundle_path, "--modality", "image", "--format", "torchscript", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "probabilities match the model within" in printed
    assert out.exists() and out.with_name("image.pt.json").exists()


def test_cli_says_what_to_install_when_onnx_is_missing(three_kind_run, tmp_path, capsys, monkeypatch):
    import discomkd.inference.export as export

    result, _ = three_kind_run
    monkeypatch.setattr(export, "missing_onnx_packages", lambda: ["onnxruntime"])
    code = main(["export", result.bundle_path, "--modality", "audio", "--out", str(tmp_path / "a.onnx")])
    err = capsys.readouterr().err
    assert code == 1 and "pip install 'discomkd-studio[export]'" in err and "Traceback" not in err
    assert not (tmp_path / "a.onnx").exists()


def test_unknown_modality_and_unfit_check_files_are_refused(three_kind_run, tmp_path):
    result, folders = three_kind_run
    with pytest.raises(ExportError, match="has no modality 'depth'"):
        export_modality(result.bundle_path, "depth", "onnx", tmp_path / "d.onnx")
    with pytest.raises(ExportError, match="fits the modality 'signal'"):
        export_modality(result.bundle_path, "signal", "onnx", tmp_path / "s.onnx", check_files=[folders["audio"]])
    assert not list(tmp_path.iterdir())  # nothing written when the export is refused


def test_without_the_training_folder_the_check_uses_random_inputs(three_kind_run, tmp_path):
    result, _ = three_kind_run
    bundle = tmp_path / "copied.discomkd"
    shutil.copyfile(result.bundle_path, bundle)
    from discomkd.model.bundle import load_bundle, save_bundle

    loaded = load_bundle(bundle)
    for m in loaded.metadata["training"]["modalities"]:
        m["folder"] = str(tmp_path / "gone")  # as on another machine
    save_bundle(bundle, loaded.metadata, loaded.weights)
    exported = export_modality(bundle, "image", "onnx")
    assert exported.model_path == tmp_path / "copied-image.onnx"
    assert "random" in exported.checked_on and exported.max_abs_diff <= PARITY_TOLERANCE
