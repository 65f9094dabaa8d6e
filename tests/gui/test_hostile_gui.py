"""The window with hostile inputs: a huge file among good ones, a forged model, a killed run, and a
many-channel signal folder whose kind the user changes on the Data page."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.append(str(REPO / "tests"))  # after tests/gui, so that "conftest" stays the GUI one
from hostile import make_signal_modality, write_png_header_only  # noqa: E402


def test_predict_page_keeps_every_good_result_next_to_a_huge_file(window, trained_bundle, tiny_demo, qtbot, tmp_path):
    page = window.predict_page
    with qtbot.waitSignal(page.model_loaded, timeout=30000):
        window.open_model(str(trained_bundle))
    folder = tmp_path / "drop"
    folder.mkdir()
    goods = [p for cls in ("1", "2") for p in sorted((tiny_demo["image"] / cls).iterdir())][:25]
    for p in goods:
        (folder / p.name).write_bytes(p.read_bytes())
    write_png_header_only(folder / "huge.png", 20000, 20000)
    with qtbot.waitSignal(page.predictions_ready, timeout=60000) as ready:
        page.predict([str(folder)])
    items = ready.args[0]
    assert len(items) == 26 and sum(i.ok for i in items) == 25
    assert page.status.text() == "25 of 26 file(s) classified."
    rows = {page.table.item(r, 0).text(): page.table.item(r, 4).text() for r in range(page.table.rowCount())}
    assert "too large to decode safely" in rows["huge.png"] and "Shrink it" in rows["huge.png"]
    assert window.error_boxes == []


def test_a_forged_model_is_refused_when_opened_not_when_used(window, trained_bundle, qtbot, tmp_path):
    import torch

    from discomkd.model.bundle import _digest

    payload = torch.load(trained_bundle, weights_only=True)
    metadata = json.loads(payload["metadata"])
    metadata["modalities"]["image"]["backbone"] = "vgg19"
    payload["metadata"] = json.dumps(metadata)
    payload["digest"] = _digest(payload["metadata"], payload["weights"])
    forged = tmp_path / "forged.discomkd"
    torch.save(payload, forged)
    page = window.predict_page
    loaded = []
    page.model_loaded.connect(loaded.append)
    job = window.open_model(str(forged))
    qtbot.waitUntil(lambda: not job.is_running(), timeout=30000)
    assert loaded == [] and page.predictor is None
    assert "unknown backbone 'vgg19'" in page.status.text() and "Model ready" not in page.status.text()
    assert len(window.error_boxes) == 1


def test_runs_page_shows_a_killed_run_as_interrupted(window, private_data_dir, qtbot):
    from discomkd.storage import run_lock, runs

    run_dir = private_data_dir / "runs" / "20260101-120000-killed"
    run_dir.mkdir(parents=True)
    runs.write_run_record(run_dir, {"name": "killed", "created": "2026-01-01T12:00:00", "status": "running",
                                    "epochs_done": 3, "config": {"modalities": []}})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_dir / run_lock.LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    (run_dir / ".model.discomkd-x1.tmp").write_bytes(b"half a model")
    window.show_page("Runs")
    table = window.runs_page.table
    assert table.rowCount() == 1
    assert table.item(0, 2).text() == "⚠ interrupted"
    assert "Epoch 3 was the last one saved" in table.item(0, 2).toolTip()
    assert not list(run_dir.glob(".*.tmp"))


def test_data_page_detects_a_many_channel_signal_and_the_user_can_change_its_kind(window, qtbot, tmp_path):
    from conftest import add_modalities

    mocap = make_signal_modality(tmp_path / "mocap.v2", 60, (90, 100, 120), per_class=4)
    add_modalities(qtbot, window, {"mocap.v2": mocap})
    page = window.data_page
    entry = page.entry("mocap.v2")
    assert entry.data.spec.kind == "signal" and entry.data.spec.channels == 60
    combo = page.kind_combo
    assert combo.isEnabled() and [combo.itemData(i) for i in range(combo.count())] == ["image", "signal"]
    assert combo.currentData() == "signal" and "detected" in combo.currentText()
    assert "60 rows and varying lengths" in page.kind_label.text()
    shots = Path(os.environ.get("DISCOMKD_SCREENSHOT_DIR", tmp_path))
    window.grab().save(str(shots / "data-kind-signal.png"))

    page.set_kind("mocap.v2", "image")
    qtbot.waitUntil(lambda: not page.is_busy() and entry.status == "ready", timeout=60000)
    assert entry.data.spec.kind == "image" and entry.overrides == {"kind": "image"}
    assert combo.currentData() == "image" and "Your choice (detected: signal)" in page.kind_label.text()
    config = window.configure_page.config([(e.name, e.folder, e.overrides) for e in page.ready_entries()])
    assert config.modalities[0].overrides["kind"] == "image"

    combo.setCurrentIndex(combo.findData("signal"))
    combo.activated.emit(combo.currentIndex())  # as a user's pick does
    qtbot.waitUntil(lambda: not page.is_busy() and entry.status == "ready", timeout=60000)
    assert entry.data.spec.kind == "signal" and entry.overrides == {}


def test_data_page_reads_a_folder_with_non_utf8_names_and_a_damaged_cache(window, qtbot, tmp_path, monkeypatch):
    from conftest import add_modalities
    from hostile import NON_UTF8_NAME, make_image_modality

    monkeypatch.setenv("DISCOMKD_CACHE_DIR", str(tmp_path / "cache"))
    folder = make_image_modality(tmp_path / "photos")
    (folder / "a" / NON_UTF8_NAME).write_bytes(b"not a png")
    good = folder / "b" / os.fsdecode(b"\xff-good.png")
    good.write_bytes((folder / "b" / "000.png").read_bytes())
    add_modalities(qtbot, window, {"photos": folder})
    page = window.data_page
    entry = page.entry("photos")
    assert len(entry.data.files) == 25 and f"b/{good.name}" in entry.data.files
    skipped = {page.skipped_table.item(r, 0).text(): page.skipped_table.item(r, 1).text()
               for r in range(page.skipped_table.rowCount())}
    assert "unreadable image" in skipped["a/caf\\xe9.png"]

    [cache] = (tmp_path / "cache" / "decoded").glob("*.npz")
    cache.write_bytes(cache.read_bytes()[:100])  # damaged between two sessions
    page.remove_modality("photos")
    add_modalities(qtbot, window, {"photos": folder})
    entry = page.entry("photos")
    assert entry.status == "ready" and len(entry.data.files) == 25 and window.error_boxes == []
    assert "damaged cache file" in page.files_label.text()


def test_predict_page_refuses_an_empty_path_and_a_signal_the_model_has_no_modality_for(window, trained_bundle,
                                                                                       qtbot, tmp_path, monkeypatch):
    import numpy as np

    page = window.predict_page
    with qtbot.waitSignal(page.model_loaded, timeout=30000):
        window.open_model(str(trained_bundle))
    monkeypatch.chdir(tmp_path)  # an empty path must not mean "everything in the current folder"
    job = page.predict([""])
    qtbot.waitUntil(lambda: not job.is_running(), timeout=30000)
    assert "An empty path was given" in page.status.text() and page.items == []
    assert len(window.error_boxes) == 1

    np.save(tmp_path / "imu.npy", np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32))
    with qtbot.waitSignal(page.predictions_ready, timeout=30000) as ready:
        page.predict([str(tmp_path / "imu.npy")])
    [item] = ready.args[0]
    assert not item.ok and "3-channel signal of length 64) fits none of this model's modalities" in item.result.message
    assert "image (image, 1 channel" in item.result.message and "audio (audio" in item.result.message
    assert "fits none" in page.cards[0].label.text()


def test_data_page_lists_unreadable_files_and_hidden_class_folders_as_skipped(window, qtbot, tmp_path, monkeypatch):
    from conftest import add_modalities
    from hostile import make_image_modality

    folder = make_image_modality(tmp_path / "photos")
    make_image_modality(folder / ".hidden", classes=("x",), per_class=2)
    make_image_modality(folder, classes=("dog", "dog "), per_class=3, seed=1)
    real_stat = Path.stat

    def stat(self, *args, **kwargs):  # as a file another user owns, without read permission
        if self.name == "004.png" and self.parent.name == "a":
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    page = window.data_page
    assert page.add_folder("") is None and len(window.error_boxes) == 1  # never the current folder
    add_modalities(qtbot, window, {"photos": folder})
    entry = page.entry("photos")
    assert entry.status == "ready" and entry.data.classes == ["a", "b", "c", "dog"]
    skipped = {page.skipped_table.item(r, 0).text(): page.skipped_table.item(r, 1).text()
               for r in range(page.skipped_table.rowCount())}
    assert "permission denied" in skipped["a/004.png"] and "hidden folder" in skipped[".hidden/"]
    assert "'dog' and 'dog '" in page.files_label.text() and "one class 'dog'" in page.files_label.text()
    assert len(window.error_boxes) == 1  # no "Something went wrong"


def test_train_page_says_a_training_diverged_and_what_to_try(window, tiny_demo, qtbot, monkeypatch):
    import torch

    import discomkd.training.loop as loop
    from conftest import add_modalities, tiny_settings

    real_step = loop._training_step

    def step_leaving_nan_weights(session, *args):  # what a far too high learning rate does
        losses = real_step(session, *args)
        with torch.no_grad():
            next(session.model.parameters()).fill_(float("nan"))
        return losses

    monkeypatch.setattr(loop, "_training_step", step_leaving_nan_weights)
    add_modalities(qtbot, window, tiny_demo)
    tiny_settings(window, epochs=2)
    page = window.train_page
    with qtbot.waitSignal(page.run_finished, timeout=90000) as finished:
        window.start_training()
    result = finished.args[0]
    assert result.status == "failed" and result.bundle_path is None
    assert "The training diverged" in page.status.text() and "Lower the learning rate" in page.status.text()
    assert "No model was saved." in page.status.text()
    assert len(window.error_boxes) == 1
