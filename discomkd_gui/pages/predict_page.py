"""Predict page: drop files or folders, see each file's modality, thumbnail and top-k classes.

Each file is routed to its modality by the engine (kind and shape); when several modalities fit,
the user is asked. A few files are shown as cards; many become a sortable table with CSV export.
Probabilities are the engine's calibrated ones; answers below a confidence threshold (each
modality's default from its validation split, or one the user sets) are flagged as uncertain.
Prediction runs in a background job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from discomkd.storage.paths import printable_name

from ..jobs import Job, TaskState, start_job
from ..widgets.drop_zone import DropZone
from ..widgets.probability_bars import ProbabilityBars
from ..widgets.thumbnails import thumbnail_pixmap
from .common import PageHeader, hint_label, read_only_table, table_item

GALLERY_LIMIT = 12  # more files than this are shown as a table
UNCERTAIN_COLOUR = "#b35c00"
UNCERTAIN_HINT = "Answers whose (calibrated) confidence is below this are marked uncertain in the cards, the table and the CSV"


@dataclass
class PredictedFile:
    """One row of the page: the engine's Prediction or PredictionFailure, and a thumbnail if readable."""

    result: object
    thumbnail: object | None

    @property
    def ok(self) -> bool:
        return hasattr(self.result, "label")


def load_predictor(state: TaskState, path: str):
    from discomkd.inference.predict import Predictor

    state.set_progress(0.0, "Loading the model…")
    return Predictor.from_path(path)


def predict_paths(state: TaskState, predictor, paths: list[str], modality: str | None) -> list[PredictedFile]:
    """Job: expand folders, predict each file, make thumbnails; a bad file is a row, never an error."""
    from discomkd.data.preview import thumbnail
    from discomkd.inference.predict import Prediction, PredictionFailure, expand_paths

    files = expand_paths(paths)
    out: list[PredictedFile] = []
    for i, path in enumerate(files):
        if state.is_interrupted:
            break
        state.set_progress(i / max(1, len(files)), f"Predicting {printable_name(path.name)} ({i + 1}/{len(files)})")
        result = predictor.predict_files([path], modality)[0]  # a bad file is a failure entry, never an exception
        thumb = None
        if isinstance(result, Prediction):  # a file that could not be predicted gets no (costly) preview
            try:
                spec = predictor.specs[result.modality]
                thumb = thumbnail(path, spec.spectrogram, spec.bands, spec.kind)
            except Exception:  # noqa: BLE001 - a preview is cosmetic: never lose the prediction over it
                thumb = None
        if isinstance(result, PredictionFailure) and not result.message:
            result.message = f"'{path.name}' could not be predicted."
        out.append(PredictedFile(result, thumb))
    state.set_progress(1.0, f"{len(out)} file(s) done")
    return out


