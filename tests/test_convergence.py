"""The rule for 'still improving at the end', shared by the comparison and the trainer's advice."""

from __future__ import annotations

from pathlib import Path

from discomkd.storage import runs
from discomkd.training.convergence import gain_tolerance, late_gain, still_improving, train_longer_advice


def _history(curves: dict[str, list[float]]) -> list[dict]:
    epochs = len(next(iter(curves.values())))
    return [{"epoch": e + 1, "val": {n: {"weighted_f1": c[e]} for n, c in curves.items()}} for e in range(epochs)]


def test_a_late_climb_is_still_improving_and_a_late_plateau_is_not():
    climbing = [0.50, 0.55, 0.58, 0.60, 0.61, 0.62, 0.63, 0.64, 0.66, 0.68]  # +4 points in epochs 9-10
    plateau = [0.50, 0.55, 0.58, 0.60, 0.61, 0.62, 0.63, 0.64, 0.642, 0.645]  # +0.5 points
    assert late_gain(climbing, 10) == 0.68 - 0.64
    assert still_improving(climbing, best_epoch=10, epochs=10) == 0.68 - 0.64
    assert still_improving(plateau, best_epoch=10, epochs=10) is None
    assert still_improving(climbing, best_epoch=8, epochs=10) is None  # the best epoch was not late
    assert still_improving(climbing[:9], best_epoch=9, epochs=10) is None  # a curve that misses epochs
    assert still_improving(climbing[:4], best_epoch=4, epochs=4) is None  # too few epochs to tell


def test_the_advice_names_each_improving_modality_and_how_to_continue():
    history = _history({"rgb": [0.5, 0.55, 0.58, 0.60, 0.61, 0.62, 0.63, 0.64, 0.66, 0.68],
                        "depth": [0.5, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]})
    advice = train_longer_advice(history, {"rgb": 10, "depth": 2})
    assert advice.startswith("Still improving at the end (rgb: best epoch 10 of 10, +4.0 validation F1 points in "
                             "the last 20% of the epochs): ")
    assert "depth" not in advice and "discomkd continue RUN_FOLDER --epochs N" in advice
    assert "`discomkd continue '/my runs/a' --epochs N`" in train_longer_advice(history, {"rgb": 10}, "/my runs/a")
    assert train_longer_advice(history, {"rgb": 8, "depth": 2}) == ""
    # On 40 validation samples 4 points are two samples' worth: not more than the split can tell.
    assert gain_tolerance(40) == 0.05 and gain_tolerance(250) == 0.01 and gain_tolerance(0) == 0.01
    assert train_longer_advice(history, {"rgb": 10}, validation_samples={"rgb": 40}) == ""
    assert train_longer_advice(history, {"rgb": 10}, validation_samples={"rgb": 400}).startswith("Still improving")
    assert train_longer_advice([{"epoch": e, "val": {}} for e in range(1, 11)], {"rgb": 10}) == ""  # no validation


def test_a_finished_run_gives_the_advice_its_own_curves_call_for(trained_run):
    """The trainer applies the rule to the run's own validation curves and validation sizes (both in
    the run folder), and its reason and run.json carry the result."""
    history = runs.read_history(trained_run.run_dir)
    record = runs.read_run_record(trained_run.run_dir)
    sizes = record["data"]["validation_sizes"]
    assert set(sizes) == {"image", "audio"} and min(sizes.values()) > 0
    best = {n: m["best_epoch"] for n, m in trained_run.test_metrics.items()}
    advice = train_longer_advice(history, best, str(trained_run.run_dir), sizes)
    assert record["reason"] == trained_run.reason == " ".join(["Finished 10 epochs.", *([advice] if advice else [])])
    # On the tiny run's 15 validation samples one sample is 6.7 points: the bar is two samples' worth.
    assert gain_tolerance(sizes["audio"]) == 2 / sizes["audio"]


def test_the_advice_reaches_the_run_reason_record_and_log(tiny_demo, tmp_path, monkeypatch):
    from support import tiny_config
    from discomkd.training import loop
    from discomkd.training.trainer import train

    seen = {}

    def advice(history, best_epochs, run_folder, validation_samples):
        seen.update(epochs=len(history), best=best_epochs, folder=run_folder)
        assert set(validation_samples) == set(best_epochs) and min(validation_samples.values()) > 0
        return "Still improving at the end (test)."

    monkeypatch.setattr(loop, "train_longer_advice", advice)
    result = train(tiny_config(tiny_demo, epochs=2), run_dir=tmp_path / "run")
    assert result.status == "finished" and result.reason.endswith("Still improving at the end (test).")
    assert seen == {"epochs": 2, "best": {n: m["best_epoch"] for n, m in result.test_metrics.items()},
                    "folder": str(result.run_dir)}
    assert runs.read_run_record(result.run_dir)["reason"] == result.reason
    assert "Still improving at the end (test)." in (Path(result.run_dir) / runs.LOG_FILE).read_text(encoding="utf-8")
