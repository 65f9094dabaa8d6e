"""Unlabelled paired recordings: the _unlabelled folder is not a class, and the better-validated
modality teaches the others on the recordings every modality has."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from discomkd.config import LossWeights, ModalitySource, TrainingConfig
from discomkd.data.load import load_modality
from discomkd.errors import ConfigError
from discomkd.model.losses import (
    mimicry,
    self_label_loss,
    self_labelling,
    teaching_direction,
    teaching_text,
    unlabelled_pair_loss,
)
from discomkd.storage.runs import read_history
from discomkd.storage.run_files import LOG_FILE
from discomkd.training.events import RunStarted, StageProgress, StopToken, TeachingChanged
from discomkd.training.preparation import load_dataset, prepare_modalities
from discomkd.training.trainer import continue_run, train

N_CLASSES = 3


@pytest.fixture(autouse=True)
def _private_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCOMKD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DISCOMKD_DATA_DIR", str(tmp_path / "data"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_modality(root: Path, stems: list[str], unlabelled: list[str], seed: int, signal: float) -> None:
    """Tiny .npy images: class c brightens band c by ``signal``; unlabelled files cycle the classes."""
    rng = np.random.default_rng(seed)

    def image(c: int) -> np.ndarray:
        x = rng.normal(0.0, 0.5, (1, 12, 12)).astype(np.float32)
        x[:, 4 * c : 4 * c + 4, :] += signal
        return x

    for c in range(N_CLASSES):
        (root / f"class{c}").mkdir(parents=True)
        for stem in stems:
            np.save(root / f"class{c}" / f"{stem}_{c}.npy", image(c))
    (root / "_unlabelled").mkdir()
    for k, stem in enumerate(unlabelled):
        np.save(root / "_unlabelled" / f"{stem}.npy", image(k % N_CLASSES))


def config_for(tmp_path: Path, **changes) -> TrainingConfig:
    settings = dict(epochs=3, batch_size=8, embed_dim=8, learning_rate=5e-3, device="cpu", backbone="compact",
                    split=(0.6, 0.2, 0.2))
    settings.update(changes)
    return TrainingConfig(modalities=[ModalitySource("strong", str(tmp_path / "strong")),
                                      ModalitySource("weak", str(tmp_path / "weak"))], **settings)


def test_the_unlabelled_folder_is_not_a_class(tmp_path):
    write_modality(tmp_path / "m", [f"s{i}" for i in range(4)], ["u0", "u1", "u2", "u3", "u4"], 1, 2.0)
    data = load_modality(tmp_path / "m", "m")
    assert data.classes == ["class0", "class1", "class2"]
    assert len(data.files) == 12 and set(data.labels.tolist()) == {0, 1, 2}
    assert data.unlabelled_stems == ["u0", "u1", "u2", "u3", "u4"] and data.unlabelled_x.shape == (5, 1, 12, 12)
    again = load_modality(tmp_path / "m", "m")  # from the cache: the same split
    assert again.from_cache and again.classes == data.classes and again.unlabelled_stems == data.unlabelled_stems


def test_the_labelled_files_decide_size_and_channels_not_a_larger_unlabelled_folder(tmp_path):
    from PIL import Image

    write_modality(tmp_path / "m", ["s0", "s1"], [], 1, 2.0)  # 6 labelled 1 x 12 x 12 arrays
    rng = np.random.default_rng(0)
    for i in range(30):  # many more recordings, larger, some of them RGB pictures
        np.save(tmp_path / "m" / "_unlabelled" / f"u{i}.npy", rng.normal(size=(1, 20, 20)).astype(np.float32))
        Image.fromarray(rng.integers(0, 255, (20, 20, 3)).astype(np.uint8)).save(tmp_path / "m" / "_unlabelled" / f"p{i}.png")
    data = load_modality(tmp_path / "m", "m")
    assert data.spec.channels == 1 and data.spec.size == (12, 12)  # was 20 x 20, or 3 channels and no class left
    assert data.classes == ["class0", "class1", "class2"] and len(data.files) == 6
    assert len(data.unlabelled_files) == 30 and data.unlabelled_x.shape == (30, 1, 12, 12)
    assert sum("p" in Path(s.path).stem and "has 3 channel(s)" in s.reason for s in data.skipped) == 30


def test_recordings_in_other_units_than_the_labelled_files_are_skipped_even_when_they_are_most_files(tmp_path):
    write_modality(tmp_path / "m", ["s0", "s1"], [f"u{i}" for i in range(20)], 1, 2.0)
    for i in range(4, 20):  # 16 recordings in other units: most of the folder's 26 files
        path = tmp_path / "m" / "_unlabelled" / f"u{i}.npy"
        np.save(path, np.load(path) * 1e9)
    data = load_modality(tmp_path / "m", "m")
    assert len(data.files) == 6 and data.unlabelled_stems == ["u0", "u1", "u2", "u3"]
    reasons = {Path(s.path).stem: s.reason for s in data.skipped}
    assert len(reasons) == 16 and all("typical labelled file" in why and "swamp" in why for why in reasons.values())


def test_only_recordings_every_modality_has_are_used_row_aligned(tmp_path):
    stems = [f"s{i}" for i in range(5)]
    write_modality(tmp_path / "strong", stems, ["a", "b", "c", "only_strong"], 1, 2.0)
    write_modality(tmp_path / "weak", stems, ["c", "b", "a", "only_weak"], 2, 2.0)
    config = config_for(tmp_path)
    dataset = load_dataset(config, lambda event: None, StopToken())
    assert dataset.report.unlabelled == {"strong": 4, "weak": 4} and dataset.report.unlabelled_pairs == 3
    assert any("unlabelled: 3 recordings" in line for line in dataset.report.summary_lines())
    prepared = prepare_modalities(config, dataset)
    strong, weak = (dataset.modalities[0], dataset.modalities[1])
    for name, data in (("strong", strong), ("weak", weak)):
        raw = {s: data.unlabelled_x[i] for i, s in enumerate(data.unlabelled_stems)}
        expected = prepared[name].spec.normalize(np.stack([raw["a"], raw["b"], raw["c"]]))
        assert np.allclose(prepared[name].unlabelled.numpy(), expected)  # rows a, b, c in both


def test_the_better_validated_modality_teaches_on_unlabelled_pairs():
    assert teaching_direction({"strong": 0.9, "weak": 0.5}) == {"strong": [], "weak": ["strong"]}
    assert teaching_direction({"a": 0.5, "b": 0.5}) == {"a": [], "b": []}  # a tie: nobody teaches
    strong = torch.tensor([[2.0, 0.5], [0.1, 0.3]], requires_grad=True)
    weak = torch.tensor([[0.0, 1.0], [1.0, 0.0]], requires_grad=True)
    loss = unlabelled_pair_loss({"strong": strong, "weak": weak}, {"strong": [], "weak": ["strong"]})
    assert float(loss.detach()) == pytest.approx(float(mimicry(weak, torch.softmax(strong, 1)).detach()))
    loss.backward()
    assert strong.grad is None and weak.grad.abs().sum() > 0  # the teacher is not pulled
    assert float(unlabelled_pair_loss({"strong": strong, "weak": weak}, {"strong": [], "weak": []}).detach()) == 0.0


def test_the_teaching_modality_learns_its_own_confident_predictions_only():
    strong = torch.tensor([[4.0, 0.0], [0.1, 0.3], [0.0, 5.0]], requires_grad=True)  # rows 0, 2 confident
    weak = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], requires_grad=True)
    teachers = {"strong": [], "weak": ["strong"]}
    plain = unlabelled_pair_loss({"strong": strong, "weak": weak}, teachers)
    with_self = unlabelled_pair_loss({"strong": strong, "weak": weak}, teachers, self_label_threshold=0.9)
    own = torch.nn.functional.cross_entropy(strong[[0, 2]], torch.tensor([0, 1]), reduction="sum") / 3
    assert float((with_self - plain).detach()) == pytest.approx(float(own.detach()))  # row 1 (57%) gives no label
    with_self.backward()
    assert strong.grad[1].abs().sum() == 0 and strong.grad[0].abs().sum() > 0  # pulled only where confident
    assert self_label_loss(strong, 1.0).item() == 0.0  # nothing that confident
    # A modality taught by another does not label itself; nobody teaching: nothing at all.
    three = {"rgb": [], "depth": ["rgb"], "thermal": ["rgb", "depth"]}
    assert self_labelling(three) == {"rgb"}
    assert float(unlabelled_pair_loss({"a": strong, "b": weak}, {"a": [], "b": []}, self_label_threshold=0.9).detach()) == 0.0
    text = teaching_text(teachers, {"strong": 0.95, "weak": 0.5}, self_label_threshold=0.9)
    assert text.endswith("strong also learns from its own predictions of 90% calibrated confidence or more")
    assert "own predictions" not in teaching_text(teachers, {"strong": 0.95, "weak": 0.5})


def test_self_labels_read_calibrated_confidence():
    # Row 1 is 55% sure raw; at the temperature fitted on validation (0.25 here, these classifiers are
    # far too modest) it is 69%: cut at 0.65 it labels itself only once calibrated.
    strong = torch.tensor([[4.0, 0.0], [0.1, 0.3], [0.0, 5.0]])
    assert self_label_loss(strong, 0.65).item() == pytest.approx(
        float(torch.nn.functional.cross_entropy(strong[[0, 2]], torch.tensor([0, 1]), reduction="sum") / 3))
    calibrated = self_label_loss(strong, 0.65, confidence_temperature=0.25)
    assert calibrated.item() == pytest.approx(
        float(torch.nn.functional.cross_entropy(strong, torch.tensor([0, 1, 1]), reduction="sum") / 3))
    teachers = {"strong": [], "weak": ["strong"]}
    weak = torch.zeros(3, 2)
    by_name = unlabelled_pair_loss({"strong": strong, "weak": weak}, teachers, self_label_threshold=0.65,
                                   confidence_temperatures={"strong": 0.25})
    plain = unlabelled_pair_loss({"strong": strong, "weak": weak}, teachers)
    assert float(by_name - plain) == pytest.approx(calibrated.item())


def test_a_run_with_self_labels_reads_them_at_the_temperature_fitted_on_validation(tmp_path, monkeypatch):
    from discomkd.training import loop

    stems = [f"s{i}" for i in range(10)]
    unlabelled = [f"u{i}" for i in range(24)]
    write_modality(tmp_path / "strong", stems, unlabelled, 1, 2.0)
    write_modality(tmp_path / "weak", stems, unlabelled, 2, 0.05)
    seen = []
    original = loop.self_label_temperatures

    def spy(session, teachers):
        temperatures = original(session, teachers)
        seen.append(temperatures)
        return temperatures

    monkeypatch.setattr(loop, "self_label_temperatures", spy)
    ended = train(config_for(tmp_path, self_label_threshold=0.9, teacher_self_training=False),
                  run_dir=tmp_path / "run", stop=StopToken())
    assert ended.status == "finished", ended.reason
    fitted = [t for t in seen if t]
    assert fitted and all(set(t) == {"strong"} and t["strong"] != 1.0 for t in fitted)  # once strong teaches
    assert seen[0] == {}  # nobody teaches in the first epoch: nothing to fit


def test_self_labels_are_off_by_default_and_kept_in_the_run_record():
    assert TrainingConfig().self_label_threshold == 0.0
    assert TrainingConfig.from_dict({"epochs": 3}).self_label_threshold == 0.0  # an older run.json
    on = TrainingConfig(self_label_threshold=0.9)
    assert TrainingConfig.from_dict(on.to_dict()).self_label_threshold == 0.9
    with pytest.raises(ConfigError, match="between 0 and 1"):
        TrainingConfig(self_label_threshold=1.5).validate()


def test_training_uses_unlabelled_pairs_once_a_modality_validates_better(tmp_path):
    stems = [f"s{i}" for i in range(10)]
    unlabelled = [f"u{i}" for i in range(24)]
    write_modality(tmp_path / "strong", stems, unlabelled, 1, 2.0)
    write_modality(tmp_path / "weak", stems, unlabelled, 2, 0.05)  # a faint band: the weaker sensor
    events = []
    ended = train(config_for(tmp_path), run_dir=tmp_path / "run", on_event=events.append, stop=StopToken())
    assert ended.status == "finished", ended.reason
    history = read_history(tmp_path / "run")
    # No validation score yet, then one: nobody teaches until the lead has held on two epochs.
    assert history[0]["train_losses"]["unlabelled"] == history[1]["train_losses"]["unlabelled"] == 0.0
    assert all(h["val"]["strong"]["weighted_f1"] > h["val"]["weak"]["weighted_f1"] for h in history[:2])
    assert all(h["train_losses"]["unlabelled"] > 0 for h in history[2:])
    assert ended.test_metrics["strong"]["accuracy"] > 0.6
    # After the epochs the teaching modality is retrained, or the log says why not.
    log = (tmp_path / "run" / LOG_FILE).read_text()
    assert "self-training stage: strong is retrained" in log or "no recording is predicted with 90% calibrated" in log
    started = [e for e in events if isinstance(e, RunStarted)][0]
    assert "unlabelled" in started.active_terms and "agree" not in started.active_terms
    assert "L_agree off while learning from 24 unlabelled recordings" in (tmp_path / "run" / LOG_FILE).read_text()
    # Switched off, the same data trains without the term.
    events.clear()
    off = train(config_for(tmp_path, weights=LossWeights(unlabelled=0.0)), run_dir=tmp_path / "off",
                on_event=events.append, stop=StopToken())
    assert all(h["train_losses"]["unlabelled"] == 0.0 for h in read_history(tmp_path / "off"))
    assert off.status == "finished"
    assert "agree" in [e for e in events if isinstance(e, RunStarted)][0].active_terms  # labelled pairs only: L_agree


def test_agreement_is_off_while_learning_from_recordings_unless_kept():
    default = TrainingConfig()
    assert default.agree_with_unlabelled is False
    assert default.training_weights(0).agree == 1.0  # labelled pairs only
    assert default.training_weights(100).agree == 0.0  # learning from recordings
    assert default.training_weights(100).unlabelled == default.weights.unlabelled
    without_term = TrainingConfig(weights=LossWeights(unlabelled=0.0))
    assert without_term.training_weights(100).agree == 1.0  # the recordings are not learnt from
    assert TrainingConfig(agree_with_unlabelled=True).training_weights(100).agree == 1.0
    # A run recorded before the setting kept L_agree beside the recordings: continuing it still does.
    assert TrainingConfig.from_dict({"epochs": 3, "weights": {"agree": 1.0}}).training_weights(100).agree == 1.0
    assert TrainingConfig.from_dict(default.to_dict()).agree_with_unlabelled is False
    with pytest.raises(ConfigError, match="true or false"):
        TrainingConfig(agree_with_unlabelled="false").validate()


def test_teaching_needs_a_margin_and_holds_until_overtaken_by_it():
    assert teaching_direction({"a": 0.51, "b": 0.50}) == {"a": [], "b": []}  # within 2 points: nobody
    assert teaching_direction({"a": -1.0, "b": -1.0}) == {"a": [], "b": []}  # nothing validated yet
    held = teaching_direction({"a": 0.60, "b": 0.50})
    assert held == {"a": [], "b": ["a"]}
    # b catches up to within the margin, even slightly above a: a keeps teaching (no flapping).
    assert teaching_direction({"a": 0.60, "b": 0.615}, held) == {"a": [], "b": ["a"]}
    # b overtakes a by more than the margin: the direction turns, never both ways at once.
    assert teaching_direction({"a": 0.60, "b": 0.63}, held) == {"a": ["b"], "b": []}
    # A lead on one epoch only (an early lucky score) starts nothing; held on two, it does.
    assert teaching_direction({"a": 0.30, "b": 0.20}, earlier_scores={"a": 0.10, "b": 0.15}) == {"a": [], "b": []}
    assert teaching_direction({"a": 0.30, "b": 0.20}, earlier_scores={"a": 0.25, "b": 0.15}) == {"a": [], "b": ["a"]}
    three = teaching_direction({"rgb": 0.9, "depth": 0.85, "thermal": 0.6})
    assert three == {"rgb": [], "depth": ["rgb"], "thermal": ["rgb", "depth"]}


def test_unlabelled_recordings_named_like_a_labelled_file_are_left_out_and_listed(tmp_path):
    stems = [f"s{i}" for i in range(4)]
    # "s1_0" is also a labelled file of class0 (a copy of a possible test sample) in both modalities.
    write_modality(tmp_path / "strong", stems, ["u0", "u1", "s1_0"], 1, 2.0)
    write_modality(tmp_path / "weak", stems, ["u0", "u1", "s1_0"], 2, 2.0)
    config = config_for(tmp_path, epochs=1)
    dataset = load_dataset(config, lambda event: None, StopToken())
    assert dataset.report.unlabelled_pairs == 2 and dataset.report.unlabelled_dropped == ["s1_0"]
    assert any("1 unlabelled recording(s) left out" in line and "s1_0" in line
               for line in dataset.report.summary_lines())
    assert prepare_modalities(config, dataset)["weak"].unlabelled.shape[0] == 2
    ended = train(config, run_dir=tmp_path / "run", on_event=lambda e: None, stop=StopToken(), dataset=dataset)
    from discomkd.storage.runs import read_run_record
    assert read_run_record(tmp_path / "run")["data"]["unlabelled_dropped"] == ["s1_0"], ended.reason


def test_unlabelled_recordings_no_modality_pairs_are_reported_with_what_to_do(tmp_path, capsys):
    from discomkd.cli import main
    from discomkd.storage.runs import read_run_record
    from discomkd.training.compare import run_comparison

    def report(case: str, strong: list[str], weak: list[str]):
        stems = [f"s{i}" for i in range(4)]
        write_modality(tmp_path / case / "strong", stems, strong, 1, 2.0)
        write_modality(tmp_path / case / "weak", stems, weak, 2, 2.0)
        return load_dataset(config_for(tmp_path / case), lambda event: None, StopToken()).report

    # An _unlabelled folder in one modality only (the other's is empty): said, with what to do.
    only_one = report("one", ["a", "b", "c"], []).unlabelled_unused_text()
    assert "(strong 3 file(s)) are not used: weak has no _unlabelled folder" in only_one
    assert "in an _unlabelled folder of every modality" in only_one
    # Names that match nothing across the modalities.
    apart = report("apart", ["a", "b", "c"], ["x", "y"])
    assert "share no file name across modalities (strong 3, weak 2 file(s))" in apart.unlabelled_unused_text()
    assert apart.unlabelled_unused_text() in apart.summary_lines()
    # Some match: the others are counted per modality.
    some = report("some", ["a", "b", "c"], ["a", "b", "x", "y"])
    assert some.unlabelled_pairs == 2 and some.unlabelled_unused_text().startswith("3 unlabelled file(s) are not used "
                                                                                  "(strong 1, weak 2)")
    assert report("all", ["a", "b"], ["b", "a"]).unlabelled_unused_text() == ""
    # The training records and logs it, the command line prints it, and a comparison reports it.
    config = config_for(tmp_path / "apart", epochs=1)
    assert main(["train", "--modality", f"strong={tmp_path / 'apart' / 'strong'}", "--modality",
                 f"weak={tmp_path / 'apart' / 'weak'}", "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size",
                 "8", "--embed-dim", "8", "--device", "cpu", "--split", "0.6,0.2,0.2"]) == 0
    assert apart.unlabelled_unused_text() in capsys.readouterr().out
    assert read_run_record(tmp_path / "run")["data"]["unlabelled_unused"] == apart.unlabelled_unused_text()
    assert apart.unlabelled_unused_text() in (tmp_path / "run" / LOG_FILE).read_text(encoding="utf-8")
    result = run_comparison(config, ["student"], 1)
    assert result.unlabelled_line() == apart.unlabelled_unused_text()
    assert apart.unlabelled_unused_text() in result.to_markdown()


def test_a_recording_name_of_two_files_in_one_modality_is_left_out_and_said(tmp_path):
    stems = [f"s{i}" for i in range(4)]
    write_modality(tmp_path / "strong", stems, ["a", "b"], 1, 2.0)
    write_modality(tmp_path / "weak", stems, ["a", "b", "rec1"], 2, 2.0)
    for day in ("day1", "day2"):  # sessions numbered alike: which rec1 pairs with weak's is unclear
        (tmp_path / "strong" / "_unlabelled" / day).mkdir()
        np.save(tmp_path / "strong" / "_unlabelled" / day / "rec1.npy", np.zeros((1, 12, 12), dtype=np.float32))
    config = config_for(tmp_path)
    dataset = load_dataset(config, lambda event: None, StopToken())
    assert dataset.report.unlabelled_pairs == 2 and dataset.report.unlabelled_clashes == ["rec1"]
    text = dataset.report.unlabelled_unused_text()
    assert text.startswith("1 unlabelled recording name(s) belong to two or more files of one modality") and "rec1" in text
    assert "Give each recording a name of its own." in text and "no file of the same name" not in text
    assert prepare_modalities(config, dataset)["strong"].unlabelled.shape[0] == 2  # a and b only


def test_who_teaches_whom_is_announced_and_logged(tmp_path):
    stems = [f"s{i}" for i in range(10)]
    unlabelled = [f"u{i}" for i in range(24)]
    write_modality(tmp_path / "strong", stems, unlabelled, 1, 2.0)
    write_modality(tmp_path / "weak", stems, unlabelled, 2, 0.05)
    events = []
    ended = train(config_for(tmp_path), run_dir=tmp_path / "run", on_event=events.append, stop=StopToken())
    assert ended.status == "finished", ended.reason
    changes = [e for e in events if isinstance(e, TeachingChanged)]
    assert changes and changes[0].epoch == 3 and changes[0].teachers == {"strong": [], "weak": ["strong"]}
    assert "strong teaches weak" in changes[0].text
    assert "strong teaches weak" in (tmp_path / "run" / "train.log").read_text(encoding="utf-8")


def test_the_command_line_keeps_agreement_beside_recordings_only_when_asked():
    import argparse

    from discomkd.options import add_training_options, config_from_args

    parser = argparse.ArgumentParser()
    add_training_options(parser)
    assert config_from_args(parser.parse_args([]), []).agree_with_unlabelled is False
    assert config_from_args(parser.parse_args(["--agree-with-unlabelled"]), []).agree_with_unlabelled is True


def test_the_teaching_modality_is_self_trained_after_the_epochs_and_kept_when_it_validates_higher(tmp_path, monkeypatch):
    from discomkd.model.bundle import load_bundle
    from discomkd.training import teacher_stage
    from discomkd.training.students import BaselineSettings

    stems = [f"s{i}" for i in range(10)]
    unlabelled = [f"u{i}" for i in range(24)]
    write_modality(tmp_path / "strong", stems, unlabelled, 1, 2.0)
    write_modality(tmp_path / "weak", stems, unlabelled, 2, 0.05)
    # A tiny model is barely sure of anything: a lower cut gives it pseudo-labels. Its retrained
    # classifier is then made to validate higher, so that the run must keep it.
    monkeypatch.setattr(teacher_stage, "SETTINGS", BaselineSettings(self_training_threshold=0.34))
    real = teacher_stage.train_students

    def validates_higher(*args, **kwargs):
        result = real(*args, **kwargs)
        result.best_scores = {n: 1.5 for n in result.best_scores}
        return result

    monkeypatch.setattr(teacher_stage, "train_students", validates_higher)
    events = []
    ended = train(config_for(tmp_path, epochs=4), run_dir=tmp_path / "run", on_event=events.append, stop=StopToken())
    assert ended.status == "finished", ended.reason
    stage = json.loads((tmp_path / "run" / "run.json").read_text())["teacher_self_training"]
    assert list(stage) == ["strong"]  # the teaching modality only; weak keeps its joint classifier
    assert stage["strong"]["kept"] == "retrained" and stage["strong"]["validation_retrained"] == 1.5
    assert 0 < stage["strong"]["confident_recordings"] <= stage["strong"]["recordings"] == 24
    assert "strong: validation weighted F1" in ended.reason and "the retrained classifier is kept" in ended.reason
    strong = ended.test_metrics["strong"]
    assert len(strong["val_curve"]) == 4 and 1 <= strong["best_epoch"] <= 4  # the retraining's own epochs
    assert set(strong["before_self_training"]) >= {"weighted_f1", "accuracy", "best_epoch"}
    assert "before_self_training" not in ended.test_metrics["weak"]
    assert any(isinstance(e, StageProgress) and e.fraction == 1.0 for e in events)
    bundle = load_bundle(tmp_path / "run" / "model.discomkd")  # the kept weights load and are calibrated
    assert bundle.calibration("strong")["fitted_on"] is not None
    # `continue --epochs 0` recalibrates the kept classifiers without retraining or reverting them.
    again = continue_run(tmp_path / "run", 0, on_event=lambda e: None, stop=StopToken())
    assert again.status == "finished", again.reason
    assert again.test_metrics["strong"]["weighted_f1"] == strong["weighted_f1"]
    assert again.test_metrics["strong"]["before_self_training"] == strong["before_self_training"]
    assert (tmp_path / "run" / LOG_FILE).read_text().count("strong is retrained alone") == 1
    # Switched off, the run ends after its epochs.
    off = train(config_for(tmp_path, epochs=4, teacher_self_training=False), run_dir=tmp_path / "off",
                on_event=lambda e: None, stop=StopToken())
    assert off.status == "finished" and "before_self_training" not in off.test_metrics["strong"]
    assert "teacher_self_training" not in json.loads((tmp_path / "off" / "run.json").read_text())


def test_runs_recorded_before_the_stage_do_not_get_it_when_continued():
    assert TrainingConfig().teacher_self_training is True
    assert TrainingConfig.from_dict({"epochs": 3}).teacher_self_training is False
    assert TrainingConfig.from_dict(TrainingConfig().to_dict()).teacher_self_training is True
