"""Nothing lost, no traceback: run-folder safety, hostile files, forged bundles, many-channel signals.

Every input is made here at test time and is tiny (12 px images, 8 files per class), so a
training takes about a second.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hostile import (
    NON_UTF8_NAME,
    make_image_modality,
    make_signal_modality,
    mutants,
    write_png_header_only,
    write_wav,
)
from discomkd.cli import main
from discomkd.config import ModalitySource, TrainingConfig
from discomkd.data.load import load_modality
from discomkd.errors import BundleError, DataError, RunFolderError, StorageError
from discomkd.inference.predict import Prediction, PredictionFailure, Predictor
from discomkd.model.bundle import _digest, load_bundle
from discomkd.model.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE
from discomkd.storage import run_lock, runs
from discomkd.storage.atomic import atomic_write
from discomkd.training.trainer import continue_run, train

REPO = Path(__file__).resolve().parents[1]


def _config(folders: dict[str, Path], **changes) -> TrainingConfig:
    settings = dict(embed_dim=8, batch_size=8, epochs=1, learning_rate=3e-3, device="cpu", seed=0)
    settings.update(changes)
    modalities = [ModalitySource(n, str(f), o) for n, (f, o) in
                  ((n, f if isinstance(f, tuple) else (f, {})) for n, f in folders.items())]
    return TrainingConfig(modalities=modalities, **settings)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("small")
    return {"image": make_image_modality(root / "image"),
            "motion": make_signal_modality(root / "motion", 6, (40, 48, 56), seed=1)}


@pytest.fixture(scope="module")
def small_bundle(small_data, tmp_path_factory) -> Path:
    result = train(_config(small_data, epochs=2), run_dir=tmp_path_factory.mktemp("run") / "run")
    assert result.status == "finished", result.reason
    return Path(result.bundle_path)


# ----- run folders: never overwritten, locked while written, recovered after a kill -------------

def test_a_folder_holding_a_run_is_refused_and_the_run_is_kept(small_data, tmp_path):
    out = tmp_path / "run"
    assert train(_config(small_data), run_dir=out).status == "finished"
    before = {name: (out / name).read_bytes() for name in runs.RUN_FILES}
    second = train(_config(small_data, seed=5), run_dir=out)
    assert second.status == "failed"
    assert "already holds a run" in second.reason and "discomkd continue" in second.reason
    assert {name: (out / name).read_bytes() for name in runs.RUN_FILES} == before
    assert not (out / run_lock.LOCK_FILE).exists()


def test_a_second_training_into_a_locked_folder_is_refused(small_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    lock = run_lock.RunLock(out).acquire()  # as if a training in this process were writing there
    try:
        result = train(_config(small_data), run_dir=out)
        assert result.status == "failed" and "Another training is writing" in result.reason
        assert f"process {os.getpid()}" in result.reason
        (out / runs.RUN_FILE).write_text("{}")
        with pytest.raises(RunFolderError, match="Stop it before deleting"):
            runs.delete_run(out)
    finally:
        lock.release()
    (out / runs.RUN_FILE).unlink()
    assert train(_config(small_data), run_dir=out).status == "finished"  # released: usable again


def test_two_cli_trainings_into_one_folder_one_is_refused(small_data, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "discomkd", "train", "--modality", f"image={small_data['image']}",
            "--modality", f"motion={small_data['motion']}", "--out", str(out), "--epochs", "3",
            "--embed-dim", "8", "--batch-size", "8", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outputs
    refused = next(err for (_, err), p in zip(outputs, procs) if p.returncode == 1)
    assert "Traceback" not in refused
    assert "Another training is writing" in refused or "already holds a run" in refused
    assert runs.read_run_record(out)["status"] == "finished"
    assert "start: epochs 1..3" in (out / runs.LOG_FILE).read_text()
    assert (out / runs.LOG_FILE).read_text().count("start:") == 1  # the refused one wrote nothing there


def test_stale_lock_of_a_killed_training_is_taken_over(small_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / run_lock.LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    assert train(_config(small_data), run_dir=out).status == "finished"


def test_killed_run_shows_as_interrupted_temp_files_go_and_it_continues(small_data, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "discomkd", "train", "--modality", f"image={small_data['image']}",
            "--modality", f"motion={small_data['motion']}", "--out", str(out), "--epochs", "500",
            "--embed-dim", "8", "--batch-size", "8", "--device", "cpu"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.monotonic() + 120
    while len(runs.read_history(out)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.kill()  # kill -9: no clean-up code runs
    proc.wait()
    assert runs.read_run_record(out)["status"] == "running"  # what the killed process left
    (out / ".checkpoint.pt-abc123.tmp").write_bytes(b"half a checkpoint")  # a write the kill interrupted

    info = {i.run_dir: i for i in runs.list_runs(tmp_path)}[out]
    assert info.status == "interrupted"
    assert "interrupted" in runs.read_run_record(out)["reason"]
    assert not list(out.glob(".*.tmp"))
    load_bundle(out / runs.BUNDLE_FILE)  # the model of the epochs before the kill is whole
    saved_epoch = int(torch.load(out / runs.CHECKPOINT_FILE, weights_only=True)["epoch"])
    assert saved_epoch in (info.epochs_done, info.epochs_done + 1)  # the kill may fall between the two writes
    result = continue_run(out, 1)
    assert result.status == "finished", result.reason
    assert result.epochs_done == saved_epoch + 1


def test_kills_at_random_moments_leave_only_whole_files(small_data, tmp_path):
    import random

    moments = random.Random(3)
    for k in range(3):
        out = tmp_path / f"run{k}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "discomkd", "train", "--modality", f"image={small_data['image']}",
             "--modality", f"motion={small_data['motion']}", "--out", str(out), "--epochs", "500",
             "--embed-dim", "8", "--batch-size", "8", "--device", "cpu"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
        deadline = time.monotonic() + 120
        while not (out / runs.RUN_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(moments.uniform(0.0, 1.5))  # reading data, mid-epoch, or mid-write
        proc.kill()
        proc.wait()
        info = runs.run_info(out)
        assert info.status == "interrupted", info
        history = runs.read_history(out)
        assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
        if (out / runs.BUNDLE_FILE).exists():
            load_bundle(out / runs.BUNDLE_FILE)
        if (out / runs.CHECKPOINT_FILE).exists():
            torch.load(out / runs.CHECKPOINT_FILE, weights_only=True)
        assert not list(out.glob(".*.tmp"))


def test_killed_before_the_first_checkpoint_says_what_is_left(small_data, tmp_path):
    out = tmp_path / "run"
    assert train(_config(small_data), run_dir=out).status == "finished"
    (out / runs.CHECKPOINT_FILE).unlink()
    result = continue_run(out, 1)
    assert result.status == "failed"
    assert "no checkpoint" in result.reason and "model file" in result.reason and "new training" in result.reason


def test_a_damaged_run_record_cannot_be_continued_and_says_so(small_data, tmp_path):
    out = tmp_path / "run"
    assert train(_config(small_data), run_dir=out).status == "finished"
    record = runs.read_run_record(out)
    record["config"]["modalities"] = [{"name": "image"}]  # an edit that lost the folder
    runs.write_run_record(out, record)
    result = continue_run(out, 1)
    assert result.status == "failed" and "is damaged" in result.reason and "Start a new training" in result.reason


@pytest.mark.parametrize("edit, problem", [
    (lambda r: r.update(config=None), "its 'config' is null, not an object of settings"),
    (lambda r: r.pop("config"), "it has no 'config' (the training settings)"),
    (lambda r: r["config"].update(modalities=None), "its 'modalities' is null, not a list"),
    (lambda r: r["config"]["modalities"][1].pop("folder"), "the modality 'motion' has no 'folder'"),
    (lambda r: r["config"]["modalities"][0].update(folder=7), "the 'folder' of the modality 'image' is a number, not text"),
    (lambda r: r["config"]["modalities"][0].update(overrides=[]), "the 'overrides' of the modality 'image' is a list"),
    (lambda r: r["config"].update(epochs="ten"), "its setting 'epochs' is text, not a number"),
    (lambda r: r["config"].update(weights={"cl": None}), "the loss weight 'cl' is null, not a number"),
    (lambda r: r["config"].update(split=0.7), "its 'split' is a number, not a list of three numbers"),
])
def test_an_odd_run_record_says_which_field_is_wrong_not_python_text(edit, problem, small_bundle, tmp_path, capsys):
    """Continuing said e.g. "damaged (TypeError: 'NoneType' object is not subscriptable)"."""
    import shutil

    run_dir = shutil.copytree(small_bundle.parent, tmp_path / "run")
    record = runs.read_run_record(run_dir)
    edit(record)
    runs.write_run_record(run_dir, record)
    result = continue_run(run_dir, 1)
    assert result.status == "failed" and f"is damaged ({problem}" in result.reason, result.reason
    assert "Start a new training" in result.reason
    assert not any(word in result.reason for word in ("TypeError", "KeyError", "NoneType", "subscriptable"))
    assert main(["continue", str(run_dir), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err


def test_out_that_is_a_file_gives_a_message(small_data, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    result = train(_config(small_data), run_dir=target)
    assert result.status == "failed" and "is a file, not a folder" in result.reason
    assert target.read_text() == "mine"


@pytest.mark.parametrize("free_bytes", [None, 0.0])  # 0: a read-only medium or share reports no free space
def test_unwritable_out_gives_a_message(free_bytes, small_data, tmp_path, monkeypatch):
    import errno

    import discomkd.storage.atomic as atomic

    if free_bytes is not None:
        monkeypatch.setattr(atomic, "_free_bytes", lambda path: free_bytes)
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).startswith(str(tmp_path / "ro")) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", read_only)
    result = train(_config(small_data), run_dir=tmp_path / "ro")
    assert result.status == "failed"
    assert "cannot be written" in result.reason and "Choose a folder you can write to" in result.reason
    assert "full" not in result.reason


def test_full_disk_is_reported_as_a_full_disk(tmp_path, monkeypatch):
    import discomkd.storage.atomic as atomic

    monkeypatch.setattr(atomic, "_free_bytes", lambda path: 2 * 2**20)
    (tmp_path / "model.bin").write_bytes(b"previous")

    def torch_write(fh):  # what torch.save raises when the disk fills up under it
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 40704 vs 598")

    with pytest.raises(StorageError, match="is full .2.0 MB left.*Free some space"):
        atomic_write(tmp_path / "model.bin", torch_write)
    assert (tmp_path / "model.bin").read_bytes() == b"previous"
    assert not list(tmp_path.glob(".*.tmp"))


def test_full_disk_during_training_ends_with_a_message(small_data, tmp_path, monkeypatch):
    import discomkd.storage.atomic as atomic
    import discomkd.training.trainer as trainer

    def full(obj, fh):
        raise RuntimeError("unexpected pos 123 vs 456")

    monkeypatch.setattr(atomic, "_free_bytes", lambda path: 0.0)
    monkeypatch.setattr(trainer.torch, "save", full)
    result = train(_config(small_data), run_dir=tmp_path / "run")
    assert result.status == "failed" and "is full" in result.reason and "Free some space" in result.reason


# ----- hostile data files ------------------------------------------------------------------------

def test_damaged_cache_is_detected_removed_and_rebuilt(small_data, tmp_path, monkeypatch):
    monkeypatch.setenv("DISCOMKD_CACHE_DIR", str(tmp_path / "cache"))
    first = load_modality(small_data["image"], "image")
    [cache] = (tmp_path / "cache" / "decoded").glob("*.npz")
    data = cache.read_bytes()
    for damage in (data[: len(data) // 2], data[:600] + bytes([data[600] ^ 0xFF]) + data[601:]):
        cache.write_bytes(damage)
        again = load_modality(small_data["image"], "image")
        assert not again.from_cache and "damaged cache" in again.cache_note
        np.testing.assert_array_equal(again.x, first.x)
        assert load_modality(small_data["image"], "image").from_cache  # rebuilt


def test_huge_png_non_utf8_name_and_odd_files_are_skipped_with_reasons(tmp_path):
    folder = make_image_modality(tmp_path / "image")
    write_png_header_only(folder / "a" / "huge.png", 20000, 20000)
    write_png_header_only(folder / "b" / "wide.png", 12000, 9000)
    (folder / "b" / NON_UTF8_NAME).write_bytes(b"not a png")
    good_copy = folder / "c" / os.fsdecode(b"\xff\xfegood.png")
    good_copy.write_bytes((folder / "c" / "000.png").read_bytes())
    np.save(folder / "c" / "cube.npy", np.zeros((2, 3, 4, 5), np.float32))
    data = load_modality(folder, "image")
    reasons = {s.path: s.reason for s in data.skipped}
    assert "too large to decode safely (400 megapixels" in reasons["a/huge.png"]
    assert "too large" in reasons["b/wide.png"]
    assert "unreadable image" in reasons[f"b/{NON_UTF8_NAME}"]
    assert "4 dimensions" in reasons["c/cube.npy"]
    assert f"c/{good_copy.name}" in data.files  # a non-UTF-8 name is no reason to skip a good file


def test_damaged_files_of_every_type_are_skipped_or_read_never_a_crash(tmp_path):
    import tifffile
    from PIL import Image

    from discomkd.data.decoding import read_raw
    from discomkd.data.preview import thumbnail

    originals = tmp_path / "originals"
    originals.mkdir()
    Image.fromarray(np.arange(144, dtype=np.uint8).reshape(12, 12)).save(originals / "x.png")
    Image.fromarray(np.arange(144, dtype=np.uint8).reshape(12, 12)).save(originals / "x.jpg")
    tifffile.imwrite(originals / "x.tif", np.arange(13 * 8 * 8, dtype=np.uint16).reshape(13, 8, 8))
    np.save(originals / "x.npy", np.ones((6, 50), np.float32))
    write_wav(originals / "x.wav")
    outcomes = {"read": 0, "skipped": 0}
    for original in sorted(originals.iterdir()):
        for k, data in enumerate(mutants(original.read_bytes(), 40, seed=len(original.suffix))):
            path = tmp_path / f"m{k}{original.suffix}"
            path.write_bytes(data)
            try:
                kind, array = read_raw(path)
                thumbnail(path)
            except DataError as exc:
                assert str(exc), path  # a reason for the list of skipped files
                outcomes["skipped"] += 1
            else:
                assert np.all(np.isfinite(array)) and array.ndim in (2, 3)
                outcomes["read"] += 1
            path.unlink()
    assert outcomes["skipped"] > 50 and outcomes["read"] > 10, outcomes  # measured: 134 skipped, 66 read


def test_cli_train_and_evaluate_print_skipped_files_and_missing_classes(small_data, tmp_path):
    image = make_image_modality(tmp_path / "image", classes=("a", "b", "c"))
    motion = make_signal_modality(tmp_path / "motion", 6, (40, 48), classes=("a", "b"))
    write_png_header_only(image / "a" / "huge.png", 20000, 20000)
    (image / "b" / NON_UTF8_NAME).write_bytes(b"broken")
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONIOENCODING="utf-8")
    common = ["--embed-dim", "8", "--batch-size", "8", "--device", "cpu"]
    proc = subprocess.run([sys.executable, "-m", "discomkd", "train", "--modality", f"image.v2={image}",
                           "--modality", f"motion={motion}", "--out", str(out), "--epochs", "1", *common],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "image.v2: skipped 2 file(s):" in proc.stdout
    assert "a/huge.png: the image is too large to decode safely" in proc.stdout
    assert "b/caf\\xe9.png: unreadable image" in proc.stdout  # escaped, not a UnicodeEncodeError
    assert "motion has no files for class(es): c" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "discomkd", "evaluate", str(out / runs.BUNDLE_FILE),
                           "--modality", f"image.v2={image}"], capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "skipped 2 file(s)" in proc.stdout and "caf\\xe9.png" in proc.stdout


def test_a_modality_named_like_a_dotted_folder_trains_and_predicts(small_data, tmp_path):
    config = _config({"rgb.v2": small_data["image"], "training": small_data["motion"]})
    result = train(config, run_dir=tmp_path / "run")
    assert result.status == "finished", result.reason
    assert [i.modalities for i in runs.list_runs(tmp_path)] == [["rgb.v2", "training"]]
    predictor = Predictor.from_path(result.bundle_path)
    png = sorted((small_data["image"] / "a").iterdir())[0]
    assert predictor.predict_file(png).modality == "rgb.v2"
    assert continue_run(tmp_path / "run", 1).status == "finished"  # the checkpoint's keys load back


def test_compare_accepts_a_dotted_modality_name(small_data, tmp_path, capsys):
    code = main(["compare", "--modality", f"rgb.v2={small_data['image']}", "--modality", f"motion={small_data['motion']}",
                 "--seeds", "1", "--epochs", "1", "--embed-dim", "8", "--batch-size", "8", "--device", "cpu",
                 "--out", str(tmp_path / "cmp")])
    assert code == 0, capsys.readouterr().err
    assert "| rgb.v2 |" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_one_huge_file_among_good_ones_keeps_every_good_prediction(small_bundle, small_data, tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    goods = [p for cls in ("a", "b", "c") for p in sorted((small_data["image"] / cls).iterdir())]
    for i in range(25):
        (folder / f"{i:02d}.png").write_bytes(goods[i % len(goods)].read_bytes())
    write_png_header_only(folder / "huge.png", 20000, 20000)
    results = Predictor.from_path(small_bundle).predict_files([folder])
    assert len(results) == 26 and sum(isinstance(r, Prediction) for r in results) == 25
    failure = next(r for r in results if isinstance(r, PredictionFailure))
    assert failure.path.endswith("huge.png") and "'huge.png'" in failure.message and "too large" in failure.message


def test_unexpected_decoder_error_is_one_failure_not_a_lost_batch(small_bundle, small_data, monkeypatch):
    import discomkd.inference.predict as predict

    real = predict.read_raw

    def flaky(path, *args, **kwargs):
        if Path(path).name == "001.png":
            raise ZeroDivisionError("decoder bug")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(predict, "read_raw", flaky)
    files = sorted((small_data["image"] / "a").iterdir())[:3]
    results = Predictor.from_path(small_bundle).predict_files(files)
    assert [type(r).__name__ for r in results] == ["Prediction", "PredictionFailure", "Prediction"]
    assert "001.png" in results[1].message and "ZeroDivisionError" in results[1].message


# ----- forged bundles ----------------------------------------------------------------------------

def _forge(bundle_path: Path, out: Path, edit) -> Path:
    """Edit a bundle's metadata and recompute its digest, as someone who read our source could."""
    payload = torch.load(bundle_path, weights_only=True)
    metadata = json.loads(payload["metadata"])
    edit(metadata)
    payload["metadata"] = json.dumps(metadata)
    payload["digest"] = _digest(payload["metadata"], payload["weights"])
    torch.save(payload, out)
    return out


