"""The window's output paths follow the engine's rule (docs/architecture.md, "Output paths"): a file
is replaced only after the user confirms, an input never; Delete removes only what a run wrote; a
run that ended no epoch can be continued; Compare checks its folder before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

Yes, No = QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.No


def test_export_dialog_asks_before_replacing_a_typed_file_and_never_replaces_the_model(
        window, trained_bundle, qtbot, tmp_path, monkeypatch):
    from discomkd_gui.dialogs import ExportDialog

    answers = []
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda parent, title, text, *a: asked.append(text) or answers.pop(0))
    dialog = ExportDialog(str(trained_bundle), ["image", "audio"], window)
    qtbot.addWidget(dialog)
    dialog.format.setCurrentIndex(dialog.format.findData("torchscript"))
    existing = tmp_path / "audio.pt"
    existing.write_text("my file")

    dialog.path.setText(str(existing))
    answers.append(No)
    dialog.accept()
    assert dialog.result() != ExportDialog.DialogCode.Accepted and not dialog.replace_confirmed
    assert str(existing) in asked[-1] and existing.read_text() == "my file"

    dialog.path.setText(str(trained_bundle))  # the model being exported: refused without asking
    dialog.accept()
    assert dialog.result() != ExportDialog.DialogCode.Accepted and len(asked) == 1
    assert "one of this command's inputs" in dialog.problem.text() and not dialog.problem.isHidden()

    dialog.path.setText(str(tmp_path))  # a folder
    dialog.accept()
    assert dialog.result() != ExportDialog.DialogCode.Accepted and "is a folder" in dialog.problem.text()

    dialog.path.setText(str(tmp_path / "exports") + "/")  # a folder meant, not there yet: never a file 'exports'
    dialog.accept()
    assert dialog.result() != ExportDialog.DialogCode.Accepted and "ends with a slash" in dialog.problem.text()

    dialog.path.setText(str(trained_bundle.parent / "checkpoint.pt"))  # the run's own file: refused without asking
    dialog.accept()
    assert dialog.result() != ExportDialog.DialogCode.Accepted and len(asked) == 1
    assert "of the training run in" in dialog.problem.text()

    dialog.path.setText(str(existing))
    answers.append(Yes)
    dialog.accept()
    assert dialog.result() == ExportDialog.DialogCode.Accepted and dialog.replace_confirmed
    window.run_export(str(trained_bundle), *dialog.choice(), replace=dialog.replace_confirmed)
    qtbot.waitUntil(lambda: bool(window.export_boxes or window.error_boxes), timeout=60000)
    assert not window.error_boxes, window.error_boxes[0].text()
    assert existing.read_bytes() != b"my file" and (tmp_path / "audio.pt.json").exists()


def test_an_export_the_user_did_not_confirm_never_replaces_a_file(window, trained_bundle, qtbot, tmp_path):
    existing = tmp_path / "image.pt"
    existing.write_text("my file")
    window.run_export(str(trained_bundle), "image", "torchscript", str(existing))  # replace not confirmed
    qtbot.waitUntil(lambda: bool(window.export_boxes or window.error_boxes), timeout=60000)
    assert "already exists and was not replaced" in window.error_boxes[0].text()
    assert existing.read_text() == "my file"


def test_predictions_csv_never_replaces_a_classified_file_or_goes_into_a_dropped_folder(
        window, trained_bundle, tiny_demo, qtbot, tmp_path):
    page = window.predict_page
    with qtbot.waitSignal(page.model_loaded, timeout=30000):
        window.open_model(str(trained_bundle))
    drop = tmp_path / "drop"
    drop.mkdir()
    for png in sorted((tiny_demo["image"] / "1").iterdir())[:2]:
        shutil.copy2(png, drop / png.name)
    photo = sorted(drop.iterdir())[0]
    before = photo.read_bytes()
    with qtbot.waitSignal(page.predictions_ready, timeout=60000):
        page.predict([str(drop)])

    assert page.export_csv(str(photo), replace=True) is None  # as if the file dialog had confirmed
    assert photo.read_bytes() == before
    assert "one of this command's inputs" in window.error_boxes[-1].text()
    assert page.export_csv(str(drop / "predictions.csv"), replace=True) is None
    assert not (drop / "predictions.csv").exists() and "reads as input" in window.error_boxes[-1].text()
    assert page.export_csv(str(trained_bundle), replace=True) is None
    # Nor into the model's training data (audio's, though only images were classified), nor over its run's files.
    assert page.export_csv(str(tiny_demo["audio"] / "predictions.csv"), replace=True) is None
    assert not (tiny_demo["audio"] / "predictions.csv").exists()
    assert f"inside '{tiny_demo['audio']}'" in window.error_boxes[-1].text()
    record = (trained_bundle.parent / "run.json").read_bytes()
    assert page.export_csv(str(trained_bundle.parent / "run.json"), replace=True) is None
    assert (trained_bundle.parent / "run.json").read_bytes() == record
    assert "of the training run in" in window.error_boxes[-1].text()
    saved = page.export_csv(str(tmp_path / "predictions.csv"))
    assert saved and Path(saved).read_text().count("\n") == 3


def _fake_run(runs_root: Path, name: str, **record) -> Path:
    from discomkd.storage import runs

    run_dir = runs_root / name
    run_dir.mkdir(parents=True)
    runs.write_run_record(run_dir, {"name": name, "created": "2026-01-01T12:00:00", "config": {"modalities": []},
                                    **record})
    return run_dir


def test_runs_page_delete_keeps_what_the_run_did_not_write(window, private_data_dir, qtbot, monkeypatch):
    from discomkd.storage import runs

    run_dir = _fake_run(private_data_dir / "runs", "20260101-120000-mine", status="finished", epochs_done=2)
    (run_dir / runs.BUNDLE_FILE).write_bytes(b"a model")
    (run_dir / runs.HISTORY_FILE).write_text("{}\n")
    (run_dir / "field notes.txt").write_text("mine")
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: Yes)
    window.show_page("Runs")
    page = window.runs_page
    page.select_run(str(run_dir))
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    assert sorted(p.name for p in run_dir.iterdir()) == ["field notes.txt"]
    assert (run_dir / "field notes.txt").read_text() == "mine"
    assert page.table.rowCount() == 0
    assert "was kept" in window.error_boxes[-1].text() and "field notes.txt" in window.error_boxes[-1].text()


def test_runs_page_export_and_delete_report_unexpected_failures_in_a_message_box(window, private_data_dir, qtbot,
                                                                                  monkeypatch, tmp_path):
    """Export and Delete run in the window's thread and caught only engine errors and OSError: a MemoryError
    went to Qt's default handler (pytest-qt fails the test on it)."""
    from PySide6.QtWidgets import QFileDialog

    from discomkd.storage import runs

    run_dir = _fake_run(private_data_dir / "runs", "20260101-120000-mine", status="finished", epochs_done=2)
    (run_dir / runs.BUNDLE_FILE).write_bytes(b"a model")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    window.show_page("Runs")
    page = window.runs_page
    page.select_run(str(run_dir))

    def out_of_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "copy.discomkd"), ""))
    monkeypatch.setattr(runs, "export_bundle", out_of_memory)
    qtbot.mouseClick(page.export_button, Qt.MouseButton.LeftButton)
    text = window.error_boxes[-1].text()
    assert "Exporting the model of the run" in text and "ran out of memory" in text and "unchanged" in text
    assert "MemoryError" in window.error_boxes[-1].detailedText()  # the traceback, under Show Details

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: Yes)
    monkeypatch.setattr(runs, "delete_run", lambda run: (_ for _ in ()).throw(RuntimeError("a bug")))
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    assert "Deleting the run" in window.error_boxes[-1].text() and "RuntimeError: a bug" in window.error_boxes[-1].text()
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before and page.table.rowCount() == 1


