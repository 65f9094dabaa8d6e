"""torchrun with two gloo processes on the CPU: gradients are averaged, parameters stay identical,
one run folder is written by rank 0 only, and its model predicts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from discomkd.inference.predict import Predictor, expand_paths
from discomkd.storage import runs

HERE = Path(__file__).resolve().parent


def _torchrun(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"  # two processes on a small machine: no oversubscription
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_ddp_gradient_is_the_mean_of_the_ranks_and_parameters_stay_identical(tmp_path):
    result = _torchrun([str(HERE / "ddp_gradient_check.py")], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert "DDP CHECK PASSED" in result.stdout


def test_torchrun_two_gloo_processes_train_one_run_folder_and_the_model_predicts(tiny_demo, tmp_path):
    run_dir = tmp_path / "run"
    result = _torchrun(["-m", "discomkd", "train", "--modality", f"image={tiny_demo['image']}",
                        "--modality", f"audio={tiny_demo['audio']}", "--out", str(run_dir), "--epochs", "2",
                        "--embed-dim", "8", "--batch-size", "16", "--device", "cpu"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    # Rank 0 alone reports: one start line, one line per epoch, one summary.
    assert result.stdout.count("Training on cpu") == 1
    assert result.stdout.count("epoch 2/2") == 1 and result.stdout.count("Finished 2 epochs.") == 1

    record = runs.read_run_record(run_dir)
    assert record["world_size"] == 2 and record["status"] == "finished" and record["epochs_done"] == 2
    assert [h["epoch"] for h in runs.read_history(run_dir)] == [1, 2]
    log = (run_dir / runs.LOG_FILE).read_text()
    assert log.count("start:") == 1 and log.count("epoch 2/2") == 1  # rank 1 wrote nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no second run folder
    assert not (Path(os.environ["DISCOMKD_DATA_DIR"]) / "runs").exists() or not any(
        (Path(os.environ["DISCOMKD_DATA_DIR"]) / "runs").iterdir())

    predictor = Predictor.from_path(run_dir / runs.BUNDLE_FILE)
    wav = expand_paths([tiny_demo["audio"] / "2"])[0]
    prediction = predictor.predict_file(wav)
    assert prediction.modality == "audio" and prediction.label in predictor.classes
    assert abs(sum(prediction.probabilities.values()) - 1) < 1e-5


def test_a_loss_that_turns_nan_on_one_process_stops_every_process_and_keeps_the_best_model(tiny_demo, tmp_path):
    run_dir = tmp_path / "run"
    result = _torchrun([str(HERE / "ddp_divergence_check.py"), str(tiny_demo["image"]), str(tiny_demo["audio"]),
                        str(run_dir)], tmp_path, timeout=240)
    assert result.returncode != 0
    # Rank 0 (whose own loss stayed finite) stopped at the same step and says why, not "connection closed".
    record = runs.read_run_record(run_dir)
    assert record["status"] == "failed" and record["epochs_done"] == 1, record.get("reason")
    assert record["reason"].startswith("The training diverged: the loss became NaN or infinite on another process "
                                       "at epoch 2, step 1.")
    assert "best model saved before that was kept" in record["reason"]
    assert "error: The training diverged: the loss became nan at epoch 2, step 1." in result.stderr  # rank 1's own
    assert Predictor.from_path(run_dir / runs.BUNDLE_FILE).bundle.metadata["modalities"]["image"]["best_epoch"] == 1
