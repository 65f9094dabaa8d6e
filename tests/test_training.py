"""Training end to end on real digits: beats chance, stops cleanly, continues, is deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from support import tiny_config
from discomkd.config import ModalitySource
from discomkd.model.bundle import load_bundle
from discomkd.storage import runs
from discomkd.training.events import BatchEnded, BestModelSaved, EpochEnded, RunEnded, RunStarted, StopToken
from discomkd.training.trainer import continue_run, train


def test_tiny_training_beats_chance_clearly(trained_run):
    # 5 classes: chance is 0.2.
    assert trained_run.test_metrics["image"]["accuracy"] > 0.6
    assert trained_run.test_metrics["audio"]["accuracy"] > 0.5
    for metrics in trained_run.test_metrics.values():
        assert np.asarray(metrics["confusion"]).sum() == metrics["n"]
        assert {row["class"] for row in metrics["per_class"]} == {str(d) for d in range(5)}


def test_run_folder_holds_record_history_log_and_embeddings(trained_run):
    run_dir = trained_run.run_dir
    record = runs.read_run_record(run_dir)
    assert record["status"] == "finished" and record["epochs_done"] == 10
    assert [h["epoch"] for h in runs.read_history(run_dir)] == list(range(1, 11))
    emb = runs.load_embeddings(run_dir)
    assert emb["inv_2d"].shape == emb["inf_2d"].shape == (emb["label"].shape[0], 2)
    assert set(emb["modality"].tolist()) == {0, 1}
    assert "finished" in (run_dir_path := __import__("pathlib").Path(run_dir) / runs.LOG_FILE).read_text()
    assert run_dir_path.exists()


def test_run_keeps_each_test_file_with_its_true_and_predicted_class(trained_run):
    predictions = runs.read_test_predictions(trained_run.run_dir)
    assert predictions.classes == [str(d) for d in range(5)]
    for modality, metrics in trained_run.test_metrics.items():
        files = predictions.by_modality[modality]
        assert len(files) == metrics["n"] == len({f.path for f in files})
        for t, row in enumerate(metrics["confusion"]):
            for p, count in enumerate(row):
                assert len(predictions.in_cell(modality, t, p)) == count
        for f in files:
            assert Path(f.path).parent.name == predictions.classes[f.true_index]
            assert abs(sum(f.probabilities) - 1) < 1e-3
            assert f.probabilities[f.predicted_index] == max(f.probabilities)


def test_normalisation_statistics_come_from_the_training_split(trained_run, tiny_demo):
    from discomkd.data.dataset import combine_modalities
    from discomkd.data.load import load_modality
    from discomkd.data.split import split_dataset

    record = runs.read_run_record(trained_run.run_dir)
    image = load_modality(tiny_demo["image"], "image")
    audio = load_modality(tiny_demo["audio"], "audio")
    split = split_dataset(combine_modalities([image, audio]), (0.7, 0.1, 0.2), seed=0)
    expected = float(image.x[split["image"].train].mean())
    assert record["specs"]["image"]["mean"][0] == np.float64(expected).item() or abs(record["specs"]["image"]["mean"][0] - expected) < 1e-6
    assert abs(float(image.x.mean()) - expected) > 1e-7  # the whole set would give another value


def test_events_arrive_in_order_with_progress_and_eta(tiny_demo, tmp_path):
    events = []
    result = train(tiny_config(tiny_demo, epochs=2), run_dir=tmp_path / "run", on_event=events.append)
    kinds = [type(e) for e in events]
    assert kinds.index(RunStarted) < kinds.index(BatchEnded) < kinds.index(EpochEnded)
    assert kinds[-1] is RunEnded and result.status == "finished"
    batches = [e for e in events if isinstance(e, BatchEnded)]
    assert set(batches[0].losses) == {"cl", "aux", "adv", "mod", "perp", "agree", "unlabelled", "total"}
    assert batches[-1].progress == 1.0 and batches[-1].eta_s == 0.0
    assert all(0 < b.progress <= 1 for b in batches)
    epoch_ends = [e for e in events if isinstance(e, EpochEnded)]
    assert set(epoch_ends[0].val_metrics["audio"]) == {"accuracy", "weighted_f1", "macro_f1", "loss"}
    assert any(isinstance(e, BestModelSaved) for e in events)


def test_stop_mid_epoch_keeps_the_best_model(tiny_demo, tmp_path):
    stop = StopToken()

    def stop_in_second_epoch(event):
        if isinstance(event, BatchEnded) and event.epoch == 2 and event.step == 1:
            stop.request()

    result = train(tiny_config(tiny_demo, epochs=5), run_dir=tmp_path / "run", on_event=stop_in_second_epoch, stop=stop)
    assert result.status == "stopped" and result.epochs_done == 1
    assert "best model so far was kept" in result.reason
    bundle = load_bundle(result.bundle_path)
    assert {m["best_epoch"] for m in bundle.metadata["modalities"].values()} == {1}
    assert set(bundle.test_metrics) == {"image", "audio"}
    assert runs.read_run_record(result.run_dir)["status"] == "stopped"


def test_stop_before_the_first_epoch_saves_no_model(tiny_demo, tmp_path):
    stop = StopToken()
    stop_now = lambda e: stop.request() if isinstance(e, RunStarted) else None  # noqa: E731
    result = train(tiny_config(tiny_demo), run_dir=tmp_path / "run", on_event=stop_now, stop=stop)
    assert result.status == "stopped" and result.bundle_path is None


def test_a_stopped_run_continues_for_more_epochs(tiny_demo, tmp_path):
    stop = StopToken()
    stop_in_second = lambda e: stop.request() if isinstance(e, BatchEnded) and e.epoch == 2 else None  # noqa: E731
    first = train(tiny_config(tiny_demo, epochs=4), run_dir=tmp_path / "run", on_event=stop_in_second, stop=stop)
    assert first.epochs_done == 1
    events = []
    second = continue_run(first.run_dir, extra_epochs=2, on_event=events.append)
    assert second.status == "finished" and second.epochs_done == 3
    assert [e.epoch for e in events if isinstance(e, EpochEnded)] == [2, 3]
    assert [h["epoch"] for h in runs.read_history(first.run_dir)] == [1, 2, 3]


def test_training_is_deterministic_on_cpu_for_a_seed(tiny_demo, tmp_path):
    losses = []
    for k in range(2):
        events = []
        train(tiny_config(tiny_demo, epochs=1), run_dir=tmp_path / f"run{k}", on_event=events.append)
        losses.append([e.losses for e in events if isinstance(e, BatchEnded)])
    assert losses[0] == losses[1]


def test_bad_folder_fails_with_a_message_and_leaves_no_run(tiny_demo, tmp_path):
    config = tiny_config(tiny_demo)
    config.modalities.append(ModalitySource("thermal", str(tmp_path / "missing")))
    result = train(config, run_dir=tmp_path / "run")
    assert result.status == "failed" and "does not exist" in result.reason
    assert not (tmp_path / "run").exists()


def test_a_three_modality_run_trains(tiny_demo, tmp_path):
    # A third modality made of .npy signals: per-class sinusoids of varying length.
    rng = np.random.default_rng(0)
    for digit in range(5):
        folder = tmp_path / "signal" / str(digit)
        folder.mkdir(parents=True)
        for i in range(12):
            t = np.linspace(0, 1, rng.integers(90, 110))
            np.save(folder / f"{i}.npy", np.stack([np.sin(2 * np.pi * (digit + 1) * t), rng.normal(size=t.size) * 0.1]))
    folders = dict(tiny_demo, signal=tmp_path / "signal")
    result = train(tiny_config(folders, epochs=2), run_dir=tmp_path / "run")
    assert result.status == "finished", result.reason
    bundle = load_bundle(result.bundle_path)
    assert bundle.metadata["modalities"]["signal"]["backbone"] == "cnn1d"
    assert json.loads(json.dumps(bundle.metadata))  # metadata is plain JSON
    assert torch.is_tensor(next(iter(bundle.weights["signal"].values())))


def test_new_runs_train_the_pool_first_compact_cnn_and_its_optimiser_is_fused(tiny_demo, tmp_path):
    events = []
    result = train(tiny_config(tiny_demo, epochs=1), run_dir=tmp_path / "run", on_event=events.append)
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.backbones == {"image": "compact-pool-first", "audio": "compact-pool-first"}
    bundle = load_bundle(result.bundle_path)
    assert {m["backbone"] for m in bundle.metadata["modalities"].values()} == {"compact-pool-first"}
    block = bundle.build_branch("image").invariant_encoder.features[0]
    assert [type(layer).__name__ for layer in block] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    state = torch.load(Path(result.run_dir) / runs.CHECKPOINT_FILE, weights_only=True)
    assert all(group["fused"] for group in state["optimizer"]["param_groups"])


def test_a_run_saved_with_the_batch_norm_first_compact_cnn_continues_with_it(tiny_demo, tmp_path, monkeypatch):
    # Runs and models saved before the pool-first form name "compact"; continuing such a run must rebuild
    # that architecture (its checkpoint's weights fit no other), and its model must still load.
    from discomkd.training import loop

    monkeypatch.setattr(loop, "resolve_backbone", lambda *args: "compact")
    first = train(tiny_config(tiny_demo, epochs=1), run_dir=tmp_path / "run")
    monkeypatch.undo()
    assert runs.read_run_record(first.run_dir)["backbones"] == {"image": "compact", "audio": "compact"}
    second = continue_run(first.run_dir, extra_epochs=1)
    assert second.status == "finished" and second.epochs_done == 2, second.reason
    bundle = load_bundle(second.bundle_path)
    block = bundle.build_branch("audio").specific_encoder.features[0]
    assert [type(layer).__name__ for layer in block] == ["Conv2d", "BatchNorm2d", "MaxPool2d", "ReLU"]