def test_runs_page_offers_continue_for_a_run_that_ended_no_epoch(window, private_data_dir):
    from discomkd.storage import runs

    never = _fake_run(private_data_dir / "runs", "20260101-120000-never", status="stopped", epochs_done=0)
    model_only = _fake_run(private_data_dir / "runs", "20260101-130000-model", status="finished", epochs_done=3)
    (model_only / runs.BUNDLE_FILE).write_bytes(b"a model")  # no checkpoint: nothing to continue from
    window.show_page("Runs")
    page = window.runs_page
    page.select_run(str(never))
    assert page.continue_button.isEnabled()
    page.select_run(str(model_only))
    assert not page.continue_button.isEnabled()


def test_compare_page_checks_where_it_keeps_comparisons_before_starting(window, tiny_demo, private_data_dir):
    from discomkd.config import ModalitySource, TrainingConfig

    (private_data_dir / "runs").mkdir(parents=True)
    (private_data_dir / "runs" / "comparisons").write_text("a file where the folder should be")
    config = TrainingConfig(modalities=[ModalitySource(m, str(f)) for m, f in tiny_demo.items()], epochs=1,
                            device="cpu")
    assert window.compare_page.start(config) is None
    assert window.compare_page.job is None
    assert "is a file, not a folder" in window.error_boxes[-1].text()
