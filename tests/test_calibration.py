"""Calibrated probabilities: temperature scaling recovers a known temperature and never changes the
answer, ECE matches a hand computation, old bundles read as uncalibrated, and a training stores
and uses what it fitted (bundle, run.json, predict, evaluate, the uncertain-answer threshold)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from support import tiny_config
from discomkd.cli import main
from discomkd.errors import BundleError
from discomkd.inference.predict import Prediction, Predictor, expand_paths, write_predictions_csv
from discomkd.model.bundle import load_bundle, save_bundle
from discomkd.model.calibration import (
    MIN_TEMPERATURE,
    UNCERTAIN_ACCURACY_LEVEL,
    calibrated_probabilities,
    default_uncertain_below,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    reliability_bins,
)
from discomkd.storage import runs
from discomkd.training.trainer import train


def _synthetic_logits(true_temperature: float, n: int = 20_000, classes: int = 10, seed: int = 0):
    """Labels drawn from softmax(z): z is calibrated, so logits z * T need temperature T to be calibrated."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, classes, generator=generator, dtype=torch.float64) * 3
    labels = torch.multinomial(torch.softmax(z, dim=1), 1, generator=generator).squeeze(1)
    return z * true_temperature, labels


@pytest.mark.parametrize("true_temperature", [0.4, 2.5])
def test_fitted_temperature_recovers_the_one_that_made_the_logits(true_temperature):
    logits, labels = _synthetic_logits(true_temperature)
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.05)


def test_calibration_lowers_the_error_and_never_changes_the_predicted_class():
    logits, labels = _synthetic_logits(0.3)  # underconfident, as the trained classifiers are
    temperature = fit_temperature(logits, labels)
    before, after = calibrated_probabilities(logits, 1.0), calibrated_probabilities(logits, temperature)
    assert torch.equal(before.argmax(1), after.argmax(1))
    correct = (after.argmax(1) == labels).numpy()
    ece_before = expected_calibration_error(before.max(1).values.numpy(), correct)
    ece_after = expected_calibration_error(after.max(1).values.numpy(), correct)
    assert ece_before > 0.2 and ece_after < 0.02


def test_a_validation_split_without_errors_does_not_make_every_answer_certain():
    logits, _ = _synthetic_logits(1.0, n=200)
    labels = logits.argmax(1)  # every validation answer right: the NLL alone would drive T to its lower bound
    logits[torch.arange(200), labels] += 4.0  # by a clear margin (at T = 1 the mean confidence is below 0.995)
    assert float(calibrated_probabilities(logits, 1.0).max(1).values.mean()) < 201 / 202
    assert fit_temperature(logits, labels) == pytest.approx(MIN_TEMPERATURE, rel=1e-3)
    calibration = fit_calibration(logits, labels)
    assert calibration["temperature"] > MIN_TEMPERATURE
    confidence = calibrated_probabilities(logits, calibration["temperature"]).max(1).values.mean()
    assert float(confidence) == pytest.approx(201 / 202, abs=1e-6)  # Laplace: (200 + 1) / (200 + 2)


def test_fit_without_samples_keeps_temperature_one():
    assert fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)) == 1.0


def test_ece_matches_a_hand_computed_example():
    # 15 bins of width 1/15: 0.1 -> bin 1; 0.30 and 0.32 -> bin 4; 0.9 -> bin 13; 0.95 and 1.0 -> bin 14.
    confidences = [0.1, 0.3, 0.32, 0.9, 0.95, 1.0]
    correct = [0, 1, 0, 1, 1, 1]
    # bin 1: |0 - 0.1|; bin 4: |0.5 - 0.31| for 2 answers; bin 13: |1 - 0.9|; bin 14: |1 - 0.975| for 2 answers.
    expected = (0.1 + 2 * 0.19 + 0.1 + 2 * 0.025) / 6
    assert expected_calibration_error(confidences, correct) == pytest.approx(expected)
    bins = reliability_bins(confidences, correct)
    assert len(bins) == 15 and [b["count"] for b in bins] == [0, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]
    assert bins[4]["confidence"] == pytest.approx(0.31) and bins[4]["accuracy"] == 0.5
    assert bins[0]["confidence"] is None and bins[0]["accuracy"] is None
    assert reliability_bins([0.0], [1])[0]["count"] == 1  # a confidence of 0 goes to the first bin


