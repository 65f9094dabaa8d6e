"""Results page: a click on a confusion-matrix cell lists its test files (error browser)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox


def results_page_of(qtbot, run_dir: Path, modality: str):
    from discomkd_gui.app import create_application
    from discomkd_gui.pages.results_page import ResultsPage

    create_application([])
    page = ResultsPage()
    qtbot.addWidget(page)
    page.resize(1024, 700)
    page.show()
    qtbot.waitExposed(page)
    page.show_run(str(run_dir))
    page.modality.setCurrentText(modality)
    return page


def click_cell(qtbot, page, true_index: int, predicted_index: int) -> None:
    point = page.confusion.cell_centre(true_index, predicted_index).toPoint()
    qtbot.mouseClick(page.confusion, Qt.MouseButton.LeftButton, pos=point)


def test_clicking_a_cell_lists_its_test_files_with_classes_and_preview(qtbot, trained_bundle):
    page = results_page_of(qtbot, trained_bundle.parent, "audio")
    matrix = page.confusion.matrix()
    # The busiest wrong cell if there is one, else the first class's correct cell.
    cells = [(matrix[t][p], t, p) for t in range(len(matrix)) for p in range(len(matrix)) if t != p and matrix[t][p]]
    _, true_index, predicted_index = max(cells) if cells else (matrix[0][0], 0, 0)

    click_cell(qtbot, page, true_index, predicted_index)

    browser = page.error_dialog.browser
    assert page.error_dialog.isVisible()
    assert browser.table.rowCount() == matrix[true_index][predicted_index] > 0
    classes = page.classes
    for r in range(browser.table.rowCount()):
        assert browser.table.item(r, 1).text() == classes[true_index]
        assert browser.table.item(r, 2).text() == classes[predicted_index]
    selected = browser.selected_file()
    assert Path(selected.path).is_file() and Path(selected.path).parent.name == classes[true_index]
    assert not browser.thumbnail.pixmap().isNull()  # the recording's spectrogram
    assert "spectrogram" in browser.detail.text()
    assert browser.bars.items()[0][0] == classes[predicted_index]


def test_the_list_is_copied_and_exported_without_overwriting_silently(qtbot, trained_bundle, tmp_path, monkeypatch):
    page = results_page_of(qtbot, trained_bundle.parent, "image")
    click_cell(qtbot, page, 0, 0)
    browser = page.error_dialog.browser
    n = browser.table.rowCount()
    assert n > 0

    browser.copy_button.click()
    copied = list(csv.reader(io.StringIO(QApplication.clipboard().text()), delimiter="\t"))
    assert copied[0][:4] == ["file", "modality", "true_class", "predicted_class"] and len(copied) == n + 1

    destination = tmp_path / "cell.csv"
    assert browser.export_csv(str(destination)) == str(destination)
    rows = list(csv.DictReader(destination.open(encoding="utf-8")))
    assert len(rows) == n and {r["true_class"] for r in rows} == {page.classes[0]}

    destination.write_text("keep me", encoding="utf-8")
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kw: asked.append(args) or QMessageBox.StandardButton.No)
    assert browser.export_csv(str(destination)) is None
    assert asked and destination.read_text(encoding="utf-8") == "keep me"

    opened = []
    monkeypatch.setattr("discomkd_gui.widgets.error_browser.QDesktopServices.openUrl", lambda url: opened.append(url))
    browser.open_button.click()
    assert Path(opened[0].toLocalFile()) == Path(browser.selected_file().path).parent


def test_a_run_without_test_files_says_why(qtbot, trained_bundle, tmp_path):
    import shutil

    from discomkd.storage import runs

    old_run = tmp_path / "old-run"
    shutil.copytree(trained_bundle.parent, old_run)
    (old_run / runs.TEST_PREDICTIONS_FILE).unlink()
    page = results_page_of(qtbot, old_run, "image")
    click_cell(qtbot, page, 0, 0)
    browser = page.error_dialog.browser
    assert browser.table.rowCount() == 0
    assert "without its test files" in browser.heading.text()


def test_the_export_never_replaces_a_test_file_nor_writes_into_the_data_folder(qtbot, trained_bundle, tmp_path,
                                                                                monkeypatch):
    import json
    import shutil

    from discomkd.storage import runs

    # A copy of the run whose test files are a copy of the data, so that a failure harms no other test.
    run_dir = tmp_path / "run"
    shutil.copytree(trained_bundle.parent, run_dir)
    predictions = json.loads((run_dir / runs.TEST_PREDICTIONS_FILE).read_text(encoding="utf-8"))
    image = predictions["modalities"]["image"]
    shutil.copytree(image["folder"], tmp_path / "image-data")
    image["folder"] = str(tmp_path / "image-data")
    (run_dir / runs.TEST_PREDICTIONS_FILE).write_text(json.dumps(predictions), encoding="utf-8")

    page = results_page_of(qtbot, run_dir, "image")
    click_cell(qtbot, page, 0, 0)
    browser = page.error_dialog.browser
    errors = []
    browser.error.connect(lambda message, details: errors.append(message))
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kw: QMessageBox.StandardButton.Yes)
    test_file = Path(browser.files[0].path)
    before = test_file.read_bytes()

    # Even when the user agrees to replace it, a listed test file (the run's data) is never replaced...
    assert browser.export_csv(str(test_file)) is None
    assert test_file.read_bytes() == before and "one of this command's inputs" in errors[-1]
    # ... nor is the list written inside the data folder (the next training would read it as data).
    inside = test_file.parent / "cell.csv"
    assert browser.export_csv(str(inside)) is None
    assert not inside.exists() and "inside" in errors[-1] and str(tmp_path / "image-data") in errors[-1]
    # A folder is not a file name.
    assert browser.export_csv(str(tmp_path)) is None and "is a folder" in errors[-1]
