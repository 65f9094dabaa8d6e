"""Results page: test metrics per modality, per-class table, confusion matrix, and the 2-D
projection of z_inv and z_inf that shows whether the disentanglement worked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QPushButton,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..widgets.confusion_matrix import ConfusionMatrixView
from ..widgets.reliability_diagram import ReliabilityDiagram
from .common import PageHeader, fit_table_height, hint_label, read_only_table, score_item, table_item
from .train_page import MODALITY_COLOURS, _style_plot

CLASS_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363",
)


class ResultsPage(QWidget):
    """Signals: ``export_for_device(bundle_path)`` for the model shown, ``error(message, details)``."""

    export_for_device = Signal(str)
    error = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bundle_path: str | None = None
        self.metrics: dict[str, dict] = {}
        self.classes: list[str] = []
        self.embeddings: dict | None = None
        self.test_predictions = None  # the run's per-file TestPredictions, for the error browser
        self.specs: dict[str, dict] = {}  # modality -> spec (as in run.json), to draw its files
        self.error_dialog = None
        self._predictions_note = "No test files: train a model, or open a run on the Runs page."

        layout = QVBoxLayout(self)
        layout.addWidget(self._build_header())
        self.title = QLabel("No results yet: train a model, or open a run on the Runs page.")
        self.title.setObjectName("banner")
        self.title.setWordWrap(True)
        layout.addWidget(self.title)
        self.summary = read_only_table(["Modality", "Accuracy", "Weighted F1", "Macro F1", "Best epoch", "Test samples"])
        self.summary.setObjectName("summaryTable")
        fit_table_height(self.summary, 2)
        self.summary.currentCellChanged.connect(lambda row, *_: self._select_row(row))
        layout.addWidget(self.summary)
        self.tabs = QTabWidget()
        layout.addWidget(self.tabs, 1)
        self.tabs.addTab(self._build_metrics_tab(), "Metrics per modality")
        self.tabs.addTab(self._build_embeddings_tab(), "Embeddings (disentanglement)")
        self.tabs.addTab(self._build_calibration_tab(), "Calibration")

    def _build_header(self) -> PageHeader:
        header = PageHeader(
            "Results",
            "Each modality's classifier on its own test split, with the best epoch chosen on validation.",
        )
        self.export_button = QPushButton("Export for a device…")
        self.export_button.setToolTip("One modality's classifier as ONNX or TorchScript, with its preprocessing")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(lambda: self.bundle_path and self.export_for_device.emit(self.bundle_path))
        header.buttons.addWidget(self.export_button)
        return header

    def _build_metrics_tab(self) -> QWidget:
        """One modality at a time: its per-class table beside its confusion matrix (cells open their files)."""
        tab = QWidget()
        layout = QVBoxLayout(tab)
        pick = QHBoxLayout()
        pick.addWidget(QLabel("Modality"))
        self.modality = QComboBox()
        self.modality.setMinimumWidth(160)
        self.modality.currentTextChanged.connect(self._show_modality)
        pick.addWidget(self.modality)
        pick.addStretch(1)
        layout.addLayout(pick)
        split = QSplitter(Qt.Orientation.Horizontal)
        per_class_box = QGroupBox("Per class (test split)")
        self.per_class = read_only_table(["Class", "Precision", "Recall", "F1", "Support"])
        self.per_class.setSortingEnabled(True)
        QVBoxLayout(per_class_box).addWidget(self.per_class)
        split.addWidget(per_class_box)
        cm_box = QGroupBox("Confusion matrix")
        cm_layout = QVBoxLayout(cm_box)
        self.confusion = ConfusionMatrixView()
        self.confusion.cell_clicked.connect(self.open_cell)
        self.cell_hint = hint_label("Click a cell to see its test files.")
        cm_layout.addWidget(self.cell_hint)
        cm_layout.addWidget(self.confusion)
        split.addWidget(cm_box)
        split.setSizes([440, 400])  # the per-class columns fit beside the matrix in a 1024-pixel window
        layout.addWidget(split, 1)
        return tab

    def _build_embeddings_tab(self) -> QWidget:
        """z_inv and z_inf of the test samples side by side, coloured by modality or by class."""
        tab = QWidget()
        layout = QVBoxLayout(tab)
        row = QHBoxLayout()
        row.addWidget(QLabel("Colour by"))
        self.colour_by = QComboBox()
        self.colour_by.addItem("modality", "modality")
        self.colour_by.addItem("class", "label")
        self.colour_by.currentIndexChanged.connect(self._draw_embeddings)
        row.addWidget(self.colour_by)
        row.addWidget(hint_label(
            "Test samples projected to 2-D (PCA). Disentanglement worked when z_inv mixes the modalities "
            "(shared, modality-invariant) while z_inf separates them (modality-informative); "
            "both should group by class.", wrap=True), 1)
        layout.addLayout(row)
        plots = QHBoxLayout()
        pg.setConfigOptions(antialias=True, background="w", foreground="#333333")
        self.inv_widget = pg.PlotWidget()
        self.inf_widget = pg.PlotWidget()
        for widget, title in ((self.inv_widget, "z_inv: invariant embedding"), (self.inf_widget, "z_inf: informative embedding")):
            _style_plot(widget.getPlotItem(), title, "PC 2", "a.u.", "PC 1 (a.u.)")
            widget.getPlotItem().setClipToView(False)
            widget.getPlotItem().addLegend(offset=(-8, 8), colCount=2)
            plots.addWidget(widget)
        layout.addLayout(plots, 1)
        self.embedding_note = hint_label()
        layout.addWidget(self.embedding_note)
        return tab

    def _build_calibration_tab(self) -> QWidget:
        """One reliability diagram per modality (filled by ``_draw_calibration``)."""
        tab = QWidget()
        layout = QVBoxLayout(tab)
        explain = hint_label(
            "Probabilities are calibrated: each modality's scores are divided by one temperature fitted on the "
            "validation split, so that an answer given with 80% is right about 80% of the time; the predicted class "
            "never changes. Test split, 15 confidence bins: bars show the accuracy of the calibrated answers per "
            "bin, the grey line the same answers before calibration, the dashed diagonal a perfect calibration. "
            "ECE is the expected calibration error (0 is perfect).", wrap=True)
        layout.addWidget(explain)
        self.calibration_grid = QGridLayout()
        layout.addLayout(self.calibration_grid, 1)
        self.calibration_note = hint_label(wrap=True)
        layout.addWidget(self.calibration_note)
        self.reliability_diagrams: dict[str, ReliabilityDiagram] = {}
        return tab

    # ----- filling ----------------------------------------------------------------------------
    def show_run(self, run_dir: str) -> None:
        """Results of a run folder: test metrics from its record, projections from its embeddings."""
        from discomkd.storage import runs

        record = runs.read_run_record(run_dir)
        try:
            embeddings = runs.load_embeddings(run_dir)
        except (OSError, ValueError):
            embeddings = None
        bundle = Path(run_dir) / runs.BUNDLE_FILE
        self._set_bundle(str(bundle) if bundle.exists() else None)
        self._set_test_predictions(run_dir, record.get("specs", {}))
        name = record.get("name", run_dir)
        status = record.get("status", "?")
        self.show_metrics(record.get("test_metrics", {}), record.get("classes", []), embeddings,
                          f"Run “{name}” — {status}, {record.get('epochs_done', 0)} epoch(s). {record.get('reason', '')}")

    def show_bundle(self, bundle) -> None:
        self._set_bundle(bundle.path)
        self.test_predictions, self.specs = None, {}
        self._predictions_note = "A model opened from a file carries no test files; open its run on the Runs page."
        name = bundle.metadata.get("run_name") or bundle.path
        self.show_metrics(bundle.test_metrics, bundle.classes, None, f"Model “{name}” (opened from a file; no embeddings stored)")

    def _set_test_predictions(self, run_dir: str, specs: dict) -> None:
        from discomkd.errors import DataError
        from discomkd.storage import runs

        self.specs = specs
        try:
            self.test_predictions = runs.read_test_predictions(run_dir)
            self._predictions_note = ("This run was saved without its test files (trained before they were kept, "
                                      "or stopped before its first epoch). Continue it for one epoch to get them.")
        except DataError as exc:
            self.test_predictions = None
            self._predictions_note = str(exc)

    def open_cell(self, true_index: int, predicted_index: int) -> None:
        """Show the test files of one confusion-matrix cell of the modality shown."""
        from discomkd.data.spec import ModalitySpec

        from ..widgets.error_browser import ErrorBrowserDialog

        modality = self.modality.currentText()
        if self.error_dialog is None:
            self.error_dialog = ErrorBrowserDialog(self)
            self.error_dialog.browser.error.connect(self.error)
        browser = self.error_dialog.browser
        if self.test_predictions is None or modality not in self.test_predictions.by_modality:
            browser.show_cell(modality, true_index, predicted_index, [], self.classes)
            browser.heading.setText(getattr(self, "_predictions_note", "No test files for this model."))
        else:
            spec = ModalitySpec.from_dict(self.specs[modality]) if modality in self.specs else None
            files = self.test_predictions.in_cell(modality, true_index, predicted_index)
            browser.show_cell(modality, true_index, predicted_index, files, self.test_predictions.classes, spec,
                              self.test_predictions.folders.get(modality))
        self.error_dialog.show()
        self.error_dialog.raise_()

    def _set_bundle(self, path: str | None) -> None:
        self.bundle_path = path
        self.export_button.setEnabled(path is not None)

    def show_metrics(self, metrics: dict, classes: list[str], embeddings: dict | None, title: str) -> None:
        self.metrics = metrics or {}
        self.classes = list(classes)
        self.embeddings = embeddings
        self.title.setText(title if self.metrics else title + " — no test results (the run has no saved model).")
        self.summary.setRowCount(len(self.metrics))
        for r, (modality, m) in enumerate(self.metrics.items()):
            support = sum(int(c.get("support", 0)) for c in m.get("per_class", []))
            self.summary.setItem(r, 0, table_item(modality))
            for c, key in enumerate(("accuracy", "weighted_f1", "macro_f1"), start=1):
                self.summary.setItem(r, c, score_item(m.get(key)))
            self.summary.setItem(r, 4, table_item(m.get("best_epoch", "—")))
            self.summary.setItem(r, 5, table_item(support))
        fit_table_height(self.summary, max(1, len(self.metrics)))
        self.modality.blockSignals(True)
        self.modality.clear()
        self.modality.addItems(list(self.metrics))
        self.modality.blockSignals(False)
        if self.metrics:
            self.summary.selectRow(0)
            self._show_modality(self.modality.currentText())
        else:
            self.per_class.setRowCount(0)
            self.confusion.set_matrix([], [])
        self._draw_embeddings()
        self._draw_calibration()

    def _draw_calibration(self) -> None:
        while self.calibration_grid.count():
            widget = self.calibration_grid.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        self.reliability_diagrams = {}
        measured = {n: m for n, m in self.metrics.items() if m.get("reliability")}
        columns = min(3, max(1, len(measured)))
        for k, (modality, m) in enumerate(measured.items()):
            diagram = ReliabilityDiagram()
            title = (f"{modality}: ECE {m['ece_uncalibrated']:.3f} → {m['ece']:.3f} (temperature {m['temperature']:.2f})"
                     if m.get("calibrated_on") else f"{modality}: not calibrated (no validation split), ECE {m['ece']:.3f}")
            diagram.set_bins(title, m["reliability"]["calibrated"], m["reliability"]["uncalibrated"])
            self.reliability_diagrams[modality] = diagram
            self.calibration_grid.addWidget(diagram, k // columns, k % columns)
        missing = [n for n in self.metrics if n not in measured]
        self.calibration_note.setText(
            "" if not missing else f"No calibration measured for {', '.join(missing)}: the model was trained before "
            "calibration existed (its probabilities are uncalibrated; `discomkd continue` refits it).")

    def _select_row(self, row: int) -> None:
        if 0 <= row < self.modality.count():
            self.modality.setCurrentIndex(row)

    def _show_modality(self, modality: str) -> None:
        m = self.metrics.get(modality)
        if not m:
            return
        rows = m.get("per_class", [])
        self.per_class.setSortingEnabled(False)
        self.per_class.setRowCount(len(rows))
        for r, c in enumerate(rows):
            self.per_class.setItem(r, 0, table_item(c.get("class")))
            for col, key in enumerate(("precision", "recall", "f1"), start=1):
                self.per_class.setItem(r, col, score_item(c.get(key)))
            self.per_class.setItem(r, 4, table_item(int(c.get("support", 0))))
        self.per_class.setSortingEnabled(True)
        self.confusion.set_matrix(m.get("confusion", []), self.classes)

    def _draw_embeddings(self) -> None:
        for widget in (self.inv_widget, self.inf_widget):
            plot = widget.getPlotItem()
            plot.clear()
            if plot.legend is not None:
                plot.legend.clear()
        e = self.embeddings
        if not e or "inv_2d" not in e or len(e["inv_2d"]) == 0:
            self.embedding_note.setText("No embeddings for this model (they are saved at the end of a training run).")
            return
        by = self.colour_by.currentData()
        names = [str(n) for n in e.get("modality_names", [])]
        groups = np.asarray(e[by])
        if by == "modality":
            labels = names or [str(g) for g in sorted(set(groups.tolist()))]
            colours = MODALITY_COLOURS
        else:
            labels = self.classes or [str(g) for g in sorted(set(groups.tolist()))]
            colours = CLASS_COLOURS
        symbols = ("o", "t", "s", "d", "+", "x", "star", "p")
        modality_index = np.asarray(e["modality"])
        for widget, key in ((self.inv_widget, "inv_2d"), (self.inf_widget, "inf_2d")):
            points = np.asarray(e[key], dtype=np.float64)
            plot = widget.getPlotItem()
            for g, label in enumerate(labels):
                mask = groups == g
                if not mask.any():
                    continue
                colour = colours[g % len(colours)]
                symbol = symbols[g % len(symbols)] if by == "modality" else "o"
                item = pg.ScatterPlotItem(points[mask, 0], points[mask, 1], size=6, symbol=symbol,
                                          brush=pg.mkBrush(colour + "b0"), pen=None, name=str(label))
                plot.addItem(item)
            plot.autoRange()
        per_mod = ", ".join(f"{n}: {int((modality_index == k).sum())}" for k, n in enumerate(names))
        self.embedding_note.setText(f"{len(groups)} test samples ({per_mod}). Axes are the first two principal components.")