@pytest.mark.parametrize("edit, message", [
    (lambda md: md.update(classes=5), "'classes' must be a list"),
    (lambda md: md.pop("embed_dim"), "'embed_dim' must be a whole number"),
    (lambda md: md["modalities"]["image"].update(backbone="vgg19"), "unknown backbone 'vgg19'"),
    (lambda md: md["modalities"]["image"]["spec"].update(size=[100000, 100000]), "invalid size"),
    (lambda md: md["modalities"]["motion"]["spec"].update(length=10**9), "invalid length"),
    (lambda md: md["modalities"]["image"]["spec"].update(kind="video"), "unknown kind 'video'"),
    (lambda md: md["modalities"]["image"]["spec"].update(channels=3), "has 3 channels but reads 1"),
    (lambda md: md["modalities"]["image"]["spec"].update(colour="red"), "unknown settings"),
    (lambda md: md["test_metrics"]["image"].update(accuracy="high"), "test accuracy of 'image' is not a number"),
    (lambda md: md["modalities"].pop("motion"), "modalities and the stored weights do not match"),
])
def test_forged_metadata_with_a_recomputed_digest_is_refused_with_a_reason(small_bundle, tmp_path, edit, message):
    forged = _forge(small_bundle, tmp_path / "forged.discomkd", edit)
    with pytest.raises(BundleError, match=message) as caught:
        load_bundle(forged)
    assert "forged.discomkd" in str(caught.value) and "Use the model file from the training run" in str(caught.value)
    assert main(["info", str(forged)]) == 1