def test_uncertain_threshold_is_where_validation_accuracy_reaches_the_level():
    # Right about half the time up to 0.55, always from 0.6 up: the accuracy curve reaches 0.9 at 0.6.
    confidences = [0.30, 0.40, 0.45, 0.50, 0.55, 0.60, 0.70, 0.80, 0.90, 0.99]
    correct = [0, 1, 0, 1, 0, 1, 1, 1, 1, 1]
    assert default_uncertain_below(confidences, correct) == pytest.approx(0.6)
    assert default_uncertain_below([0.5, 0.9], [0, 0]) == 1.0  # never reaches the level: flag everything
    assert default_uncertain_below([], []) == UNCERTAIN_ACCURACY_LEVEL


def test_a_training_stores_its_calibration_in_the_bundle_and_run_json(trained_run):
    bundle = load_bundle(trained_run.bundle_path)
    record = runs.read_run_record(trained_run.run_dir)
    for modality in ("image", "audio"):
        calibration = bundle.calibration(modality)
        assert calibration["fitted_on"] == "validation" and calibration["samples"] > 0
        assert calibration["temperature"] != 1.0 and 0 < calibration["uncertain_below"] <= 1
        assert record["calibration"][modality] == calibration
        test = record["test_metrics"][modality]
        assert test["temperature"] == calibration["temperature"] and 0 <= test["ece"] <= 1
        assert {"ece_uncalibrated", "mean_confidence", "reliability"} <= set(test)
        assert sum(b["count"] for b in test["reliability"]["calibrated"]) == test["n"]


def test_predictions_are_calibrated_and_keep_the_uncalibrated_answer(trained_run, tiny_demo):
    bundle = load_bundle(trained_run.bundle_path)
    predictor = Predictor(bundle)
    for path in expand_paths([tiny_demo["audio"] / "2"])[:3]:
        prediction = predictor.predict_file(path)
        with torch.no_grad():
            logits = predictor.branch("audio")(torch.from_numpy(predictor.preprocess(path, "audio")))["logits"]
        expected = calibrated_probabilities(logits, bundle.temperature("audio"))[0].numpy()
        got = np.asarray([prediction.probabilities[c] for c in bundle.classes])
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert prediction.label == bundle.classes[int(logits.argmax())]
        assert prediction.uncertain == (prediction.confidence < bundle.uncertain_below("audio"))


def test_a_bundle_from_before_calibration_loads_with_temperature_one(trained_run, tiny_demo, tmp_path):
    bundle = load_bundle(trained_run.bundle_path)
    metadata = json.loads(json.dumps(bundle.metadata))
    for info in metadata["modalities"].values():
        del info["calibration"]
    old = load_bundle(save_bundle(tmp_path / "old.discomkd", metadata, bundle.weights))
    assert old.temperature("image") == 1.0 and old.calibration("image")["fitted_on"] is None
    png = expand_paths([tiny_demo["image"] / "1"])[0]
    predictor = Predictor(old)
    with torch.no_grad():
        logits = predictor.branch("image")(torch.from_numpy(predictor.preprocess(png, "image")))["logits"]
    got = np.asarray([predictor.predict_file(png).probabilities[c] for c in old.classes])
    np.testing.assert_allclose(got, torch.softmax(logits, 1)[0].numpy(), atol=1e-6)


def test_predict_and_export_say_when_a_bundle_from_before_calibration_is_not_calibrated(trained_run, tiny_demo,
                                                                                        tmp_path, capsys):
    bundle = load_bundle(trained_run.bundle_path)
    metadata = json.loads(json.dumps(bundle.metadata))
    for info in metadata["modalities"].values():
        del info["calibration"]
    old = save_bundle(tmp_path / "old.discomkd", metadata, bundle.weights)
    png = str(expand_paths([tiny_demo["image"] / "1"])[0])
    for path, calibrated in ((trained_run.bundle_path, True), (old, False)):
        assert main(["predict", str(path), png]) == 0
        out = capsys.readouterr().out
        assert ("probabilities are calibrated" in out) == calibrated
        assert ("NOT calibrated" in out and "--epochs 0" in out) == (not calibrated)
        assert ("from its validation split" in out) == calibrated
        network = tmp_path / f"{'new' if calibrated else 'old'}.pt"
        assert main(["export", str(path), "--modality", "image", "--format", "torchscript", "--out", str(network)]) == 0
        note = json.loads((tmp_path / f"{network.name}.json").read_text())["outputs"]["probabilities"]["note"]
        assert note.startswith("calibrated: softmax(logits / temperature)" if calibrated else "NOT calibrated")
        assert ("NOT calibrated" in capsys.readouterr().err) == (not calibrated)


