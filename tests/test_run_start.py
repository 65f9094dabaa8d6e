"""A run's start: the folder claimed, the data read, training begun; whatever fails becomes the run's end."""

from __future__ import annotations

import pytest
import torch
from support import tiny_config

import discomkd.training.trainer as trainer
from discomkd.storage import runs
from discomkd.storage.run_lock import LOCK_FILE
from discomkd.training.events import DataProgress, RunEnded, StopToken
from discomkd.training.trainer import train


def test_a_stop_while_reading_leaves_no_trace_of_a_new_folder(tiny_demo, tmp_path):
    stop = StopToken()
    stop_at_first_file = lambda event: isinstance(event, DataProgress) and stop.request()  # noqa: E731
    result = train(tiny_config(tiny_demo), run_dir=tmp_path / "run", on_event=stop_at_first_file, stop=stop)
    assert (result.status, result.reason) == ("stopped", "Stopped while reading the data; nothing was trained.")
    assert not (tmp_path / "run").exists()


def test_a_failure_before_training_in_a_folder_it_found_is_recorded_there(tiny_demo, tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".DS_Store").write_bytes(b"")  # litter: the folder may be claimed, but it was not made by this training

    def broken_disk(*args):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(trainer, "load_dataset", broken_disk)
    result = train(tiny_config(tiny_demo), run_dir=out)
    assert result.status == "failed" and result.run_dir == "" and "Reading the data failed unexpectedly" in result.reason
    record = runs.read_run_record(out)
    assert (record["status"], record["reason"]) == ("failed", result.reason)
    assert f"failed: {result.reason}" in (out / runs.LOG_FILE).read_text()
    assert (out / ".DS_Store").exists() and not (out / LOCK_FILE).exists()


@pytest.mark.parametrize("failure, reason", [
    (RuntimeError("a bug"), "Training failed unexpectedly: RuntimeError: a bug. Details are in"),
    (torch.OutOfMemoryError("CUDA out of memory"), "Out of memory on CPU. Lower the batch size"),
])
def test_a_failure_during_training_ends_the_run_failed_and_says_so(tiny_demo, tmp_path, monkeypatch, failure, reason):
    def failing_loop(*args, **kwargs):
        raise failure

    monkeypatch.setattr(trainer, "train_loop", failing_loop)
    events = []
    result = train(tiny_config(tiny_demo), run_dir=tmp_path / "run", on_event=events.append)
    assert result.status == "failed" and result.reason.startswith(reason)
    assert [e for e in events if isinstance(e, RunEnded)] == [result]  # announced once, as returned
    assert runs.read_run_record(tmp_path / "run")["status"] == "failed"
    assert "Traceback" in (tmp_path / "run" / runs.LOG_FILE).read_text()  # the details are in the log
    assert not (tmp_path / "run" / LOCK_FILE).exists()