def test_a_forged_calibration_temperature_is_refused_as_damaged_calibration_with_how_to_refit(small_bundle, small_data,
                                                                                             tmp_path, capsys):
    """Only T > 0 was checked: T = 1e-30 gave NaN probabilities, blamed on "values far outside the training data"."""
    import shutil

    run_dir = shutil.copytree(small_bundle.parent, tmp_path / "run")
    bundle = run_dir / runs.BUNDLE_FILE
    _forge(small_bundle, bundle, lambda md: md["modalities"]["image"]["calibration"].update(temperature=1e-30))
    with pytest.raises(BundleError, match=r"damaged calibration: the temperature of 'image' is 1e-30, outside the "
                                          r"0.05 to 20 .*discomkd continue RUN_DIR --epochs 0"):
        load_bundle(bundle)
    assert main(["predict", str(bundle), str(sorted((small_data["image"] / "a").glob("*.png"))[0])]) == 1
    err = capsys.readouterr().err
    assert "damaged calibration" in err and "far outside" not in err and "Traceback" not in err
    assert continue_run(run_dir, 0).status == "finished"  # the advice works: the calibration is fitted again
    assert MIN_TEMPERATURE <= load_bundle(bundle).temperature("image") <= MAX_TEMPERATURE
    # the bounds themselves, and a model from before calibration (no calibration at all), still load
    for edit in (lambda md: md["modalities"]["image"]["calibration"].update(temperature=MAX_TEMPERATURE),
                 lambda md: md["modalities"]["motion"]["calibration"].update(temperature=MIN_TEMPERATURE),
                 lambda md: [info.pop("calibration") for info in md["modalities"].values()]):
        load_bundle(_forge(small_bundle, tmp_path / "ok.discomkd", edit))
    assert load_bundle(tmp_path / "ok.discomkd").temperature("image") == 1.0


