"""Bundle round trip, refusal of foreign/tampered/malicious files, prediction routing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from discomkd.errors import BundleError, PredictionError
from discomkd.inference.predict import Prediction, PredictionFailure, Predictor, write_predictions_csv
from discomkd.model.bundle import load_bundle, save_bundle


def _files(folder: Path, n: int = 5) -> list[Path]:
    return [f for d in sorted(folder.iterdir()) for f in sorted(d.iterdir())[:1]][:n]


def test_bundle_round_trip_gives_identical_predictions(trained_run, tiny_demo, tmp_path):
    bundle = load_bundle(trained_run.bundle_path)
    copy = save_bundle(tmp_path / "copy.discomkd", bundle.metadata, bundle.weights)
    original, reloaded = Predictor(bundle), Predictor.from_path(copy)
    for path in _files(tiny_demo["image"]) + _files(tiny_demo["audio"]):
        a, b = original.predict_file(path), reloaded.predict_file(path)
        assert a.modality == b.modality and a.label == b.label
        assert a.probabilities == b.probabilities
    assert bundle.metadata["versions"]["torch"] == torch.__version__


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.discomkd"
    torch.save({"format": "discomkd-bundle", "payload": Exploit()}, path)
    with pytest.raises(BundleError, match="could run code"):
        load_bundle(path)
    assert not marker.exists()


def test_truncated_bundle_is_refused(trained_run, tmp_path):
    data = Path(trained_run.bundle_path).read_bytes()
    path = tmp_path / "cut.discomkd"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="truncated|damaged"):
        load_bundle(path)


def test_edited_bundle_fails_the_integrity_check(trained_run, tmp_path):
    payload = torch.load(trained_run.bundle_path, weights_only=True)
    payload["metadata"] = payload["metadata"].replace('"0"', '"zero"', 1)
    path = tmp_path / "edited.discomkd"
    torch.save(payload, path)
    with pytest.raises(BundleError, match="integrity"):
        load_bundle(path)


def test_foreign_files_are_refused(trained_run, tmp_path):
    image = tmp_path / "photo.discomkd"
    Image.new("L", (4, 4)).save(image, format="PNG")
    with pytest.raises(BundleError, match="not a DisCoM-KD model"):
        load_bundle(image)
    checkpoint = tmp_path / "plain.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, checkpoint)
    with pytest.raises(BundleError, match="not a DisCoM-KD model bundle"):
        load_bundle(checkpoint)
    with pytest.raises(BundleError, match="not a file"):
        load_bundle(tmp_path)


def test_files_are_routed_to_their_modality(trained_run, tiny_demo):
    predictor = Predictor.from_path(trained_run.bundle_path)
    png = _files(tiny_demo["image"], 1)[0]
    wav = _files(tiny_demo["audio"], 1)[0]
    assert predictor.predict_file(png).modality == "image"
    assert predictor.predict_file(wav).modality == "audio"
    prediction = predictor.predict_file(wav)
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert prediction.top(3)[0][0] == prediction.label


def test_ambiguous_modality_names_the_candidates(trained_run, tiny_demo, tmp_path):
    bundle = load_bundle(trained_run.bundle_path)
    metadata = dict(bundle.metadata)
    metadata["modalities"] = dict(metadata["modalities"])
    metadata["modalities"]["depth"] = dict(metadata["modalities"]["image"], spec=dict(metadata["modalities"]["image"]["spec"], name="depth"))
    weights = dict(bundle.weights, depth=bundle.weights["image"])
    path = save_bundle(tmp_path / "two-images.discomkd", metadata, weights)
    predictor = Predictor.from_path(path)
    png = _files(tiny_demo["image"], 1)[0]
    with pytest.raises(PredictionError, match="could belong to image, depth"):
        predictor.predict_file(png)
    assert predictor.predict_file(png, modality="depth").modality == "depth"


def test_many_files_give_a_failure_entry_per_bad_file_and_a_csv(trained_run, tiny_demo, tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    for f in _files(tiny_demo["image"], 3):
        shutil.copyfile(f, folder / f.name)
    (folder / "notes.txt").write_text("not data")
    (folder / "broken.png").write_bytes(b"garbage")
    (folder / ".DS_Store").write_bytes(b"x")
    Image.new("RGB", (28, 28)).save(folder / "colour.png")
    predictor = Predictor.from_path(trained_run.bundle_path)
    results = predictor.predict_files([folder])
    by_name = {Path(r.path).name: r for r in results}
    assert ".DS_Store" not in by_name
    assert isinstance(by_name["notes.txt"], PredictionFailure) and "not a supported file" in by_name["notes.txt"].message
    assert isinstance(by_name["broken.png"], PredictionFailure) and "unreadable image" in by_name["broken.png"].message
    assert isinstance(by_name["colour.png"], PredictionFailure) and "fits none" in by_name["colour.png"].message
    assert sum(isinstance(r, Prediction) for r in results) == 3
    csv_path = write_predictions_csv(results, tmp_path / "out.csv", predictor.classes)
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("file,modality,prediction,confidence,uncertain,p_0") and len(lines) == 1 + len(results)