class ResultCard(QFrame):
    """One file: thumbnail, answer with its confidence (flagged when uncertain), top-k bars."""

    def __init__(self, item: PredictedFile, top_k: int, uncertain_below: float | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        self.item = item
        self.uncertain = item.ok and item.result.is_uncertain(uncertain_below)
        row = QHBoxLayout(self)
        row.addWidget(self._picture())
        col = QVBoxLayout()
        name = QLabel(printable_name(Path(item.result.path).name))
        name.setObjectName("cardTitle")
        name.setToolTip(printable_name(item.result.path))
        col.addWidget(name)
        if item.ok:
            self._add_answer(col, top_k, uncertain_below)
        else:
            self.label = QLabel("⚠ " + item.result.message)
            self.label.setObjectName("failureMessage")
            self.label.setWordWrap(True)
            col.addWidget(self.label)
        col.addStretch(1)
        row.addLayout(col, 1)

    def _picture(self) -> QLabel:
        pic = QLabel()
        pic.setFixedSize(104, 104)
        pic.setAlignment(Qt.AlignmentFlag.AlignCenter)
        pic.setObjectName("thumbnail")
        if self.item.thumbnail is not None:
            pic.setPixmap(thumbnail_pixmap(self.item.thumbnail, 100))
        else:
            pic.setText("no preview")
        return pic

    def _add_answer(self, col: QVBoxLayout, top_k: int, uncertain_below: float | None) -> None:
        """The class and its confidence (flagged when uncertain), then the top classes as bars."""
        r = self.item.result
        threshold = r.uncertain_below if uncertain_below is None else uncertain_below
        flag = (f" · <span style='color:{UNCERTAIN_COLOUR}; font-weight:600'>⚠ uncertain</span>"
                if self.uncertain else "")
        self.label = QLabel(f"<span style='font-size:15pt; font-weight:600'>{r.label}</span>"
                            f"&nbsp;&nbsp;{100 * r.confidence:.1f}% · modality <b>{r.modality}</b>{flag}")
        self.label.setObjectName("predictedLabel")
        if self.uncertain:
            self.label.setToolTip(f"Confidence below {100 * threshold:.0f}%: check this answer.")
        col.addWidget(self.label)
        self.bars = ProbabilityBars()
        self.bars.set_items(r.top(top_k))
        col.addWidget(self.bars)


class PredictPage(QWidget):
    """Signals: ``predictions_ready(list[PredictedFile])``, ``model_loaded(bundle)``, ``error``."""

    predictions_ready = Signal(list)
    model_loaded = Signal(object)
    error = Signal(str, str)
    open_model_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.predictor = None
        self.model_path: str | None = None
        self.dropped_paths: list[str] = []  # files and folders classified: a CSV never replaces one
        self.items: list[PredictedFile] = []
        self.job: Job | None = None
        self._pending: list[tuple[list[str], str | None]] = []
        self.last_folder = str(Path.home())

        layout = QVBoxLayout(self)
        layout.addWidget(self._build_header())
        self.model_label = QLabel("No model yet: train one, open a run on the Runs page, or open a model file.")
        self.model_label.setObjectName("banner")
        self.model_label.setWordWrap(True)
        layout.addWidget(self.model_label)
        layout.addWidget(self._build_drop_zone())
        layout.addLayout(self._build_toolbar())
        layout.addWidget(self._build_result_views(), 1)
        self.set_enabled_for_model(False)

    def _build_header(self) -> PageHeader:
        header = PageHeader(
            "Predict",
            "Drop files or folders from any one modality. Each file goes to its modality's classifier; "
            "no other modality is needed.",
        )
        self.open_button = QPushButton("Open model…")
        self.open_button.setToolTip("Open a .discomkd model file (Ctrl+Shift+M)")
        self.open_button.clicked.connect(self.open_model_requested)
        header.buttons.addWidget(self.open_button)
        return header

    def _build_drop_zone(self) -> DropZone:
        """Where files are dropped, with buttons to choose them instead."""
        self.drop_zone = DropZone("Drop files or folders here to classify them",
                                  "PNG, JPEG, BMP, TIFF, .npy or WAV — images and recordings can be mixed")
        choose = QHBoxLayout()
        choose.addStretch(1)
        self.files_button = QPushButton("Choose files…")
        self.folder_button = QPushButton("Choose folder…")
        choose.addWidget(self.files_button)
        choose.addWidget(self.folder_button)
        choose.addStretch(1)
        self.drop_zone.extra.addLayout(choose)
        self.drop_zone.setMaximumHeight(150)
        self.drop_zone.dropped.connect(self.predict)
        self.files_button.clicked.connect(self.choose_files)
        self.folder_button.clicked.connect(self.choose_folder)
        return self.drop_zone

    def _build_toolbar(self) -> QHBoxLayout:
        """The status, how answers are shown (top classes, the uncertainty threshold, cards or table), export."""
        bar = QHBoxLayout()
        self.status = hint_label(wrap=True)  # a long message wraps rather than widening the page past 1024 px
        bar.addWidget(self.status, 1)
        bar.addWidget(QLabel("Top classes shown"))
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 20)
        self.top_k.setValue(3)
        self.top_k.valueChanged.connect(self._render)
        bar.addWidget(self.top_k)
        bar.addWidget(QLabel("Flag answers below"))
        self.uncertain_below = QSpinBox()
        self.uncertain_below.setRange(0, 100)
        self.uncertain_below.setSuffix("%")
        # 0 shows the special text: each modality's threshold from its validation split, stored in the model.
        self.uncertain_below.setSpecialValueText("model default")
        self.uncertain_below.setToolTip(UNCERTAIN_HINT)
        self.uncertain_below.valueChanged.connect(self._render)
        bar.addWidget(self.uncertain_below)
        self.view_button = QPushButton("Show as table")
        self.view_button.setCheckable(True)
        self.view_button.toggled.connect(self._toggle_view)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self.export_csv)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        for b in (self.view_button, self.export_button, self.clear_button):
            bar.addWidget(b)
        return bar

    def _build_result_views(self) -> QStackedWidget:
        """Cards for a few files, a sortable table for many (or when the user asks)."""
        self.stack = QStackedWidget()
        self.gallery_scroll = QScrollArea()
        self.gallery_scroll.setWidgetResizable(True)
        self.gallery = QWidget()
        self.gallery_grid = QGridLayout(self.gallery)
        self.gallery_grid.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.gallery_scroll.setWidget(self.gallery)
        self.table = read_only_table(["File", "Modality", "Prediction", "Confidence", "Uncertain", "Message"],
                                     stretch_column=5)
        self.table.setSortingEnabled(True)
        self.stack.addWidget(self.gallery_scroll)
        self.stack.addWidget(self.table)
        return self.stack

    # ----- model ----------------------------------------------------------------------------
    def set_enabled_for_model(self, has_model: bool) -> None:
        for w in (self.drop_zone, self.files_button, self.folder_button):
            w.setEnabled(has_model)
        self.export_button.setEnabled(bool(self.items))

    def load_model(self, path: str) -> Job:
        """Load a bundle in the background; ``model_loaded`` fires when it is ready."""
        self.status.setText("Loading the model…")
        self._model_job = start_job(self, "load-model", lambda state: load_predictor(state, path),
                                    on_result=lambda predictor: self._on_model(predictor, path),
                                    on_error=self._on_job_failed, on_done=self._job_done)
        return self._model_job

    def _on_model(self, predictor, path: str) -> None:
        self.predictor = predictor
        self.model_path = path
        bundle = predictor.bundle
        parts = [f"<b>{n}</b> ({s.describe()})" for n, s in predictor.specs.items()]
        name = bundle.metadata.get("run_name") or Path(path).name
        self.model_label.setText(f"Model “{name}”: {len(bundle.classes)} classes · modalities " + "; ".join(parts)
                                 + "<br>" + self._calibration_text(bundle))
        self.model_label.setToolTip(path)
        self.uncertain_below.setToolTip(UNCERTAIN_HINT + " (model default: " + ", ".join(
            f"{n} {100 * bundle.uncertain_below(n):.0f}%" for n in predictor.specs) + ")")
        self.status.setText("Model ready. Drop files to classify them.")
        self.set_enabled_for_model(True)
        self.model_loaded.emit(bundle)

    @staticmethod
    def _calibration_text(bundle) -> str:
        from discomkd.model.calibration import is_calibrated  # torch is loaded with the model by now

        calibrated = [n for n in bundle.modality_names if is_calibrated(bundle.calibration(n))]
        defaults = ", ".join(f"{n} {100 * bundle.uncertain_below(n):.0f}%" for n in bundle.modality_names)
        if len(calibrated) == len(bundle.modality_names):
            text = "Probabilities calibrated on the validation split"
        elif calibrated:
            text = f"Probabilities calibrated for {', '.join(calibrated)} only (the others had no validation split)"
        else:
            text = "Probabilities not calibrated (no validation split, or a model from before calibration)"
        return f"{text}; answers below {defaults} are flagged as uncertain by default."

    def uncertain_threshold(self) -> float | None:
        """The threshold the user set, or None for each modality's default from the model."""
        value = self.uncertain_below.value()
        return None if value == 0 else value / 100

    # ----- predicting -------------------------------------------------------------------------
    def choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Choose files to classify", self.last_folder,
                                                "Data files (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.npy *.wav);;All files (*)")
        if paths:
            self.last_folder = str(Path(paths[0]).parent)
            self.predict(paths)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder to classify", self.last_folder)
        if folder:
            self.last_folder = folder
            self.predict([folder])

    def is_busy(self) -> bool:
        return self.job is not None and self.job.is_running()

    def predict(self, paths: list[str], modality: str | None = None, replace: bool = True) -> Job | None:
        if self.predictor is None:
            self.error.emit("Open or train a model first, then drop files to classify.", "")
            return None
        if self.is_busy():
            self._pending.append((paths, modality))
            return None
        predictor = self.predictor
        self._replace = replace
        self.dropped_paths = list(paths) if replace else self.dropped_paths + list(paths)
        self.job = start_job(self, "predict", lambda state: predict_paths(state, predictor, list(paths), modality),
                             on_progress=lambda fraction, message: self.status.setText(message),
                             on_result=self._on_predicted, on_error=self._on_job_failed, on_done=self._job_done)
        return self.job

    def _on_predicted(self, items: list[PredictedFile]) -> None:
        ambiguous = [i for i in items if not i.ok and i.result.candidates]
        ready = [i for i in items if i not in ambiguous]
        self.items = ready if self._replace else self.items + ready
        self._render()
        ok = sum(1 for i in self.items if i.ok)
        self.status.setText(f"{ok} of {len(self.items)} file(s) classified.")
        if ambiguous:
            self._ask_modality(ambiguous)
        self.predictions_ready.emit(self.items)

    def _ask_modality(self, ambiguous: list[PredictedFile]) -> None:
        candidates = ambiguous[0].result.candidates
        names = ", ".join(printable_name(Path(i.result.path).name) for i in ambiguous[:3]) + ("…" if len(ambiguous) > 3 else "")
        choice, ok = QInputDialog.getItem(
            self, "Which modality?",
            f"{len(ambiguous)} file(s) ({names}) fit several modalities of this model.\nWhich sensor recorded them?",
            candidates, 0, False)
        if ok and choice:
            self.predict([i.result.path for i in ambiguous], choice, replace=False)
        else:
            self.items += ambiguous
            self._render()

    def _on_job_failed(self, message: str, details: str) -> None:
        self.status.setText(message)
        self.error.emit(message, details)

    def _job_done(self) -> None:
        """A job ended: predict what was dropped while it ran."""
        if self._pending and not self.is_busy():
            paths, modality = self._pending.pop(0)
            self.predict(paths, modality)

    # ----- display ----------------------------------------------------------------------------
    def _render(self) -> None:
        while self.gallery_grid.count():
            w = self.gallery_grid.takeAt(0).widget()
            if w:
                w.deleteLater()
        self.cards: list[ResultCard] = []
        threshold = self.uncertain_threshold()
        if len(self.items) <= GALLERY_LIMIT:
            columns = 2
            for n, item in enumerate(self.items):
                card = ResultCard(item, self.top_k.value(), threshold)
                self.cards.append(card)
                self.gallery_grid.addWidget(card, n // columns, n % columns)
            for row in range(self.gallery_grid.rowCount()):
                self.gallery_grid.setRowStretch(row, 0)
            self.gallery_grid.setRowStretch((len(self.items) + columns - 1) // columns, 1)
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.items))
        for r, item in enumerate(self.items):
            res = item.result
            uncertain = "uncertain" if item.ok and res.is_uncertain(threshold) else ""
            cells = [printable_name(Path(res.path).name), getattr(res, "modality", "—"), getattr(res, "label", "—"),
                     round(res.confidence, 4) if item.ok else "—", uncertain, "" if item.ok else res.message]
            for c, v in enumerate(cells):
                cell = table_item(v)
                if c == 0:
                    cell.setToolTip(printable_name(res.path))
                if uncertain and c in (3, 4):
                    cell.setForeground(QColor(UNCERTAIN_COLOUR))
                self.table.setItem(r, c, cell)
        self.table.setSortingEnabled(True)
        many = len(self.items) > GALLERY_LIMIT
        self.view_button.setEnabled(not many)
        self.view_button.blockSignals(True)
        self.view_button.setChecked(many or self.view_button.isChecked())
        self.view_button.blockSignals(False)
        self.stack.setCurrentIndex(1 if self.view_button.isChecked() else 0)
        self.export_button.setEnabled(bool(self.items))

    def _toggle_view(self, table: bool) -> None:
        self.stack.setCurrentIndex(1 if table else 0)

    def clear(self) -> None:
        self.items = []
        self._render()
        self.status.setText("")

    def export_csv(self, destination: str | None = None, replace: bool = False) -> str | None:
        """Save the table as CSV. ``destination`` None asks for a file; the file dialog asks before
        replacing one, which counts as the user's consent. Never replaces a classified file or the model."""
        if not self.items or self.predictor is None:
            return None
        if not destination:
            destination, _ = QFileDialog.getSaveFileName(self, "Export predictions", str(Path(self.last_folder) / "predictions.csv"),
                                                         "CSV files (*.csv)")
            replace = True  # the dialog confirmed any overwrite
        if not destination:
            return None
        from discomkd.errors import DisComKDError
        from discomkd.inference.predict import write_predictions_csv

        try:
            write_predictions_csv([i.result for i in self.items], destination, self.predictor.classes, replace=replace,
                                  inputs=[p for p in (self.model_path, *self.dropped_paths) if p],
                                  uncertain_below=self.uncertain_threshold(),
                                  data_folders=[p for p in self.predictor.bundle.training_folders().values() if p])
        except DisComKDError as exc:  # an input, a folder, an unwritable or full disk: the message says which
            self.error.emit(str(exc), "")
            return None
        except OSError as exc:
            self.error.emit(f"Could not write '{destination}': {exc.strerror or exc}", "")
            return None
        self.status.setText(f"Saved {len(self.items)} row(s) to {destination}")
        return destination
