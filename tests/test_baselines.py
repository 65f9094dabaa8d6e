"""Baselines and the comparison report (engine only, no Qt)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from discomkd.config import ModalitySource, TrainingConfig
from discomkd.errors import ConfigError, StorageError
from discomkd.model.losses import class_conditional_targets, mimicry
from discomkd.model.baselines import dkd_loss, dkd_terms, kd_divergence, kd_loss
from discomkd.training.baselines import BaselineSettings, run_method
from discomkd.training.compare import (
    METHODS,
    ComparisonResult,
    CompareProgress,
    read_comparison,
    convergence_warnings,
    late_gain,
    run_comparison,
    summarise,
)
from discomkd.training.events import StopToken
from discomkd.training.preparation import load_dataset

N_CLASSES = 3


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared CPU they oversubscribe badly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _private_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCOMKD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DISCOMKD_DATA_DIR", str(tmp_path / "data"))


def _write_modality(root: Path, channels: int, stems: list[str], seed: int) -> None:
    """Tiny .npy images: class c brightens horizontal band c (easy to learn, never trivial zero loss)."""
    rng = np.random.default_rng(seed)
    for c in range(N_CLASSES):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for stem in stems:
            x = rng.normal(0.0, 0.5, (channels, 12, 12)).astype(np.float32)
            x[:, 4 * c : 4 * c + 4, :] += 2.0
            np.save(folder / f"{stem}.npy", x)


def _tiny_config(tmp_path: Path, paired: bool, **changes) -> TrainingConfig:
    stems = [f"s{i}" for i in range(20)]
    _write_modality(tmp_path / "a", 1, stems, 1)
    _write_modality(tmp_path / "b", 2, stems if paired else [f"other{i}" for i in range(20)], 2)
    settings = dict(epochs=3, batch_size=8, embed_dim=8, learning_rate=5e-3, device="cpu", backbone="compact")
    settings.update(changes)
    return TrainingConfig(
        modalities=[ModalitySource("a", str(tmp_path / "a")), ModalitySource("b", str(tmp_path / "b"))],
        **settings,
    )


def _dataset(config: TrainingConfig):
    return load_dataset(config, lambda e: None, StopToken())


# --- losses on hand-computed tensors ------------------------------------------------------------


def test_kd_divergence_is_temperature_scaled_kl_times_t_squared():
    s = torch.tensor([[1.0, 0.0, -1.0]])
    t = torch.tensor([[2.0, 0.0, 0.0]])
    T = 2.0
    p_t = np.exp([1.0, 0.0, 0.0]) / np.exp([1.0, 0.0, 0.0]).sum()
    p_s = np.exp([0.5, 0.0, -0.5]) / np.exp([0.5, 0.0, -0.5]).sum()
    expected = (p_t * np.log(p_t / p_s)).sum() * T * T
    assert float(kd_divergence(s, t, T)) == pytest.approx(expected, rel=1e-5)


def test_kd_loss_mixes_distillation_and_cross_entropy_with_alpha():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    t = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    y = torch.tensor([0, 1])
    ce = float(F.cross_entropy(s, y))
    kd = float(kd_divergence(s, t, 4.0))
    assert float(kd_loss(s, t, y, 4.0, 0.7)) == pytest.approx(0.7 * kd + 0.3 * ce, rel=1e-5)
    assert float(kd_loss(s, t, y, 4.0, 0.0)) == pytest.approx(ce, rel=1e-5)


def test_dkd_terms_match_the_paper_formulas():
    s = torch.tensor([[1.0, 0.5, -1.0]])
    t = torch.tensor([[2.0, 0.0, 1.0]])
    y = torch.tensor([0])
    T = 1.0
    p_s = np.exp([1.0, 0.5, -1.0]) / np.exp([1.0, 0.5, -1.0]).sum()
    p_t = np.exp([2.0, 0.0, 1.0]) / np.exp([2.0, 0.0, 1.0]).sum()
    b_s, b_t = np.array([p_s[0], 1 - p_s[0]]), np.array([p_t[0], 1 - p_t[0]])
    tckd = (b_t * np.log(b_t / b_s)).sum()
    q_s, q_t = p_s[1:] / p_s[1:].sum(), p_t[1:] / p_t[1:].sum()
    nckd = (q_t * np.log(q_t / q_s)).sum()
    got_tckd, got_nckd = dkd_terms(s, t, y, T)
    assert float(got_tckd) == pytest.approx(tckd, rel=1e-5)
    assert float(got_nckd) == pytest.approx(nckd, rel=1e-5)
    ce = float(F.cross_entropy(s, y))
    assert float(dkd_loss(s, t, y, alpha=1.0, beta=8.0, temperature=T)) == pytest.approx(ce + tckd + 8 * nckd, rel=1e-5)


def test_classic_kd_equals_tckd_plus_weighted_nckd():
    """Zhao et al. Eq. 7: KD = TCKD + (1 - p_t^T) NCKD, a check of both implementations together."""
    torch.manual_seed(0)
    s, t = torch.randn(5, 6), torch.randn(5, 6)
    y = torch.tensor([0, 3, 5, 1, 2])
    T = 3.0
    tckd, nckd = dkd_terms(s[:1], t[:1], y[:1], T)
    pt_t = F.softmax(t[:1] / T, dim=1)[0, y[0]]
    assert float(kd_divergence(s[:1], t[:1], T)) == pytest.approx(float(tckd + (1 - pt_t) * nckd), rel=1e-4)


def test_dml_mimicry_is_kl_from_peer_to_student():
    logits = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    peer = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    p = F.softmax(logits, dim=1).numpy()
    q = peer.numpy()
    per_sample = (q * np.log(q / p)).sum(axis=1)
    assert float(mimicry(logits, peer)) == pytest.approx(per_sample.mean(), abs=1e-6)
    assert float(mimicry(logits, peer, torch.tensor([False, True]))) == pytest.approx(per_sample[1], abs=1e-6)
    assert float(mimicry(logits, peer, torch.tensor([False, False]))) == 0.0


def test_unpaired_dml_targets_are_class_means_of_the_peer_batch():
    peer_logits = torch.log(torch.tensor([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]]))
    peer_labels = torch.tensor([0, 0, 1])
    targets, mask = class_conditional_targets(peer_logits, peer_labels, torch.tensor([1, 0, 2]), 3)
    assert torch.allclose(targets[0], torch.tensor([0.2, 0.7, 0.1]), atol=1e-6)
    assert torch.allclose(targets[1], torch.tensor([0.7, 0.2, 0.1]), atol=1e-6)
    assert mask.tolist() == [True, True, False]  # class 2 is absent from the peer's batch


# --- each method trains above chance ------------------------------------------------------------


@pytest.fixture(scope="module")
def paired_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paired")
    mp = pytest.MonkeyPatch()
    mp.setenv("DISCOMKD_CACHE_DIR", str(tmp / "cache"))
    config = _tiny_config(tmp, paired=True)
    dataset = _dataset(config)
    yield config, dataset
    mp.undo()


@pytest.mark.parametrize("method", ["student", "kd", "dkd", "dml", "discomkd_no_perp"])
def test_each_method_trains_above_chance_on_paired_data(paired_setup, method):
    config, dataset = paired_setup
    assert dataset.report.pairing.status == "paired"
    run = run_method(method, config, dataset, settings=BaselineSettings(dkd_warmup_epochs=0.5))
    assert run.status == "finished", run.reason
    for name in ("a", "b"):
        assert run.test_metrics[name]["accuracy"] > 0.6, (method, name, run.test_metrics[name])
    if method in ("kd", "dkd"):
        assert run.teacher_metrics["accuracy"] > 0.6


def test_unpaired_dml_trains_above_chance(tmp_path):
    config = _tiny_config(tmp_path, paired=False)
    dataset = _dataset(config)
    assert dataset.report.pairing.status == "unpaired"
    run = run_method("dml", config, dataset)
    assert run.status == "finished", run.reason
    assert min(run.test_metrics[n]["accuracy"] for n in ("a", "b")) > 0.6


def test_methods_see_the_same_splits_as_discomkd(paired_setup):
    config, dataset = paired_setup
    student = run_method("student", config, dataset)
    discomkd = run_method("discomkd", config, dataset)
    for name in ("a", "b"):
        assert student.test_metrics[name]["n"] == discomkd.test_metrics[name]["n"]
        cm_s = np.asarray(student.test_metrics[name]["confusion"]).sum(axis=1)
        cm_d = np.asarray(discomkd.test_metrics[name]["confusion"]).sum(axis=1)
        assert cm_s.tolist() == cm_d.tolist()  # same test samples per class


def test_classifiers_only_control_reproduces_the_student_alone(paired_setup):
    """The trainer with every term but L_cl at 0 is the student alone: same network, data order and
    updates, so the same test predictions. This is what makes the paired differences trustworthy."""
    config, dataset = paired_setup
    student = run_method("student", replace(config, epochs=2), dataset)
    control = run_method("classifiers_only", replace(config, epochs=2), dataset)
    assert student.status == control.status == "finished"
    for name in ("a", "b"):
        assert control.test_metrics[name]["confusion"] == student.test_metrics[name]["confusion"]
        assert control.test_metrics[name]["weighted_f1"] == pytest.approx(student.test_metrics[name]["weighted_f1"])


# --- the comparison -----------------------------------------------------------------------------


def test_compare_skips_teacher_methods_when_unpaired(tmp_path):
    config = _tiny_config(tmp_path, paired=False, epochs=1)
    seen: list[CompareProgress] = []
    result = run_comparison(config, ["student", "kd", "dkd"], seeds=2, out_dir=tmp_path / "out", on_progress=seen.append)
    assert set(result.skipped) == {"kd", "dkd"}
    assert "paired" in result.skipped["kd"]
    assert {r["method"] for r in result.rows} == {"student"}
    assert [p["seed"] for p in result.per_run] == [config.seed, config.seed + 1]
    assert seen[-1].fraction == pytest.approx(1.0)
    assert all(0.0 <= p.fraction <= 1.0 for p in seen)
    for name in ("comparison.md", "comparison.csv", "per_run.json"):
        assert (tmp_path / "out" / name).exists()
    payload = json.loads((tmp_path / "out" / "per_run.json").read_text())
    assert len(payload["runs"]) == 2 and payload["skipped"].keys() == {"kd", "dkd"}
    assert read_comparison(tmp_path / "out").to_markdown() == result.to_markdown()


def test_compare_stops_between_and_within_runs(tmp_path):
    config = _tiny_config(tmp_path, paired=False, epochs=1)
    stop = StopToken()

    def on_progress(p: CompareProgress) -> None:
        if p.method == "student" and p.fraction > 0.1:
            stop.request()

    result = run_comparison(config, ["student", "dml"], seeds=3, on_progress=on_progress, stop=stop,
                            out_dir=tmp_path / "out")
    assert result.stopped
    assert [p["method"] for p in result.per_run] == ["student"]
    assert result.per_run[0]["status"] == "stopped"
    assert result.rows == []
    # Stopped before any run ended: nothing measured, so no empty table takes the output folder.
    assert result.measured_nothing and not (tmp_path / "out").exists()


def test_comparison_table_formatting():
    per_run = [
        {"method": "discomkd", "seed": s, "status": "finished", "time_s": t,
         "metrics": {"rgb": {"weighted_f1": f, "accuracy": a, "best_epoch": e}}}
        for s, t, f, a, e in ((0, 10.0, 0.8, 0.9, 4), (1, 20.0, 0.6, 0.7, 10))
    ] + [{"method": "student", "seed": 0, "status": "stopped", "time_s": 1.0, "metrics": {"rgb": {}}}]
    rows = summarise(per_run, ["discomkd", "student"], ["rgb"])
    assert len(rows) == 1
    row = rows[0]
    assert row["wf1_mean"] == pytest.approx(0.7) and row["wf1_std"] == pytest.approx(math.sqrt(0.02))
    assert row["time_s"] == pytest.approx(15.0)
    assert "verdict" not in row  # the student alone has no finished run to pair with
    result = ComparisonResult(rows=rows, skipped={"kd": "needs paired data"}, per_run=per_run,
                              settings={"seeds": 2, "config": {"epochs": 10}})
    md = result.to_markdown()
    assert "| DisCoM-KD | rgb | no | 0.700 ± 0.141 | 0.800 ± 0.141 |  |  | 2 | 4/10 | 15.0 |" in md
    assert "- Teacher + KD (Hinton): needs paired data" in md
    assert "- DisCoM-KD, rgb: best epoch 10 of 10 (in the last 20%, which raised" in md  # no curve: flagged
    csv_lines = result.to_csv().splitlines()
    assert csv_lines[0] == ("method,label,modality,unlabelled,wf1_mean,wf1_std,acc_mean,acc_std,time_s,n_runs,"
                            "diff_mean,diff_ci_low,diff_ci_high,diff_wilcoxon_p,diff_seeds,verdict,"
                            "strongest_baseline,vs_strongest_mean,vs_strongest_ci_low,vs_strongest_ci_high,"
                            "vs_strongest_wilcoxon_p,vs_strongest_seeds,vs_strongest_verdict")
    assert csv_lines[1].startswith("discomkd,DisCoM-KD,rgb,no,0.7000,0.1414,0.8000,0.1414,15.0000,2")


def test_convergence_check_flags_a_late_climb_not_a_late_plateau():
    """A late best epoch is flagged when the last 20% of the epochs raised the best validation F1 by
    more than a point; on a plateau (the cosine schedule's flat tail) it is not."""
    plateau = [0.5 + 0.01 * e for e in range(8)] + [0.575, 0.579]  # best at 10, +0.9 points late
    climbing = [0.5 + 0.01 * e for e in range(8)] + [0.59, 0.60]   # best at 10, +3 points late
    early = [0.5, 0.7, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]      # best at 2
    per_run = [{"method": "discomkd", "seed": s, "status": "finished", "time_s": 1.0,
                "metrics": {"weak": {"weighted_f1": 0.6, "accuracy": 0.6, "best_epoch": 10, "val_curve": c},
                            "strong": {"weighted_f1": 0.9, "accuracy": 0.9, "best_epoch": 2, "val_curve": early}}}
               for s, c in ((0, plateau), (1, climbing))]
    assert late_gain(plateau, 10) == pytest.approx(0.009)
    assert late_gain(plateau[:9], 10) is None  # a curve that does not cover the run proves nothing
    warnings = convergence_warnings(per_run, 10)
    assert len(warnings) == 1 and warnings[0].startswith("DisCoM-KD, weak: best epoch 10 (+3.0) of 10")
    assert convergence_warnings(per_run[:1], 10) == []
    md = ComparisonResult(rows=summarise(per_run[:1], ["discomkd"], ["weak", "strong"]), per_run=per_run[:1],
                          settings={"seeds": 1, "config": {"epochs": 10}}).to_markdown()
    assert ("- DisCoM-KD, weak: best epoch in the last 20% on 1 seed(s), on a plateau: those epochs raised the "
            "best validation F1 by +0.9 points") in md


def test_runs_record_their_validation_curve(paired_setup):
    config, dataset = paired_setup
    for method in ("student", "discomkd"):
        run = run_method(method, replace(config, epochs=2), dataset)
        for name in ("a", "b"):
            curve = run.test_metrics[name]["val_curve"]
            assert len(curve) == 2 and all(0.0 <= f <= 1.0 for f in curve), (method, curve)
            assert run.test_metrics[name]["best_epoch"] == 1 + curve.index(max(curve))


def test_paired_differences_to_the_student_and_verdicts():
    """Fixed numbers: DisCoM-KD beats the student on every seed of 'weak' by 2-4 points, ties on 'strong'."""
    weak_student = [0.55, 0.54, 0.56, 0.53, 0.55]
    weak_gain = [0.03, 0.02, 0.04, 0.025, 0.03]
    strong_student = [0.96, 0.97, 0.965, 0.96, 0.97]
    strong_change = [0.002, -0.003, 0.001, -0.001, 0.0]
    per_run = []
    for k in range(5):
        per_run.append({"method": "student", "seed": k, "status": "finished", "time_s": 1.0, "metrics": {
            "strong": {"weighted_f1": strong_student[k], "accuracy": 0.0, "best_epoch": 10},
            "weak": {"weighted_f1": weak_student[k], "accuracy": 0.0, "best_epoch": 12}}})
        per_run.append({"method": "discomkd", "seed": k, "status": "finished", "time_s": 2.0, "metrics": {
            "strong": {"weighted_f1": strong_student[k] + strong_change[k], "accuracy": 0.0, "best_epoch": 11},
            "weak": {"weighted_f1": weak_student[k] + weak_gain[k], "accuracy": 0.0, "best_epoch": 20}}})
    rows = summarise(per_run, ["discomkd", "student"], ["strong", "weak"])
    by = {(r["method"], r["modality"]): r for r in rows}
    weak = by["discomkd", "weak"]
    assert weak["diff_mean"] == pytest.approx(0.029) and weak["diff_seeds"] == 5
    assert weak["diff_ci_low"] > 0 and weak["verdict"] == "helps"
    assert weak["diff_wilcoxon_p"] == pytest.approx(0.0625)
    assert by["discomkd", "strong"]["verdict"] == "no evidence"
    assert "verdict" not in by["student", "weak"]
    result = ComparisonResult(rows=rows, per_run=per_run, settings={"seeds": 5, "config": {"epochs": 30}})
    assert result.verdict_lines() == [
        "DisCoM-KD vs student alone: strong: no evidence, -0.0 F1 points (95% CI -0.3 to +0.2, Wilcoxon p 1, "
        "5 seeds); weak: helps, +2.9 F1 points (95% CI +2.0 to +3.8, Wilcoxon p 0.062, 5 seeds)"]
    assert result.warnings == []
    md = result.to_markdown()
    assert "| DisCoM-KD | weak | no | 0.575 ± 0.018 | 0.000 ± 0.000 | +2.9 (+2.0 to +3.8; p 0.062) | helps | 5 |" in md


def test_methods_contract():
    assert list(METHODS) == ["discomkd", "student", "classifiers_only", "discomkd_paper", "kd", "dkd", "dml",
                             "distill", "self_training", "discomkd_no_aux", "discomkd_no_adv", "discomkd_no_mod",
                             "discomkd_no_perp", "discomkd_no_agree", "discomkd_no_unlabelled"]
    with pytest.raises(ConfigError):
        run_comparison(TrainingConfig(), ["nonsense"], seeds=1)


def test_modality_argument_bands_are_one_based_in_text():
    import argparse

    from discomkd.cli import parse_modality_arg

    src = parse_modality_arg("rgb=/data/eurosat:bands=4,3,2")
    assert (src.name, src.folder, src.overrides) == ("rgb", "/data/eurosat", {"bands": [3, 2, 1]})
    src = parse_modality_arg(r"ir=C:\data\eurosat:bands=8,9,12,13:augmentation=flips_rot90")
    assert src.folder == r"C:\data\eurosat"
    assert src.overrides == {"bands": [7, 8, 11, 12], "augmentation": "flips_rot90"}
    assert parse_modality_arg("image=./img").overrides == {}
    for bad in ("noequals", "x=", "rgb=/d:bands=0,1", "rgb=/d:bands=a"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_modality_arg(bad)


def test_compare_command_line_writes_the_report(tmp_path, capsys):
    from discomkd.cli import main

    config = _tiny_config(tmp_path, paired=False)
    a, b = (m.folder for m in config.modalities)
    code = main(["compare", "--modality", f"a={a}", "--modality", f"b={b}:augmentation=none", "--seeds", "1",
                 "--methods", "student,kd", "--epochs", "1", "--batch-size", "8", "--embed-dim", "8",
                 "--device", "cpu", "--out", str(tmp_path / "report")])
    assert code == 0
    out = capsys.readouterr().out
    assert "| Student alone (CE) | a |" in out and "Teacher + KD (Hinton): needs paired data" in out
    payload = json.loads((tmp_path / "report" / "per_run.json").read_text())
    assert payload["settings"]["config"]["modalities"][1]["overrides"] == {"augmentation": "none"}


# --- the same data for every method: unlabelled recordings ----------------------------------------


def _with_unlabelled(tmp_path: Path, weak_signal: float = 0.2) -> TrainingConfig:
    """Paired a (strong) and b (weak: a faint band) with 30 unlabelled recordings in each _unlabelled folder."""
    config = _tiny_config(tmp_path, paired=True, epochs=2)
    rng = np.random.default_rng(5)
    for name, channels, signal in (("a", 1, 2.0), ("b", 2, weak_signal)):
        if name == "b":  # the labelled files of b too: a faint band, so that a teaches b
            for f in sorted((tmp_path / "b").glob("class*/*.npy")):
                x = np.load(f)
                c = int(f.parent.name[-1])
                x[:, 4 * c : 4 * c + 4, :] -= 2.0 - weak_signal
                np.save(f, x)
        folder = tmp_path / name / "_unlabelled"
        folder.mkdir()
        for k in range(30):
            x = rng.normal(0.0, 0.5, (channels, 12, 12)).astype(np.float32)
            x[:, 4 * (k % N_CLASSES) : 4 * (k % N_CLASSES) + 4, :] += signal
            np.save(folder / f"u{k}.npy", x)
    return config


@pytest.fixture(scope="module")
def unlabelled_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("unlabelled")
    mp = pytest.MonkeyPatch()
    mp.setenv("DISCOMKD_CACHE_DIR", str(tmp / "cache"))
    config = _with_unlabelled(tmp)
    dataset = _dataset(config)
    assert dataset.report.unlabelled_pairs == 30
    yield config, dataset
    mp.undo()


@pytest.mark.parametrize("method", ["dml", "kd", "dkd", "distill", "self_training"])
def test_baselines_are_given_the_unlabelled_recordings(unlabelled_setup, method, monkeypatch):
    """Every baseline that can learn from the recordings does: its loss sees a batch of them each
    step, and the run says so."""
    import discomkd.training.students as students

    seen = []
    original = students._student_losses

    def spy(method_, setup, settings, logits, labels, rows, targets, u_logits, u_rows, progress):
        seen.append({n: int(t.shape[0]) for n, t in u_logits.items()})
        return original(method_, setup, settings, logits, labels, rows, targets, u_logits, u_rows, progress)

    monkeypatch.setattr(students, "_student_losses", spy)
    config, dataset = unlabelled_setup
    run = run_method(method, config, dataset, settings=BaselineSettings(self_training_threshold=0.0))
    assert run.status == "finished", run.reason
    assert run.uses_unlabelled
    assert any(batch for batch in seen), "no step saw unlabelled recordings"
    assert all(size == config.batch_size for batch in seen for size in batch.values())
    assert run.test_metrics["a"]["accuracy"] > 0.6, run.test_metrics
    without = run_method(method, config, dataset, settings=BaselineSettings(use_unlabelled=False,
                                                                            self_training_threshold=0.0))
    if method == "self_training":
        assert without.status == "skipped" and "unlabelled" in without.reason
    else:
        assert without.status == "finished" and not without.uses_unlabelled


def test_distill_retrains_only_the_weaker_modality_with_the_stronger_as_teacher(unlabelled_setup, monkeypatch):
    import discomkd.training.baselines as baselines

    calls = []
    original = baselines.train_students

    def spy(method, setup, settings, progress, stop, targets=None, train_names=None):
        result = original(method, setup, settings, progress, stop, targets, train_names)
        calls.append((method, train_names, result.best_scores))
        return result

    monkeypatch.setattr(baselines, "train_students", spy)
    config, dataset = unlabelled_setup
    run = run_method("distill", config, dataset)
    assert run.status == "finished", run.reason
    (stage1, names1, scores), (stage2, names2, _) = calls
    assert stage1 == "student" and names1 is None
    assert scores["a"] > scores["b"] + 0.02  # the faint band validates lower
    assert stage2 == "distill" and names2 == ["b"] and "Retrained with a teacher: b" in run.reason


def test_self_training_uses_only_confident_pseudo_labels():
    from discomkd.training.students import StudentTargets, _unlabelled_batch_rows

    targets = StudentTargets(pseudo_rows={"a": torch.tensor([3, 7]), "b": torch.tensor([], dtype=torch.long)})
    rows = _unlabelled_batch_rows("self_training", None, targets, ["a", "b"], 16, torch.Generator().manual_seed(0))
    assert set(rows) == {"a"} and set(rows["a"].tolist()) <= {3, 7}  # b has none: no unlabelled batch


def test_methods_without_unlabelled_recordings_are_skipped_with_a_reason(tmp_path):
    config = _tiny_config(tmp_path, paired=False, epochs=1)
    result = run_comparison(config, ["student", "distill", "self_training"], seeds=1, dataset=_dataset(config))
    assert set(result.skipped) == {"distill", "self_training"}
    assert "unlabelled" in result.skipped["self_training"] and "paired" in result.skipped["distill"]


def test_the_verdict_compares_the_default_with_the_strongest_baseline_given_the_same_data():
    def runs(method, wf1, unlabelled):
        return [{"method": method, "seed": k, "status": "finished", "time_s": 1.0, "uses_unlabelled": unlabelled,
                 "metrics": {"weak": {"weighted_f1": w, "accuracy": w, "best_epoch": 3}}}
                for k, w in enumerate(wf1)]

    per_run = (runs("student", [0.50, 0.52, 0.51], False) + runs("discomkd", [0.60, 0.61, 0.63], True)
               + runs("distill", [0.59, 0.60, 0.61], True) + runs("dml", [0.55, 0.56, 0.55], True)
               + runs("kd", [0.70, 0.70, 0.70], False))  # stronger, but not given the recordings
    methods = ["student", "discomkd", "distill", "dml", "kd"]
    result = ComparisonResult(summarise(per_run, methods, ["weak"]), {}, per_run,
                              {"seeds": 3, "unlabelled_pairs": 30, "config": {"epochs": 10}})
    row = next(r for r in result.rows if r["method"] == "discomkd")
    assert row["strongest_baseline"] == "distill"
    assert row["vs_strongest_mean"] == pytest.approx((0.01 + 0.01 + 0.02) / 3)
    lines = result.verdict_lines()
    assert lines[0].startswith("DisCoM-KD vs student alone: weak: helps")
    assert lines[1].startswith("DisCoM-KD vs the strongest baseline with the unlabelled recordings: weak: vs "
                               "Two-stage distillation, ")
    assert result.unlabelled_line() == ("30 unlabelled recordings: given to DisCoM-KD, Two-stage distillation, "
                                        "Deep mutual learning; not used by Student alone (CE), Teacher + KD (Hinton).")
    assert "| DisCoM-KD | weak | yes |" in result.to_markdown()


# --- a diverged baseline fails, as the DisCoM-KD trainer does, instead of reporting a broken model ---------


def test_a_student_whose_weights_are_not_finite_fails_instead_of_reporting_chance(tmp_path):
    config = _tiny_config(tmp_path, paired=False, epochs=1, learning_rate=1e6)
    # At this rate BatchNorm's running statistics overflow while the training losses stay finite; the
    # selected model then answers one class, which was reported as a finished run at chance accuracy.
    run = run_method("student", config, _dataset(config))
    assert run.status == "failed" and not run.test_metrics
    assert run.reason.startswith("The student training diverged: the weights of a became NaN or infinite at epoch 1 (")
    assert "Lower the learning rate (it is 1e+06" in run.reason


def test_divergence_advice_is_ten_times_lower_but_never_above_the_default(tmp_path):
    """At 1e9 the advice was "try 1e+08 or less" (at 1e30, 1e+29): rates that diverge as well."""
    from discomkd.training.schedule import lower_learning_rate_advice

    assert lower_learning_rate_advice(3e-3) == "try 0.0003 or less"
    assert lower_learning_rate_advice(1e-3) == "try 0.0001 or less"
    for rate in (0.01, 1e9, 1e30):
        assert lower_learning_rate_advice(rate) == "try the default, 0.001, or less"
    config = _tiny_config(tmp_path, paired=False, epochs=1, learning_rate=1e9)
    run = run_method("student", config, _dataset(config))
    assert run.status == "failed" and "Lower the learning rate (it is 1e+09; try the default, 0.001, or less)" in run.reason
    assert "1e+08" not in run.reason


def test_a_student_that_diverges_after_a_finite_best_fails_instead_of_finishing(tmp_path, monkeypatch):
    """A later epoch's non-finite validation loss ends the run as the trainer's does; the run is not
    reported as finished with the earlier best."""
    import discomkd.training.students as students

    config = _tiny_config(tmp_path, paired=False, epochs=3)
    calls = {"n": 0}
    real_eval = students.eval_logits

    def eval_turning_nan(model, x, device):
        calls["n"] += 1
        logits = real_eval(model, x, device)
        return torch.full_like(logits, float("nan")) if calls["n"] > 2 else logits  # epoch 2 of 2 modalities on

    monkeypatch.setattr(students, "eval_logits", eval_turning_nan)
    run = run_method("dml", config, _dataset(config))
    assert run.status == "failed" and not run.test_metrics
    assert run.reason.startswith("The dml training diverged: the validation loss of a became nan at epoch 2")


def test_a_teacher_whose_weights_turn_non_finite_fails_the_run_with_why(tmp_path, monkeypatch):
    from discomkd.training import baselines

    class OverflowingStatistics(baselines.Optimisation):
        """Each update leaves the teacher's BatchNorm variances infinite (its training loss stays finite)."""

        def __init__(self, setup, params):
            self.params = list(params)
            super().__init__(setup, self.params)

        def step(self, loss, where, progress_in_run):
            super().step(loss, where, progress_in_run)
            if where == "teacher":
                for module in teachers:
                    for layer in module.modules():
                        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                            layer.running_var.fill_(float("inf"))

    teachers = []
    monkeypatch.setattr(baselines, "training_layout", lambda model: teachers.append(model) or model)
    monkeypatch.setattr(baselines, "Optimisation", OverflowingStatistics)
    config = _tiny_config(tmp_path, paired=True, epochs=1)
    run = run_method("kd", config, _dataset(config))
    assert run.status == "failed" and not run.test_metrics
    assert run.reason.startswith("The teacher training diverged: weights became NaN or infinite at epoch 1 (")


def test_a_comparison_the_disk_cannot_hold_keeps_the_earlier_files(tmp_path, monkeypatch):
    """The table, the CSV and the runs are written together: a disk that fills up on one of them
    keeps the earlier comparison whole, never a new table beside the old runs."""
    import errno

    import discomkd.storage.atomic as atomic

    per_run = [{"method": "discomkd", "seed": 0, "status": "finished", "time_s": 1.0,
                "metrics": {"rgb": {"weighted_f1": 0.5, "accuracy": 0.5, "best_epoch": 1}}}]
    earlier = ComparisonResult(rows=summarise(per_run, ["discomkd"], ["rgb"]), skipped={}, per_run=per_run,
                               settings={"seeds": 1, "config": {"epochs": 1}})
    earlier.write(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    newer_runs = [dict(per_run[0], metrics={"rgb": {"weighted_f1": 0.9, "accuracy": 0.9, "best_epoch": 1}})]
    newer = ComparisonResult(rows=summarise(newer_runs, ["discomkd"], ["rgb"]), skipped={}, per_run=newer_runs,
                             settings={"seeds": 1, "config": {"epochs": 1}})
    write_temporary = atomic._write_temporary

    def disk_full_on_the_runs(path, write, text):
        if path.name == "per_run.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_temporary(path, write, text)

    monkeypatch.setattr(atomic, "_write_temporary", disk_full_on_the_runs)
    with pytest.raises(StorageError, match="is full"):
        newer.write(tmp_path, replace=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
