"""The main window, driven as a user would: data, configuration, training, results, prediction."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import add_modalities, tiny_settings
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QLabel


def drop_files(widget, paths) -> None:
    """Drag file URLs onto the widget and drop them, as a file manager would (enter, then drop)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Qt 6 marks the QPoint overload deprecated
        enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
    assert QApplication.sendEvent(widget, enter) and enter.isAccepted()
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    assert QApplication.sendEvent(widget, drop)


def test_window_shows_before_torch_is_imported():
    code = (
        "import sys\n"
        "from discomkd_gui.app import create_application, create_main_window\n"
        "app = create_application([])\n"
        "w = create_main_window(restore_session=False); w.show(); app.processEvents()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr


def test_demo_option_adds_both_demo_modalities(qtbot):
    from discomkd_gui.app import create_application, create_main_window

    create_application([])
    win = create_main_window(demo=True)
    qtbot.addWidget(win)
    win.show()
    page = win.data_page
    qtbot.waitUntil(lambda: len(page.ready_entries()) == 2 and not page.is_busy(), timeout=60000)
    kinds = {e.name: e.data.spec.kind for e in page.ready_entries()}
    assert kinds == {"image": "image", "audio": "audio"}
    assert page.class_table.rowCount() == 10
    assert "Ready to train" in page.summary.text() and "unpaired" in page.summary.text()
    assert len(page.entries[0].result.thumbnails) == 10
    # The configure page offers an augmentation choice per modality.
    assert set(win.configure_page.augment_combos) == {"image", "audio"}


def test_changing_a_loss_weight_changes_the_configuration_and_is_remembered(window, tiny_demo, qtbot):
    from discomkd.errors import ConfigError
    from discomkd_gui.main_window import MainWindow

    cfg = window.configure_page
    cfg.weights["adv"].setValue(0.0)
    assert cfg.preset.currentText() == "Without L_adv"
    config = cfg.config([(m, str(f)) for m, f in tiny_demo.items()])
    assert config.weights.adv == 0.0 and config.weights.cl == 1.0
    cfg.weights["perp"].setValue(0.5)
    assert cfg.preset.currentText() == "Custom"
    # The paper's objective is a preset with its schedule: no ramp, no agreement term.
    cfg.preset.setCurrentText("Paper's objective")
    paper = cfg.config([(m, str(f)) for m, f in tiny_demo.items()])
    assert paper.weights.agree == 0.0 and paper.weights.aux == 1.0 and paper.term_ramp == 0.0
    cfg.preset.setCurrentText("Recommended")
    assert cfg.term_ramp.value() == pytest.approx(0.3) and cfg.weights["agree"].value() == 1.0
    cfg.term_ramp.setValue(0.5)
    assert cfg.preset.currentText() == "Custom"
    cfg.weights["adv"].setValue(0.0)
    cfg.weights["perp"].setValue(0.5)

    # An invalid learning rate is refused at the field and never reaches the engine.
    cfg.learning_rate.setText("0")
    assert cfg.learning_rate.property("invalid") is True
    try:
        cfg.config([(m, str(f)) for m, f in tiny_demo.items()])
    except ConfigError as exc:
        assert "learning rate" in str(exc)
    else:
        raise AssertionError("a zero learning rate was accepted")
    cfg.learning_rate.setText("0.002")

    window.save_settings()
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.configure_page.weights["adv"].value() == 0.0
    assert again.configure_page.weights["perp"].value() == 0.5
    assert again.configure_page.learning_rate.text() == "0.002"


def test_one_epoch_training_fills_plots_results_and_runs(window, tiny_demo, qtbot):
    add_modalities(qtbot, window, tiny_demo)
    tiny_settings(window, epochs=1)
    page = window.train_page
    with qtbot.waitSignal(page.run_finished, timeout=60000) as finished:
        qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    result = finished.args[0]
    assert result.status == "finished", result.reason
    qtbot.waitUntil(lambda: not page.is_training(), timeout=10000)

    # Plots received data: smoothed per-batch losses, epoch means, validation per modality.
    page.flush_plots()
    for term in ("cl", "aux", "adv", "mod", "perp", "total"):
        x, y = page.loss_curves[term].getData()
        assert x is not None and len(x) >= 1
        assert len(page.epoch_curves[term].getData()[0]) == 1
    assert {m for m, _ in page.val_curves} == {"image", "audio"}
    assert page.batch_events >= 1 and page.epoch_events == 1
    assert page.loss_plot.getAxis("bottom").labelText == "epoch"

    # The results page shows numbers for both modalities.
    results = window.results_page
    assert results.summary.rowCount() == 2
    for row in range(2):
        assert 0.0 <= float(results.summary.item(row, 1).text()) <= 1.0
        assert 0.0 <= float(results.summary.item(row, 2).text()) <= 1.0
    assert results.per_class.rowCount() == 3
    matrix = results.confusion.matrix()
    assert len(matrix) == 3 and sum(map(sum, matrix)) == int(results.summary.item(0, 5).text())
    assert results.embeddings is not None and len(results.inv_widget.getPlotItem().listDataItems()) >= 2

    # The run is listed, and reopening it redraws its curves.
    window.show_page("Runs")
    assert window.runs_page.table.rowCount() == 1
    window.open_run(result.run_dir)
    assert window.current_page() == "Results"
    page.flush_plots()
    assert len(page.epoch_curves["total"].getData()[0]) == 1


def test_stop_keeps_the_best_model(window, tiny_demo, qtbot):
    from discomkd.model.bundle import load_bundle
    from discomkd.storage.runs import read_run_record

    add_modalities(qtbot, window, tiny_demo)
    tiny_settings(window, epochs=200)
    page = window.train_page
    with qtbot.waitSignal(page.best_saved, timeout=60000):
        window.start_training()
    with qtbot.waitSignal(page.run_finished, timeout=60000) as finished:
        qtbot.mouseClick(page.stop_button, Qt.MouseButton.LeftButton)
    result = finished.args[0]
    assert result.status == "stopped"
    assert 1 <= result.epochs_done < 200
    bundle = load_bundle(result.bundle_path)
    assert set(bundle.modality_names) == {"image", "audio"}
    assert read_run_record(Path(result.run_dir))["status"] == "stopped"
    qtbot.waitUntil(lambda: page.start_button.isEnabled(), timeout=10000)
    assert "Stopped" in page.progress.format()


def test_gui_stays_responsive_during_training(window, tiny_demo, qtbot):
    # As in the application, PyTorch is loaded once in the background right after start-up.
    with qtbot.waitSignal(window.devices_ready, timeout=60000):
        window.start_background_setup()
    add_modalities(qtbot, window, tiny_demo)
    tiny_settings(window, epochs=4)
    window.show_page("Train")  # the first paint of a page is not what this test measures
    qtbot.wait(200)
    marks = []

    def tick() -> None:
        marks.append((page.batch_events, page.epoch_events))

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    page = window.train_page
    with qtbot.waitSignal(page.run_finished, timeout=90000):
        window.start_training()
        timer.start()
    timer.stop()
    assert page.batch_events > 10
    assert len(marks) > 20
    # Training runs off the GUI thread: the GUI's timer fires between batches all along the run
    # (on the GUI thread it could not fire until the end). How long the longest gap is depends on
    # the machine's load, so that figure lives in benchmarks/gui_stall.py, not in a test.
    batches_seen = {batches for batches, _ in marks}
    assert len(batches_seen) >= min(10, page.batch_events // 2), sorted(batches_seen)


def test_dropped_png_and_wav_are_classified(window, trained_bundle, held_out_files, qtbot, tmp_path):
    from discomkd.inference.predict import Predictor
    from discomkd.model.bundle import load_bundle

    bundle = load_bundle(trained_bundle)
    chance = 1 / len(bundle.classes)
    accuracies = {m: v["accuracy"] for m, v in bundle.test_metrics.items()}
    assert sum(accuracies.values()) / len(accuracies) > chance, accuracies

    page = window.predict_page
    with qtbot.waitSignal(page.model_loaded, timeout=30000):
        window.open_model(str(trained_bundle))
    assert window.current_page() == "Predict"
    assert window.results_page.summary.rowCount() == 2  # the bundle's stored test metrics

    png, wav = held_out_files["image"], held_out_files["audio"]
    with qtbot.waitSignal(page.predictions_ready, timeout=30000) as ready:
        drop_files(page.drop_zone, [png, wav])
    items = ready.args[0]
    assert [Path(i.result.path).name for i in items] == [png.name, wav.name]
    reference = Predictor(bundle)
    for item, path, modality in ((items[0], png, "image"), (items[1], wav, "audio")):
        assert item.ok
        assert item.result.modality == modality
        assert item.result.label == reference.predict_file(path).label
        assert item.thumbnail is not None
    assert len(page.cards) == 2
    assert items[0].result.label in page.cards[0].label.text()
    assert len(page.cards[1].bars.items()) == 3
    csv = page.export_csv(str(tmp_path / "predictions.csv"))
    assert csv and Path(csv).read_text().count("\n") == 3


def test_unsupported_and_broken_files_get_a_clear_message(window, trained_bundle, tmp_path, qtbot):
    page = window.predict_page
    with qtbot.waitSignal(page.model_loaded, timeout=30000):
        window.open_model(str(trained_bundle))
    notes = tmp_path / "notes.txt"
    notes.write_text("not data")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    with qtbot.waitSignal(page.predictions_ready, timeout=30000) as ready:
        drop_files(page.drop_zone, [notes, broken])
    items = ready.args[0]
    assert len(items) == 2 and not any(i.ok for i in items)
    assert "not a supported file" in page.cards[0].label.text()
    assert "broken.png" in page.cards[1].label.text()
    assert page.status.text().startswith("0 of 2")
    assert window.error_boxes == []  # per-file messages, no error dialog, no crash


def test_closing_during_training_asks_then_stops_cleanly(window, tiny_demo, qtbot, monkeypatch):
    add_modalities(qtbot, window, tiny_demo)
    tiny_settings(window, epochs=200)
    asked = []
    monkeypatch.setattr(window, "confirm_stop_on_close", lambda: asked.append(True) or True)
    page = window.train_page
    with qtbot.waitSignal(page.best_saved, timeout=60000):
        window.start_training()
    with qtbot.waitSignal(page.run_finished, timeout=60000) as finished:
        window.close()
    assert asked == [True]
    assert finished.args[0].status == "stopped" and finished.args[0].bundle_path
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10000)


def test_about_box_shows_versions_and_demo_licences(window):
    from discomkd_gui.dialogs import AboutDialog

    from PySide6.QtWidgets import QTextBrowser

    about = AboutDialog(window)
    content = about.findChild(QTextBrowser, "licences").toPlainText()
    assert "MNIST" in content and "Free Spoken Digit" in content
    assert "PySide6" in about.findChildren(QLabel)[1].text()


def test_compare_page_runs_methods_fills_table_and_chart_and_saves(window, tiny_demo, qtbot, private_data_dir):
    add_modalities(qtbot, window, tiny_demo)
    tiny_settings(window, epochs=1)
    page = window.compare_page
    window.show_page("Compare")
    for method, box in page.method_boxes.items():
        box.setChecked(method in ("discomkd", "student"))
    page.seeds.setValue(2)
    with qtbot.waitSignal(page.comparison_finished, timeout=120000) as finished:
        qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    result = finished.args[0]
    assert {r["method"] for r in result.rows} == {"discomkd", "student"}
    assert page.table.rowCount() == len(result.rows) == 4
    assert "±" in page.table.item(0, 3).text()
    # DisCoM-KD's rows carry the paired difference to the student alone and a verdict; so does the banner.
    page.table.sortItems(0)
    texts = {(page.table.item(r, 0).text(), page.table.item(r, 1).text()): r for r in range(4)}
    row = texts[("DisCoM-KD", "image")]
    assert " to " in page.table.item(row, 5).text()
    assert page.table.item(row, 6).text() in ("helps", "hurts", "no evidence")
    assert page.verdict.text().startswith("DisCoM-KD vs student alone: ")
    assert "compare at convergence" in page.skipped.text()  # one epoch: the convergence check warns
    heights = page.chart.bar_heights()
    assert set(heights) == {(m, d) for m in ("discomkd", "student") for d in ("image", "audio")}
    assert all(heights[(r["method"], r["modality"])] == pytest.approx(r["wf1_mean"]) for r in result.rows)
    saved = page.saved_folder
    assert saved.parent == private_data_dir / "runs" / "comparisons"
    assert (saved / "comparison.csv").is_file() and str(saved) in page.saved_label.text()
    assert page.saved_combo.count() == 1 and page.saved_combo.currentData() == str(saved)
    qtbot.waitUntil(lambda: page.start_button.isEnabled(), timeout=10000)

    page.chart.set_rows([])  # choosing the saved comparison brings table and chart back from disk
    page.table.setRowCount(0)
    page.saved_combo.activated.emit(0)
    assert page.table.rowCount() == 4 and page.chart.bar_heights() == pytest.approx(heights)


def test_results_page_exports_a_classifier_for_a_device(window, trained_bundle, qtbot, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    from discomkd_gui.dialogs import ExportDialog

    out = tmp_path / "device" / "audio.onnx"

    def choose(dialog):  # what the user picks in the dialog
        assert dialog.path.text().endswith("model-image.onnx")  # suggested: beside the model
        dialog.modality.setCurrentText("audio")
        dialog.format.setCurrentIndex(dialog.format.findData("onnx"))
        dialog.path.setText(str(out))
        return ExportDialog.DialogCode.Accepted

    monkeypatch.setattr(ExportDialog, "exec", choose)
    window.open_run(str(trained_bundle.parent))
    assert window.current_page() == "Results"
    assert window.results_page.export_button.isEnabled()
    qtbot.mouseClick(window.results_page.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(window.export_boxes or window.error_boxes), timeout=60000)
    assert not window.error_boxes, window.error_boxes[0].text()
    assert "probabilities match the model" in window.export_boxes[0].text()
    assert out.exists() and out.with_name("audio.onnx.json").exists()