@pytest.mark.parametrize("bad", [{"temperature": 0}, {"temperature": -1.0}, {"uncertain_below": 1.5}, "warm"])
def test_a_bundle_with_an_impossible_calibration_is_refused(trained_run, tmp_path, bad):
    bundle = load_bundle(trained_run.bundle_path)
    metadata = json.loads(json.dumps(bundle.metadata))
    calibration = metadata["modalities"]["image"]["calibration"]
    metadata["modalities"]["image"]["calibration"] = {**calibration, **bad} if isinstance(bad, dict) else bad
    path = save_bundle(tmp_path / "edited.discomkd", metadata, bundle.weights)
    with pytest.raises(BundleError, match="calibration|temperature|threshold"):
        load_bundle(path)


def test_without_validation_files_the_temperature_is_one(trained_run):
    """A training always has a validation split (one without is refused), but a modality can still
    end up with no validation file (a class-poor modality): then nothing is fitted, temperature 1."""
    from discomkd.training.calibrate import fit_branch_calibration

    from discomkd.model.networks import ModalityBranch

    bundle = load_bundle(trained_run.bundle_path)
    info = bundle.metadata["modalities"]["audio"]
    branch = ModalityBranch(info["backbone"], bundle.specs["audio"].input_shape, bundle.metadata["embed_dim"],
                            len(bundle.classes))
    branch.load_state_dict(bundle.weights["audio"])
    shape = bundle.specs["audio"].input_shape
    calibration = fit_branch_calibration(branch, torch.zeros((0, *shape)), torch.zeros(0, dtype=torch.long),
                                         torch.device("cpu"))
    assert calibration["temperature"] == 1.0 and calibration["fitted_on"] is None


def test_uncertain_answers_are_marked_in_the_csv_and_by_the_cli(trained_run, tiny_demo, tmp_path, capsys):
    files = [str(p) for p in expand_paths([tiny_demo["image"] / "0"])[:2]]
    results = Predictor.from_path(trained_run.bundle_path).predict_files(files)
    csv_path = write_predictions_csv(results, tmp_path / "p.csv", ["0", "1", "2", "3", "4"], uncertain_below=1.01)
    header, *rows = csv_path.read_text().splitlines()
    assert header.startswith("file,modality,prediction,confidence,uncertain,p_0")
    assert all(row.split(",")[4] == "yes" for row in rows)
    assert main(["predict", trained_run.bundle_path, *files, "--uncertain-below", "0"]) == 0
    out = capsys.readouterr().out
    assert out.count("\tok\t") == 2 and "0 of 2 answer(s) UNCERTAIN" in out
    assert main(["predict", trained_run.bundle_path, *files, "--uncertain-below", "1"]) == 0
    assert capsys.readouterr().out.count("\tUNCERTAIN\t") == 2
    assert main(["predict", trained_run.bundle_path, *files, "--uncertain-below", "80"]) == 1
    assert "from 0 to 1" in capsys.readouterr().err


def test_evaluate_reports_the_calibration_error_on_a_folder(trained_run, tiny_demo, tmp_path, capsys):
    out_json = tmp_path / "metrics.json"
    assert main(["evaluate", trained_run.bundle_path, "--modality", f"audio={tiny_demo['audio']}",
                 "--json", str(out_json)]) == 0
    assert "calibration: ECE" in capsys.readouterr().out
    metrics = json.loads(out_json.read_text())
    bundle = load_bundle(trained_run.bundle_path)
    assert metrics["temperature"] == bundle.temperature("audio")
    assert 0 <= metrics["ece"] <= 1 and 0 <= metrics["ece_uncalibrated"] <= 1
    assert sum(b["count"] for b in metrics["reliability"]["calibrated"]) == metrics["n"]
    assert metrics["uncertain"]["below"] == bundle.uncertain_below("audio")


