"""Error browser: the test files of one confusion-matrix cell, each with its thumbnail (image,
spectrogram or signal plot), true and predicted class and probabilities; open a file's folder,
copy the list or export it as CSV.

The predictions come from the run folder (written by the engine at the end of training); this
widget only shows them, and decodes the one selected file for its thumbnail.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..pages.common import fmt_score, read_only_table, table_item
from .probability_bars import ProbabilityBars
from .thumbnails import thumbnail_pixmap

THUMBNAIL_SIZE = 160
TOP_CLASSES = 5


class ErrorBrowser(QWidget):
    """The files of one cell. ``show_cell`` fills it; ``error(message, details)`` reports failures."""

    error = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.files: list = []  # TestFilePrediction of the cell shown
        self.classes: list[str] = []
        self.spec = None  # the modality's ModalitySpec, to draw thumbnails as the model saw the files
        self.data_folder: str | None = None  # the modality's data folder: an export never writes inside it
        self.last_folder = str(Path.home())
        layout = QVBoxLayout(self)
        self.heading = QLabel("Click a cell of the confusion matrix to see its test files.")
        self.heading.setObjectName("banner")
        self.heading.setWordWrap(True)
        layout.addWidget(self.heading)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.setChildrenCollapsible(False)
        self.table = read_only_table(["File", "True", "Predicted", "P(predicted)", "P(true)"])
        self.table.setSortingEnabled(True)
        self.table.itemSelectionChanged.connect(self._show_selected)
        self.table.itemDoubleClicked.connect(lambda *_: self.open_folder())
        split.addWidget(self.table)
        split.addWidget(self._build_file_detail())
        split.setSizes([600, 260])
        layout.addWidget(split, 1)
        layout.addLayout(self._build_actions())

    def _build_file_detail(self) -> QWidget:
        """The selected file: its thumbnail, what it is, and its top class probabilities."""
        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.setContentsMargins(6, 0, 0, 0)
        self.thumbnail = QLabel()
        self.thumbnail.setObjectName("errorThumbnail")
        self.thumbnail.setFixedSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        dl.addWidget(self.thumbnail, 0, Qt.AlignmentFlag.AlignHCenter)
        self.detail = QLabel("")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        dl.addWidget(self.detail)
        self.bars = ProbabilityBars()
        dl.addWidget(self.bars)
        dl.addStretch(1)
        return detail

    def _build_actions(self) -> QHBoxLayout:
        """Open the file's folder, copy or export the list; enabled once a cell has files."""
        buttons = QHBoxLayout()
        self.open_button = QPushButton("Open the file's folder")
        self.open_button.setToolTip("Show the selected file in your file manager (double-click a row does the same)")
        self.open_button.clicked.connect(self.open_folder)
        self.copy_button = QPushButton("Copy list")
        self.copy_button.setToolTip("Copy the files with their classes and probabilities (tab-separated, pastes "
                                    "into a spreadsheet)")
        self.copy_button.clicked.connect(self.copy_list)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(lambda: self.export_csv())
        for b in (self.open_button, self.copy_button, self.export_button):
            buttons.addWidget(b)
            b.setEnabled(False)
        buttons.addStretch(1)
        return buttons

    # ----- filling ----------------------------------------------------------------------------
    def show_cell(self, modality: str, true_index: int, predicted_index: int, files: list, classes: list[str],
                  spec=None, data_folder: str | None = None) -> None:
        """Show ``files`` (TestFilePrediction of one cell) of ``modality``, whose data is in ``data_folder``."""
        self.files, self.classes, self.spec, self.data_folder = list(files), list(classes), spec, data_folder
        true_name, predicted_name = classes[true_index], classes[predicted_index]
        what = "correctly classified" if true_index == predicted_index else f"predicted as {predicted_name}"
        self.heading.setText(f"{modality}: {len(files)} test file(s) of class {true_name} {what}.")
        self.table.setSortingEnabled(False)
        self.table.clearSelection()
        self.table.setRowCount(len(self.files))
        from discomkd.storage.paths import printable_name

        for r, f in enumerate(self.files):
            name = table_item(printable_name(Path(f.path).name))
            name.setData(Qt.ItemDataRole.UserRole, r)
            name.setToolTip(printable_name(f.path))
            self.table.setItem(r, 0, name)
            self.table.setItem(r, 1, table_item(classes[f.true_index]))
            self.table.setItem(r, 2, table_item(classes[f.predicted_index]))
            self.table.setItem(r, 3, table_item(fmt_score(f.probabilities[f.predicted_index]), align_right=True))
            self.table.setItem(r, 4, table_item(fmt_score(f.probabilities[f.true_index]), align_right=True))
        self.table.setSortingEnabled(True)
        for b in (self.copy_button, self.export_button):
            b.setEnabled(bool(self.files))
        if self.files:
            self.table.selectRow(0)
        else:
            self._clear_detail()

    def selected_file(self):
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.files[self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)]

    def _clear_detail(self) -> None:
        self.thumbnail.clear()
        self.detail.setText("")
        self.bars.set_items([])
        self.open_button.setEnabled(False)

    def _show_selected(self) -> None:
        from discomkd.errors import DisComKDError
        from discomkd.storage.paths import printable_name

        f = self.selected_file()
        if f is None:
            self._clear_detail()
            return
        self.open_button.setEnabled(True)
        ranked = sorted(zip(self.classes, f.probabilities), key=lambda item: item[1], reverse=True)
        self.bars.set_items(ranked[:TOP_CLASSES])
        text = (f"<b>{printable_name(Path(f.path).name)}</b><br>true class <b>{self.classes[f.true_index]}</b>, "
                f"predicted <b>{self.classes[f.predicted_index]}</b> "
                f"({100 * f.probabilities[f.predicted_index]:.1f}%)")
        try:
            from discomkd.data.preview import thumbnail

            spec = self.spec
            thumb = thumbnail(f.path, spec.spectrogram if spec else None, spec.bands if spec else None,
                              spec.kind if spec else None)
            self.thumbnail.setPixmap(thumbnail_pixmap(thumb, THUMBNAIL_SIZE))
            text += f"<br>{thumb.description}"
        except (DisComKDError, OSError) as exc:
            self.thumbnail.clear()
            self.thumbnail.setText("no preview")
            moved = "" if Path(f.path).exists() else " (moved or deleted since the run)"
            text += f"<br>The file cannot be shown{moved}: {exc}"
        self.detail.setText(text)

    # ----- actions ----------------------------------------------------------------------------
    def open_folder(self) -> None:
        f = self.selected_file()
        if f is None:
            return
        folder = Path(f.path).parent
        if not folder.is_dir():
            self.error.emit(f"The folder '{folder}' no longer exists (moved or deleted since the run).", "")
            return
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def list_text(self, delimiter: str = ",") -> str:
        from discomkd.storage.runs import test_files_table

        return test_files_table(self.files, self.classes, delimiter)

    def copy_list(self) -> None:
        if self.files:
            QApplication.clipboard().setText(self.list_text("\t"))

    def export_csv(self, destination: str | None = None) -> str | None:
        """Write the list as CSV. A chosen file that exists is replaced only after the user agrees
        (the save dialog asks; a path given directly is asked here); never a listed test file, nor a
        file inside the data folder (storage/outputs.py)."""
        from discomkd.errors import DisComKDError
        from discomkd.storage.outputs import write_output_file

        if not self.files:
            return None
        if not destination:
            destination, _ = QFileDialog.getSaveFileName(self, "Export the test files", str(Path(self.last_folder) / "test_files.csv"),
                                                         "CSV files (*.csv)")
            if not destination:
                return None
        elif Path(destination).exists():
            answer = QMessageBox.question(self, "Replace the file?",
                                          f"'{destination}' already exists. Replace it with this list?",
                                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                          QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return None
        text = self.list_text(",")
        try:  # replacing was agreed above; the test files are never replaced, nothing is written in their data folder
            write_output_file(destination, lambda fh: fh.write(text), [f.path for f in self.files],
                              replace=True, text=True, what="the CSV file", data_folders=[self.data_folder])
        except DisComKDError as exc:  # an input, a folder, a full disk, a read-only folder: the message says which
            self.error.emit(str(exc), "")
            return None
        self.last_folder = str(Path(destination).parent)
        return destination


class ErrorBrowserDialog(QDialog):
    """The error browser in its own window beside the Results page (not modal: click another cell
    and it follows)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("errorBrowserDialog")
        self.setWindowTitle("Test files of a confusion-matrix cell")
        self.browser = ErrorBrowser(self)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        self.resize(900, 520)