def test_damaged_bundles_are_refused_or_unchanged_never_a_crash(small_bundle, tmp_path):
    original = load_bundle(small_bundle)
    refused = 0
    for k, data in enumerate(mutants(small_bundle.read_bytes(), 60, seed=7)):
        path = tmp_path / f"m{k}.discomkd"
        path.write_bytes(data)
        try:
            bundle = load_bundle(path)
        except BundleError as exc:
            assert f"'m{k}.discomkd'" in str(exc)
            refused += 1
        else:  # the damage hit bytes outside the digest (zip padding, timestamps): the model is intact
            assert bundle.metadata == original.metadata
            assert all(torch.equal(bundle.weights[m][key], t) for m, w in original.weights.items() for key, t in w.items())
    assert refused >= 40  # measured on 300 mutants: 264 refused, 36 intact


def test_zip_bomb_bundle_is_refused_before_anything_is_expanded(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.discomkd"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("archive/data.pkl", b"\0" * 50_000_000)  # 50 kB on disk, 50 MB expanded
        z.writestr("archive/version", b"3\n")
    assert bomb.stat().st_size < 1_000_000

    def never(*args, **kwargs):
        raise AssertionError("the archive was opened for loading: the check must refuse it from its directory")

    # Quick because nothing is decompressed: the refusal comes from the zip directory alone.
    monkeypatch.setattr(torch, "load", never)
    monkeypatch.setattr(zipfile.ZipFile, "read", never)
    with pytest.raises(BundleError, match="compressed entries"):
        load_bundle(bomb)


def test_real_bundles_pass_the_checks(small_bundle):
    bundle = load_bundle(small_bundle)
    assert bundle.modality_names == ["image", "motion"]
    with zipfile.ZipFile(small_bundle) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}


# ----- many-channel signals ----------------------------------------------------------------------

def test_many_channel_signals_of_varying_length_are_signals_and_train_with_the_1d_cnn(small_data, tmp_path):
    mocap = make_signal_modality(tmp_path / "mocap", 60, (90, 100, 110, 120, 130), per_class=16, seed=2)
    data = load_modality(mocap, "mocap")
    assert data.spec.kind == "signal" and data.kind_guess == "signal"
    assert data.spec.channels == 60 and data.spec.length == 110 and data.x.shape == (48, 60, 110)
    assert data.kind_options == ("image", "signal") and not data.skipped
    result = train(_config({"image": small_data["image"], "mocap": mocap}, epochs=6), run_dir=tmp_path / "run")
    assert result.status == "finished", result.reason
    record = runs.read_run_record(tmp_path / "run")
    assert record["backbones"]["mocap"] == "cnn1d"
    assert result.test_metrics["mocap"]["accuracy"] > 0.5  # 3 classes: chance is 1/3
    predictor = Predictor.from_path(result.bundle_path)
    sample = sorted((mocap / "b").iterdir())[0]
    assert predictor.predict_file(sample).modality == "mocap"


def test_kind_overrides_a_2d_array_both_ways(tmp_path):
    fixed = make_signal_modality(tmp_path / "eeg", 64, (100,))  # fixed size: looks like a 64x100 image
    assert load_modality(fixed, "eeg").spec.kind == "image"
    as_signal = load_modality(fixed, "eeg", {"kind": "signal"})
    assert as_signal.spec.kind == "signal" and as_signal.x.shape == (24, 64, 100) and not as_signal.skipped
    assert as_signal.kind_guess == "image"
    imu = make_signal_modality(tmp_path / "imu", 6, (90, 100))
    assert load_modality(imu, "imu").spec.kind == "signal"
    as_image = load_modality(imu, "imu", {"kind": "image"})
    assert as_image.spec.kind == "image" and as_image.x.shape[1] == 1


def test_a_kind_that_does_not_fit_the_files_is_a_clear_error(small_data):
    with pytest.raises(DataError, match="cannot be read as signal: its files can only be image data"):
        load_modality(small_data["image"], "image", {"kind": "signal"})
    with pytest.raises(SystemExit):
        main(["train", "--modality", f"a={small_data['image']}:kind=video"])