def test_prediction_flags_against_a_given_threshold():
    prediction = Prediction("a.png", "image", "cat", {"cat": 0.7, "dog": 0.3}, uncertain_below=0.8)
    assert prediction.uncertain and not prediction.is_uncertain(0.6)


def test_continue_refits_the_calibration_for_the_new_best_weights(tiny_demo, tmp_path):
    from discomkd.training.trainer import continue_run

    first = train(tiny_config(tiny_demo, epochs=1, batch_size=16), run_dir=tmp_path / "run")
    before = load_bundle(first.bundle_path)
    second = continue_run(first.run_dir, extra_epochs=3)
    assert second.status == "finished", second.reason
    after = load_bundle(second.bundle_path)
    record = runs.read_run_record(first.run_dir)
    improved = [n for n in after.modality_names if after.metadata["modalities"][n]["best_epoch"] > 1]
    assert improved  # the continued epochs gave new best weights
    for n in improved:
        assert after.calibration(n)["fitted_on"] == "validation"
        assert after.temperature(n) != before.temperature(n)
        assert record["calibration"][n] == after.calibration(n)
        assert record["test_metrics"][n]["temperature"] == after.temperature(n)


def test_a_continue_that_fails_after_a_new_best_leaves_no_test_results_of_the_earlier_model(tiny_demo, tmp_path,
                                                                                          monkeypatch):
    """The earlier test results describe weights a new best replaced: a continue that then fails must
    not leave them beside the new model (the Results page and `info` would show another model's)."""
    import discomkd.training.loop as loop
    from discomkd.training.trainer import continue_run

    first = train(tiny_config(tiny_demo, epochs=1, batch_size=16), run_dir=tmp_path / "run")
    assert runs.read_run_record(first.run_dir)["test_metrics"]
    real_epoch = loop.train_one_epoch

    def diverging_in_the_last_epoch(run, session, epoch, clock):
        if epoch == 4:
            raise loop.diverged_error(session, f"the loss became nan at epoch {epoch}, step 1")
        return real_epoch(run, session, epoch, clock)

    monkeypatch.setattr(loop, "train_one_epoch", diverging_in_the_last_epoch)
    second = continue_run(first.run_dir, extra_epochs=3)
    assert second.status == "failed" and "diverged" in second.reason
    bundle = load_bundle(second.bundle_path)
    assert max(bundle.metadata["modalities"][n]["best_epoch"] for n in bundle.modality_names) > 1  # a new best
    record = runs.read_run_record(first.run_dir)
    assert not record.get("test_metrics") and not bundle.test_metrics
    run_dir = Path(first.run_dir)
    assert not (run_dir / runs.TEST_PREDICTIONS_FILE).exists() and not (run_dir / runs.EMBEDDINGS_FILE).exists()
    assert "measured again when this training ends" in (run_dir / runs.LOG_FILE).read_text()


def test_continue_with_no_epochs_calibrates_a_run_from_before_calibration(trained_run, tmp_path):
    import shutil

    from discomkd.training.trainer import continue_run

    run_dir = shutil.copytree(trained_run.run_dir, tmp_path / "old-run")
    bundle = load_bundle(run_dir / runs.BUNDLE_FILE)
    metadata = json.loads(json.dumps(bundle.metadata))
    for info in metadata["modalities"].values():
        del info["calibration"]  # as written before calibration existed
    save_bundle(run_dir / runs.BUNDLE_FILE, metadata, bundle.weights)
    result = continue_run(run_dir, extra_epochs=0)
    assert result.status == "finished" and result.epochs_done == trained_run.epochs_done
    refitted = load_bundle(result.bundle_path)
    for n in refitted.modality_names:
        assert refitted.calibration(n) == bundle.calibration(n)  # the same weights and split: the same fit
        assert torch.equal(refitted.weights[n][next(iter(refitted.weights[n]))], bundle.weights[n][next(iter(bundle.weights[n]))])
