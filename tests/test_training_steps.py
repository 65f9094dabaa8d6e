"""The training loop's steps on their own: prepare, one epoch, evaluate and select, write."""

from __future__ import annotations

import json

import torch
from support import tiny_config

from discomkd.storage import runs
from discomkd.training.events import BatchEnded, BestModelSaved, EpochEnded, StopToken
from discomkd.training.loop import (
    ActiveRun,
    RunClock,
    evaluate_and_select,
    prepare_session,
    train_one_epoch,
    write_epoch,
)
from discomkd.training.preparation import load_dataset


def _start(tiny_demo, run_dir, events=None, stop=None):
    config = tiny_config(tiny_demo, epochs=2)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = ActiveRun(config, run_dir, (events if events is not None else []).append, stop or StopToken())
    dataset = load_dataset(config, lambda event: None, run.stop)
    session = prepare_session(run, dataset, torch.device("cpu"))
    return run, session


def test_prepare_builds_the_session_from_the_config(tiny_demo, tmp_path):
    run, session = _start(tiny_demo, tmp_path / "run")
    assert session.names == ["image", "audio"] and session.start_epoch == 0 and session.target_epochs == 2
    assert all(b == {"best_epoch": 0, "val_weighted_f1": -1.0} for b in session.best.values())
    assert session.steps_per_epoch == -(-max(session.train_sizes.values()) // session.config.batch_size)
    assert not session.paired  # the tiny demo is unpaired


def test_one_epoch_reports_every_step_and_evaluation_keeps_only_improvements(tiny_demo, tmp_path):
    events = []
    run, session = _start(tiny_demo, tmp_path / "run", events)
    clock = RunClock(session.target_epochs * session.steps_per_epoch)
    trained = train_one_epoch(run, session, 1, clock)
    assert not trained.stopped and trained.steps == session.steps_per_epoch == clock.done_steps
    assert [e.step for e in events if isinstance(e, BatchEnded)] == list(range(1, session.steps_per_epoch + 1))
    assert set(trained.sums) == {"cl", "aux", "adv", "mod", "perp", "agree", "unlabelled", "total"}

    val_metrics, improved = evaluate_and_select(session, 1)
    assert improved == ["image", "audio"] and set(val_metrics) == {"image", "audio"}
    assert all(session.best[n]["best_epoch"] == 1 for n in improved) and set(session.best_states) == set(improved)
    # The same weights again: no modality beats its best, nothing is replaced.
    assert evaluate_and_select(session, 2)[1] == []
    assert all(b["best_epoch"] == 1 for b in session.best.values())


def test_a_stop_ends_the_epoch_before_its_next_step(tiny_demo, tmp_path):
    stop = StopToken()
    run, session = _start(tiny_demo, tmp_path / "run", stop=stop)
    before = {k: v.clone() for k, v in session.model.state_dict().items()}
    stop.request()
    trained = train_one_epoch(run, session, 1, RunClock(session.steps_per_epoch))
    assert trained.stopped and trained.steps == 0
    assert all(torch.equal(before[k], v) for k, v in session.model.state_dict().items())


def test_write_epoch_leaves_history_checkpoint_and_bundle_to_continue_from(tiny_demo, tmp_path):
    events = []
    run, session = _start(tiny_demo, tmp_path / "run", events)
    clock = RunClock(session.target_epochs * session.steps_per_epoch)
    trained = train_one_epoch(run, session, 1, clock)
    val_metrics, improved = evaluate_and_select(session, 1)
    write_epoch(run, session, 1, trained, val_metrics, improved, clock)

    history = [json.loads(line) for line in (run.run_dir / runs.HISTORY_FILE).read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1] and history[0]["val"] == val_metrics
    assert (run.run_dir / runs.BUNDLE_FILE).exists() and run.record["epochs_done"] == 1
    assert isinstance(events[-2], EpochEnded) and isinstance(events[-1], BestModelSaved)

    # Continuing from the checkpoint restores the model, the generator and the best scores.
    again = ActiveRun(session.config, run.run_dir, lambda event: None, StopToken())
    resumed = prepare_session(again, load_dataset(session.config, lambda event: None, StopToken()),
                              torch.device("cpu"), resume_from=run.run_dir, extra_epochs=1)
    assert resumed.start_epoch == 1 and resumed.target_epochs == 2 and resumed.best == session.best
    assert torch.equal(resumed.generator.get_state(), session.generator.get_state())
    assert all(torch.equal(session.model.state_dict()[k], v) for k, v in resumed.model.state_dict().items())


def test_a_bundle_saved_while_continuing_keeps_every_modality_calibrated(tiny_demo, tmp_path):
    from discomkd.model.bundle import load_bundle

    run, session = _start(tiny_demo, tmp_path / "run")
    clock = RunClock(session.target_epochs * session.steps_per_epoch)
    trained = train_one_epoch(run, session, 1, clock)
    write_epoch(run, session, 1, trained, *evaluate_and_select(session, 1), clock)
    before = load_bundle(run.run_dir / runs.BUNDLE_FILE)

    again = ActiveRun(session.config, run.run_dir, lambda event: None, StopToken())
    resumed = prepare_session(again, load_dataset(session.config, lambda event: None, StopToken()),
                              torch.device("cpu"), resume_from=run.run_dir, extra_epochs=1)
    clock = RunClock(resumed.steps_per_epoch)
    trained = train_one_epoch(again, resumed, 2, clock)
    latest = {k: v.clone() for k, v in resumed.model.state_dict().items()}
    resumed.best["image"]["val_weighted_f1"] = -1.0  # only the image improves in the continued epoch
    resumed.best["audio"]["val_weighted_f1"] = 2.0
    val_metrics, improved = evaluate_and_select(resumed, 2)
    assert improved == ["image"]
    write_epoch(again, resumed, 2, trained, val_metrics, improved, clock)

    # The audio model did not change, and neither does its calibration (not temperature 1 after a kill now).
    after = load_bundle(run.run_dir / runs.BUNDLE_FILE)
    assert after.calibration("audio")["fitted_on"] == "validation"
    assert abs(after.temperature("audio") - before.temperature("audio")) < 1e-6
    # Calibrating on the best weights left the training's own weights as they were.
    assert all(torch.equal(latest[k], v) for k, v in resumed.model.state_dict().items())