def test_cli_kind_option_trains_a_fixed_size_signal(small_data, tmp_path, capsys):
    eeg = make_signal_modality(tmp_path / "eeg", 64, (100,), seed=3)
    code = main(["train", "--modality", f"image={small_data['image']}", "--modality", f"eeg={eeg}:kind=signal",
                 "--out", str(tmp_path / "run"), "--epochs", "1", "--embed-dim", "8", "--batch-size", "8",
                 "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert "eeg cnn1d" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "finished, 1 of 1 epochs" in out and "eeg: signal, 64 channels, length 100" in out


# ----- a training that diverges: stopped with a message, never saved as "best" ---------------------

def test_a_diverging_training_stops_says_why_and_saves_no_non_finite_model(small_data, tmp_path):
    out = tmp_path / "run"
    result = train(_config(small_data, epochs=2, learning_rate=1e6), run_dir=out)
    assert result.status == "failed"
    assert "diverged" in result.reason and "Lower the learning rate (it is 1e+06; try the default, 0.001, or less)" in result.reason
    assert "SVD" not in result.reason and "No model was saved." in result.reason
    assert not (out / runs.BUNDLE_FILE).exists()  # epoch 1's weights were already infinite: nothing is "best"
    assert runs.read_run_record(out)["status"] == "failed"
    assert not (out / run_lock.LOCK_FILE).exists()


def test_weights_that_turn_non_finite_keep_the_last_finite_best(small_data, tmp_path, monkeypatch):
    import discomkd.training.loop as loop

    real_step = loop._training_step

    def step_that_breaks_epoch_2(session, *args):
        losses = real_step(session, *args)
        epoch, step = args[-2], args[-1]
        if epoch == 2 and step == session.steps_per_epoch:  # the epoch's last update leaves NaN weights
            with torch.no_grad():
                next(session.model.parameters()).fill_(float("nan"))
        return losses

    monkeypatch.setattr(loop, "_training_step", step_that_breaks_epoch_2)
    out = tmp_path / "run"
    result = train(_config(small_data, epochs=3), run_dir=out)
    assert result.status == "failed" and "weights became NaN or infinite at epoch 2" in result.reason
    assert "best model saved before that was kept (image epoch 1, motion epoch 1)" in result.reason
    bundle = load_bundle(out / runs.BUNDLE_FILE)  # epoch 1's model, whole and finite
    assert {info["best_epoch"] for info in bundle.metadata["modalities"].values()} == {1}
    assert runs.read_run_record(out)["epochs_done"] == 1


def test_a_bundle_with_non_finite_weights_is_refused_at_load(small_bundle, tmp_path, capsys):
    payload = torch.load(small_bundle, weights_only=True)
    key = next(k for k, t in payload["weights"]["motion"].items() if t.is_floating_point())
    payload["weights"]["motion"][key] = torch.full_like(payload["weights"]["motion"][key], float("inf"))
    payload["digest"] = _digest(payload["metadata"], payload["weights"])  # as a diverged training wrote it
    torch.save(payload, tmp_path / "nan.discomkd")
    with pytest.raises(BundleError, match=r"not finite numbers .NaN or infinite. in 'motion'.*diverged.*lower learning rate"):
        load_bundle(tmp_path / "nan.discomkd")
    assert main(["info", str(tmp_path / "nan.discomkd")]) == 1
    assert "diverged" in capsys.readouterr().err


# ----- look-alike and hidden class folders -------------------------------------------------------

def test_class_folders_differing_in_unicode_form_or_white_space_are_one_class_with_a_notice(tmp_path):
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    folder = make_image_modality(tmp_path / "image", classes=(nfc, nfd, "dog", "dog "))
    data = load_modality(folder, "image")
    assert data.classes == [nfc, "dog"] and data.class_counts == {nfc: 16, "dog": 16}
    notices = " ".join(data.notices)
    assert "'cafe\\u0301' and 'caf\\xe9'" in notices and "'dog' and 'dog '" in notices and "one class" in notices
    # across modalities too: a folder copied from macOS (NFD) matches the one typed on Linux (NFC)
    other = make_signal_modality(tmp_path / "motion", 6, (40, 48), classes=(nfd, "dog"))
    from discomkd.data.dataset import combine_modalities

    dataset = combine_modalities([data, load_modality(other, "motion")])
    assert dataset.classes == [nfc, "dog"] and dataset.report.missing == {"image": [], "motion": []}


def test_class_folders_differing_only_in_case_are_refused_with_both_names_shown(tmp_path):
    folder = make_image_modality(tmp_path / "image", classes=("Cat", "cat", "dog"))
    with pytest.raises(DataError, match=r"'Cat' and 'cat' .*differ only in upper and lower case.*Rename them"):
        load_modality(folder, "image")
    image = make_image_modality(tmp_path / "image2", classes=("Cat", "dog"))
    motion = make_signal_modality(tmp_path / "motion", 6, (40, 48), classes=("cat", "dog"))
    from discomkd.data.dataset import combine_modalities

    with pytest.raises(DataError, match=r"'Cat' and 'cat' in the modalities \(image, motion\)"):
        combine_modalities([load_modality(image, "image"), load_modality(motion, "motion")])


def test_hidden_and_unreadable_entries_are_listed_as_skipped_never_left_out(tmp_path, monkeypatch):
    folder = make_image_modality(tmp_path / "image")
    make_image_modality(folder / ".secret", classes=("x",), per_class=2)  # a class folder hidden by its dot
    (folder / ".secret2").mkdir()
    (folder / "b" / "sub").mkdir()
    (folder / "b" / "sub" / "deep.png").write_bytes((folder / "b" / "000.png").read_bytes())
    (folder / "c" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    os.mkfifo(folder / "c" / "pipe.png")
    real_scandir, real_stat = os.scandir, Path.stat

    def scandir(path="."):
        if str(path).endswith("sub"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def stat(self, *args, **kwargs):
        if self.name == "003.png":
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(Path, "stat", stat)
    data = load_modality(folder, "image", use_cache=False)
    reasons = {s.path: s.reason for s in data.skipped}
    assert "hidden folder" in reasons[".secret/"] and "rename it without the '.'" in reasons[".secret/"]
    assert ".secret2/" in reasons
    assert "cannot read the folder (permission denied)" in reasons["b/sub/"]
    assert "permission denied" in reasons["a/003.png"] and "a/003.png" not in data.files
    assert "link to nothing" in reasons["c/dangling.png"]
    assert "not a regular file" in reasons["c/pipe.png"]
    assert data.classes == ["a", "b", "c"] and len(data.files) == 21


def test_an_unreadable_or_vanishing_file_is_skipped_and_the_training_finishes(small_data, tmp_path, monkeypatch):
    import shutil

    import discomkd.data.load as load

    image = tmp_path / "image"
    shutil.copytree(small_data["image"], image)
    victim = image / "b" / "001.png"
    real_listing, real_stat = load.list_modality_folder, Path.stat

    def listing_then_vanish(folder):  # the file goes between the listing and its reading
        listing = real_listing(folder)
        if Path(folder) == image.resolve():
            victim.unlink(missing_ok=True)
        return listing

    def stat(self, *args, **kwargs):
        if self.name == "002.png" and self.parent.name == "c":
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(load, "list_modality_folder", listing_then_vanish)
    monkeypatch.setattr(Path, "stat", stat)
    out = tmp_path / "run"
    result = train(_config({"image": image, "motion": small_data["motion"]}), run_dir=out)
    assert result.status == "finished", result.reason
    skipped = {s["path"]: s["reason"] for s in runs.read_run_record(out)["data"]["skipped"]["image"]}
    assert "disappeared" in skipped["b/001.png"] and "permission denied" in skipped["c/002.png"]
    assert not (out / run_lock.LOCK_FILE).exists()


def test_any_other_failure_while_reading_the_data_ends_with_a_message_and_releases_the_folder(small_data, tmp_path,
                                                                                              monkeypatch):
    import discomkd.training.trainer as trainer

    def broken_disk(*args):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(trainer, "load_dataset", broken_disk)
    out = tmp_path / "run"
    result = train(_config(small_data), run_dir=out)
    assert result.status == "failed" and "Reading the data failed unexpectedly (OSError" in result.reason
    assert not (out / run_lock.LOCK_FILE).exists()


# ----- the true count of skipped files, and where the complete list is ---------------------------

def test_more_than_500_skipped_files_are_counted_and_all_listed_beside_run_json(small_data, tmp_path, capsys):
    import csv
    import shutil

    image = tmp_path / "image"
    shutil.copytree(small_data["image"], image)
    for i in range(520):
        (image / "a" / f"note{i:03d}.txt").write_text("x")
    (image / "b" / "tab\tname.txt").write_text("x")
    out = tmp_path / "run"
    code = main(["train", "--modality", f"image={image}", "--modality", f"motion={small_data['motion']}",
                 "--out", str(out), "--epochs", "1", "--embed-dim", "8", "--batch-size", "8", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "image: skipped 521 file(s):" in printed
    assert f"… and 511 more (all are listed in {out / runs.SKIPPED_FILE})" in printed
    data = runs.read_run_record(out)["data"]
    assert len(data["skipped"]["image"]) == 500 and data["skipped_count"] == {"image": 521, "motion": 0}
    assert data["skipped_list"] == runs.SKIPPED_FILE
    with open(out / runs.SKIPPED_FILE, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[0] == ["modality", "file", "reason"] and len(rows) == 522
    assert ["image", "b/tab\tname.txt", "unsupported file type '.txt'"] in rows
    assert not list(out.glob(".*.tmp"))


# ----- environment and arguments -----------------------------------------------------------------

@pytest.mark.skipif(sys.platform.startswith(("win", "darwin")), reason="XDG folders are a Linux/Unix convention")
@pytest.mark.parametrize("value", ["", "relative/folder"])
def test_empty_or_relative_xdg_folders_are_treated_as_unset(value, tmp_path, monkeypatch):
    from discomkd.storage import paths

    monkeypatch.delenv("DISCOMKD_DATA_DIR")
    monkeypatch.delenv("DISCOMKD_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", value)
    monkeypatch.setenv("XDG_CACHE_HOME", value)
    assert paths.user_data_dir() == tmp_path / ".local" / "share" / paths.APP_NAME
    assert paths.user_cache_dir() == tmp_path / ".cache" / paths.APP_NAME
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.user_data_dir() == tmp_path / "xdg" / paths.APP_NAME


def test_an_empty_path_to_predict_is_refused_not_the_current_folder(small_bundle, tmp_path, monkeypatch, capsys):
    from discomkd.errors import PredictionError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.png").write_bytes(b"would be predicted")
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(small_bundle), ""])
    assert exit_.value.code == 2 and "an empty path was given" in capsys.readouterr().err
    with pytest.raises(PredictionError, match="An empty path was given"):
        Predictor.from_path(small_bundle).predict_files([""])


@pytest.mark.parametrize("argv, message", [
    (["continue", "RUN", "--epochs", "-3"], "--epochs: must be a whole number of at least 0 (got -3)"),
    (["train", "--modality", "a=A", "--modality", "b=B", "--out", ""], "--out: an empty path was given"),
    (["predict", "BUNDLE", "FILE", "--csv", " "], "--csv: an empty path was given"),
    (["train", "--epochs", "0"], "--epochs: must be a whole number of at least 1 (got 0)"),
    (["train", "--epochs", "2.5"], "--epochs: must be a whole number of at least 1 (got '2.5')"),
    (["train", "--lr", "inf"], "--lr: must be a positive number (got inf)"),
    (["train", "--lr", "nan"], "--lr: must be a positive number (got nan)"),
    (["train", "--lr", "0"], "--lr: must be a positive number (got 0)"),
    (["train", "--batch-size", "1"], "--batch-size: must be a whole number of at least 2 (got 1)"),
    (["train", "--embed-dim", "100000"], "--embed-dim: must be a whole number from 2 to 4096"),
    (["train", "--seed", "-1"], "--seed: must be a whole number from 0 to 4294967295 (got -1)"),
    (["train", "--weight-decay", "-0.1"], "--weight-decay: must be zero or a positive number"),
    (["train", "--w-adv", "-1"], "--w-adv: must be zero or a positive number (got -1)"),
    (["train", "--w-cl", "inf"], "--w-cl: must be zero or a positive number (got inf)"),
    (["train", "--grl", "nan"], "--grl: must be zero or a positive number"),
    (["train", "--agree-temperature", "0"], "--agree-temperature: must be a positive number"),
    (["train", "--term-ramp", "2"], "--term-ramp: must be zero or a positive number of at most 1 (got 2)"),
    (["train", "--split", "0.7,0.5,-0.2"], "is not a split: give three fractions"),
    (["train", "--modality", "a=DIR:size=0x0"], "each side from 1 to 8192"),
    (["train", "--modality", "a=DIR:length=-5"], "the length is a whole number from 1"),
    (["train", "--modality", "a=DIR:bands="], "bands are whole numbers from 1"),
    (["predict", "M.discomkd", "x.png", "--top-k", "0"], "--top-k: must be a whole number of at least 1 (got 0)"),
    (["compare", "--modality", "a=D", "--out", "O", "--seeds", "0"], "--seeds: must be a whole number from 1 to 1000"),
    (["demo", "--epochs", "-1"], "--epochs: must be a whole number of at least 1 (got -1)"),
])
def test_every_numeric_option_out_of_range_is_refused_with_its_range(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_out_of_range_settings_are_refused_by_the_engine_too(small_data, tmp_path):
    import math

    for change, message in [(dict(learning_rate=math.inf), "learning rate must be a positive number"),
                            (dict(epochs=-3), "at least one epoch"),
                            (dict(seed=-1), "seed must be a whole number"),
                            (dict(weight_decay=math.nan), "weight decay"),
                            (dict(split=(1.0, 0.0, 0.0)), "keeps no validation data")]:
        result = train(_config(small_data, **change), run_dir=tmp_path / "run")
        assert result.status == "failed" and message in result.reason, (change, result.reason)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    assert train(_config(small_data), run_dir=tmp_path / "ok").status == "finished"
    result = continue_run(tmp_path / "ok", -3)
    assert result.status == "failed" and "zero or more epochs (got -3)" in result.reason
    assert runs.read_run_record(tmp_path / "ok")["epochs_done"] == 1


def test_a_split_without_validation_is_refused_and_one_without_test_is_warned(small_data, tmp_path, capsys):
    common = ["--modality", f"image={small_data['image']}", "--modality", f"motion={small_data['motion']}",
              "--epochs", "1", "--embed-dim", "8", "--batch-size", "8", "--device", "cpu"]
    assert main(["train", *common, "--split", "1,0,0", "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "The split 1,0,0 keeps no validation data, so no best epoch can be chosen" in err and "0.7,0.1,0.2" in err
    assert main(["train", *common, "--split", "0.8,0.2,0", "--out", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    assert "warning: The split 0.8,0.2,0 keeps no test data, so the run reports no test metrics" in captured.err
    assert "no test metrics" in captured.out and "discomkd evaluate" in captured.out  # said again at the end
    assert "no test metrics" in runs.read_run_record(tmp_path / "b")["reason"]
    assert main(["compare", *common, "--split", "0.8,0.2,0", "--seeds", "1", "--out", str(tmp_path / "cmp")]) == 1
    assert "A comparison measures every method on test data, but the split keeps none" in capsys.readouterr().err


# ----- a signal dropped on a model without a signal modality -------------------------------------

def test_a_signal_array_is_refused_by_a_model_without_a_signal_modality(trained_run, tiny_demo, tmp_path):
    predictor = Predictor.from_path(trained_run.bundle_path)  # image + audio
    np.save(tmp_path / "imu.npy", np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32))
    np.save(tmp_path / "digit.npy", np.zeros((28, 28), np.float32))  # an image-shaped array still is an image
    png = sorted((tiny_demo["image"] / "1").iterdir())[0]
    failure, digit, image = predictor.predict_files([tmp_path / "imu.npy", tmp_path / "digit.npy", png])
    assert isinstance(failure, PredictionFailure)
    assert "'imu.npy' (a 3x64 .npy array, shaped like a 3-channel signal of length 64) fits none" in failure.message
    assert "image (image, 1 channel, 28x28)" in failure.message and "audio (audio" in failure.message
    assert digit.modality == "image" and image.modality == "image"
    # choosing the modality explicitly is the user's decision and still works
    assert predictor.predict_file(tmp_path / "imu.npy", "image").modality == "image"


# ----- continuing after the data changed ---------------------------------------------------------

def test_continue_after_classes_or_channels_changed_says_what_changed(small_data, tmp_path):
    import shutil

    image, motion = tmp_path / "image", tmp_path / "motion"
    shutil.copytree(small_data["image"], image)
    shutil.copytree(small_data["motion"], motion)
    out = tmp_path / "run"
    assert train(_config({"image": image, "motion": motion}), run_dir=out).status == "finished"
    before = {name: (out / name).read_bytes() for name in (runs.RUN_FILE, runs.BUNDLE_FILE, runs.CHECKPOINT_FILE)}

    make_image_modality(image, classes=("a", "b", "c", "d"))
    make_signal_modality(motion, 6, (40, 48), classes=("a", "b", "c", "d"))
    result = continue_run(out, 1)
    assert result.status == "failed" and "classes added: d" in result.reason
    assert "Put the modality folders back" in result.reason and "start a new training" in result.reason
    assert "size mismatch" not in result.reason

    shutil.rmtree(image / "d")
    shutil.rmtree(motion / "d")
    shutil.rmtree(motion)
    make_signal_modality(motion, 4, (40, 48))
    result = continue_run(out, 1)
    assert result.status == "failed" and "motion: 4 channel(s) now, 6 before" in result.reason

    shutil.rmtree(motion)
    shutil.copytree(small_data["motion"], motion)
    for folder in (image, motion):
        (folder / "c").rename(folder / "z")
    result = continue_run(out, 1)
    assert result.status == "failed" and "classes renamed (or replaced): 'c' is now 'z'" in result.reason
    assert {name: (out / name).read_bytes() for name in before} == before  # the run is kept as it was


# ----- evaluate's own messages, WAV headers, numpy warnings --------------------------------------

def test_evaluate_accepts_one_class_and_names_the_right_modality_for_other_files(small_bundle, small_data, tmp_path, capsys):
    import shutil

    one = tmp_path / "only-b"
    shutil.copytree(small_data["image"] / "b", one / "b")
    assert main(["evaluate", str(small_bundle), "--modality", f"image={one}"]) == 0
    assert "image: 8 files" in capsys.readouterr().out
    assert main(["evaluate", str(small_bundle), "--modality", f"motion={small_data['image']}"]) == 1
    err = capsys.readouterr().err
    assert "are image data, but the model's modality 'motion' reads signal data" in err
    assert "Evaluate them as 'image'" in err and "choose the kind" not in err.lower()


def test_extensible_pcm_wav_is_read_like_a_plain_one(tmp_path):
    from hostile import write_extensible_wav

    from discomkd.data.spectrogram import read_wav

    plain, rate = read_wav(write_wav(tmp_path / "plain.wav"))
    extensible, rate_x = read_wav(write_extensible_wav(tmp_path / "ext.wav"))
    assert rate_x == rate and np.array_equal(extensible, plain)
    with pytest.raises(DataError, match="compressed or floating-point audio, not PCM"):
        read_wav(write_extensible_wav(tmp_path / "float.wav", subformat_tag=3))


def test_a_file_whose_values_overflow_the_model_gets_no_answer(small_bundle, small_data, tmp_path, capsys):
    """Finite float32 values far beyond the training data's overflow once standardised; NaN probabilities
    must never become an answer (an arbitrary class, 'nan' confidence, not even flagged uncertain)."""
    import warnings

    extreme = np.full((6, 48), 3e38, dtype=np.float32)
    extreme[1] = -3e38
    np.save(tmp_path / "extreme.npy", extreme)
    normal = sorted((small_data["motion"] / "a").iterdir())[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning on the way either
        results = Predictor.from_path(small_bundle).predict_files([tmp_path / "extreme.npy", normal])
    assert isinstance(results[0], PredictionFailure) and "no usable answer" in results[0].message
    assert "same kind of data" in results[0].message
    assert isinstance(results[1], Prediction) and np.isfinite(results[1].confidence)
    assert main(["predict", str(small_bundle), str(tmp_path / "extreme.npy")]) == 1
    captured = capsys.readouterr()
    assert "nan" not in captured.out.lower() and "no usable answer" in captured.err and "warning" not in captured.err
    # evaluate leaves it out with why, and its metrics (and JSON) hold no NaN
    import shutil

    folder = shutil.copytree(small_data["motion"], tmp_path / "motion")
    np.save(folder / "a" / "extreme.npy", extreme)
    assert main(["evaluate", str(small_bundle), "--modality", f"motion={folder}", "--json", str(tmp_path / "m.json")]) == 0
    captured = capsys.readouterr()
    assert "nan" not in captured.out.lower() and "warning" not in captured.err
    metrics = json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert metrics["n"] == 24 and [s["path"] for s in metrics["skipped"]] == [str(Path("a") / "extreme.npy")]
    assert "far outside" in metrics["skipped"][0]["reason"]


def test_training_files_whose_values_would_swamp_the_standardisation_are_skipped_with_a_reason(small_data, tmp_path,
                                                                                             capsys):
    """A third of a modality's files at 3e38 (finite float32) made its standard deviation so large that every
    other file standardised to about zero: the training "finished" with that modality at chance, silently."""
    import shutil

    motion = shutil.copytree(small_data["motion"], tmp_path / "motion")
    forged = sorted(motion.rglob("*.npy"))[::3]
    for path in forged:
        np.save(path, np.full((6, 48), 3e38, dtype=np.float32))
    np.save(motion / "b" / "far.npy", np.full((6, 48), 1e12, dtype=np.float32))  # a million times beyond the rest
    np.save(motion / "c" / "loud.npy", np.full((6, 48), 50.0, dtype=np.float32))  # louder, not extreme: kept
    data = load_modality(motion, "motion")
    reasons = {s.path: s.reason for s in data.skipped}
    assert {str(p.relative_to(motion)) for p in forged} | {str(Path("b") / "far.npy")} == set(reasons)
    assert all("values are too large (up to 3e+38" in reasons[str(p.relative_to(motion))] for p in forged)
    assert "swamp the standardisation" in reasons[str(Path("b") / "far.npy")]
    assert str(Path("c") / "loud.npy") in data.files and float(np.abs(data.x).max()) == 50.0
    assert load_modality(motion, "motion").from_cache  # the cache holds what was decoded; the rule is applied again
    out = tmp_path / "run"
    assert main(["train", "--modality", f"image={small_data['image']}", "--modality", f"motion={motion}",
                 "--out", str(out), "--epochs", "1", "--embed-dim", "8", "--batch-size", "8", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert f"motion: skipped {len(forged) + 1} file(s):" in printed and "values are too large" in printed
    record = runs.read_run_record(out)
    assert {s["path"] for s in record["data"]["skipped"]["motion"]} == set(reasons)
    assert record["data"]["skipped"]["image"] == []
    # nothing usable left: refused with the reason, not trained on noise
    for path in motion.rglob("*.npy"):
        np.save(path, np.full((6, 48), -1e30, dtype=np.float32))
    with pytest.raises(DataError, match="No file of the modality 'motion' could be used.*values are too large"):
        load_modality(motion, "motion")


def test_bounded_files_are_never_skipped_as_extreme(tmp_path):
    """PNGs decode to [0, 1] and WAVs to a bounded log-spectrogram: a bright file among dark ones is data."""
    from PIL import Image

    images = tmp_path / "image"
    for cls in ("a", "b"):
        (images / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.zeros((12, 12), np.uint16)).save(images / cls / f"{i}.png")
        Image.fromarray(np.full((12, 12), 65535, np.uint16)).save(images / cls / "bright.png")
    Image.fromarray(np.ones((12, 12), np.uint16)).save(images / "a" / "faint.png")
    data = load_modality(images, "image")
    assert data.skipped == [] and len(data.files) == 11


def test_numpy_warnings_never_reach_the_console(tmp_path, monkeypatch, capsys):
    import warnings

    from discomkd.data.decoding import read_raw

    np.save(tmp_path / "huge.npy", np.full((6, 50), 1e300))  # beyond float32: infinite once converted
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would raise here
        with pytest.raises(DataError, match="too large for 32-bit floats"):
            read_raw(tmp_path / "huge.npy")
    # what still warns (a library's warning) is printed by the command line as one line, no source
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    main(["info", str(tmp_path / "missing.discomkd")])
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        np.log(np.zeros(1))
    assert capsys.readouterr().err == "warning: divide by zero encountered in log\n"


def test_saving_non_finite_weights_is_refused_and_keeps_the_model_there(small_bundle, tmp_path):
    from discomkd.model.bundle import save_bundle

    target = tmp_path / "model.discomkd"
    target.write_bytes(small_bundle.read_bytes())
    bundle = load_bundle(small_bundle)
    weights = {m: dict(state) for m, state in bundle.weights.items()}
    key = next(k for k, t in weights["image"].items() if t.is_floating_point())
    weights["image"][key] = torch.full_like(weights["image"][key], float("nan"))
    with pytest.raises(BundleError, match=r"'image' are not finite numbers .NaN or infinite.*diverged.*kept"):
        save_bundle(target, bundle.metadata, weights)
    assert target.read_bytes() == small_bundle.read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "not torch", "foreign objects", "another dict"])
def test_continuing_from_a_damaged_checkpoint_says_so_and_keeps_the_run(damage, small_bundle, tmp_path, capsys):
    import pickle
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(small_bundle.parent, run_dir)
    checkpoint = run_dir / runs.CHECKPOINT_FILE
    if damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    elif damage == "not torch":
        checkpoint.write_text("garbage")
    elif damage == "foreign objects":
        checkpoint.write_bytes(pickle.dumps({"model": object}))
    else:
        torch.save({"weights": 1}, checkpoint)
    before = {name: (run_dir / name).read_bytes() for name in (runs.BUNDLE_FILE, runs.RUN_FILE)}
    assert main(["continue", str(run_dir), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "training state" in err and "is damaged" in err and "can still be used for prediction" in err
    assert "Start a new training" in err
    assert "unexpectedly" not in err and "weights_only" not in err and "Traceback" not in err
    assert {name: (run_dir / name).read_bytes() for name in (runs.BUNDLE_FILE, runs.RUN_FILE)} == before


def test_continuing_from_a_checkpoint_with_non_finite_weights_is_refused_and_keeps_the_model(small_bundle, tmp_path,
                                                                                            capsys):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(small_bundle.parent, run_dir)
    checkpoint = torch.load(run_dir / runs.CHECKPOINT_FILE, weights_only=True)
    key = next(k for k, t in checkpoint["best_states"]["motion"].items() if t.is_floating_point())
    checkpoint["best_states"]["motion"][key] = torch.full_like(checkpoint["best_states"]["motion"][key], float("inf"))
    torch.save(checkpoint, run_dir / runs.CHECKPOINT_FILE)  # as an older version saved a training that diverged
    model = (run_dir / runs.BUNDLE_FILE).read_bytes()
    # --epochs 0 would otherwise refit the calibration and save these weights as the run's model.
    assert main(["continue", str(run_dir), "--epochs", "0"]) == 1
    err = capsys.readouterr().err
    assert "not finite numbers (NaN or infinite): the best weights of 'motion'" in err and "diverged" in err
    assert (run_dir / runs.BUNDLE_FILE).read_bytes() == model


@pytest.mark.parametrize("failure, message", [
    (MemoryError(), "ran out of memory"),
    (RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 GB."), "ran out of memory"),
    (OSError(5, "Input/output error", "/data/image"), "could not use '/data/image': Input/output error"),
    (ValueError("something nobody foresaw"), "failed unexpectedly (ValueError: something nobody foresaw)"),
])
def test_a_failure_outside_the_engines_checks_is_a_message_not_a_traceback(failure, message, small_bundle, small_data,
                                                                           tmp_path, monkeypatch, capsys):
    """evaluate out of memory (a big folder), or a disk that fails while reading, printed a Python
    traceback: main() caught only the engine's own errors."""
    import discomkd.training.evaluation as evaluation

    def fails(*args, **kwargs):
        raise failure

    monkeypatch.setattr(evaluation, "load_modality", fails)
    out = tmp_path / "metrics.json"
    args = ["evaluate", str(small_bundle), "--modality", f"image={small_data['image']}", "--json", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "earlier files were kept" in err
    assert not out.exists()
    monkeypatch.setenv("DISCOMKD_DEBUG", "1")  # a developer still gets the traceback
    with pytest.raises(type(failure)):
        main(args)


def test_a_model_file_that_cannot_be_read_says_so(small_bundle, monkeypatch, capsys):
    """An unreadable bundle (no read permission) was called 'not a DisCoM-KD model'."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == small_bundle and mode == os.R_OK
                        else real_access(path, mode, **kw))
    assert main(["info", str(small_bundle)]) == 1
    err = capsys.readouterr().err
    assert "cannot be read (permission denied)" in err and "not a DisCoM-KD model" not in err


@pytest.mark.parametrize("kind", ["zip of notes", "npz", "empty zip"])
def test_a_zip_that_is_not_a_model_is_named_as_such(kind, small_bundle, tmp_path, capsys):
    """A .zip or .npz renamed .discomkd was called 'damaged or truncated' with torch's internal message
    ('[enforce fail at inline_container.cc:180] . file in archive is not in a subdirectory')."""
    fake = tmp_path / "model.discomkd"
    if kind == "npz":
        with open(fake, "wb") as fh:
            np.savez(fh, x=np.zeros(3))
    else:
        with zipfile.ZipFile(fake, "w") as archive:
            if kind == "zip of notes":
                archive.writestr("notes.txt", "hello")
    assert main(["predict", str(fake), str(small_bundle)]) == 1
    err = capsys.readouterr().err
    assert "is not a DisCoM-KD model: it is a zip archive of other files" in err
    assert "enforce fail" not in err and "damaged" not in err and "Traceback" not in err
