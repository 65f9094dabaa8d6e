"""Several runs side by side: their validation curves overlaid (one colour per run, one line style
per modality) and their test metrics in one table.

Curves are created once per (run, modality) and updated with ``setData``; a run that leaves the
selection has its curves removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSplitter, QVBoxLayout, QWidget

from ..pages.common import read_only_table, score_item, table_item
from ..pages.train_page import MODALITY_COLOURS, _style_plot

RUN_COLOURS = MODALITY_COLOURS
MODALITY_STYLES = (Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine)
STYLE_NAMES = ("solid", "dashed", "dotted", "dash-dot")
METRICS = {"weighted_f1": "weighted F1", "accuracy": "accuracy"}


@dataclass
class RunCurves:
    """What one run contributes: its name, validation history per modality and test metrics."""

    run_dir: str
    name: str
    created: str
    status: str
    epochs_done: int
    val: dict[str, dict[str, np.ndarray]]  # modality -> "epoch", "accuracy", "weighted_f1"
    test_metrics: dict[str, dict]


def read_run_curves(run_dir: str) -> RunCurves:
    """A run's validation curves and test metrics from its folder (DataError when unreadable)."""
    from discomkd.storage import runs

    record = runs.read_run_record(Path(run_dir))
    val: dict[str, dict[str, list[float]]] = {}
    for row in runs.read_history(Path(run_dir)):
        for modality, metrics in row.get("val", {}).items():
            series = val.setdefault(modality, {"epoch": [], "accuracy": [], "weighted_f1": []})
            series["epoch"].append(float(row["epoch"]))
            series["accuracy"].append(float(metrics["accuracy"]))
            series["weighted_f1"].append(float(metrics["weighted_f1"]))
    return RunCurves(str(run_dir), record.get("name", Path(run_dir).name), str(record.get("created", "")),
                     record.get("status", "unknown"),
                     int(record.get("epochs_done", 0) or 0),
                     {m: {k: np.asarray(v, dtype=np.float64) for k, v in s.items()} for m, s in val.items()},
                     record.get("test_metrics", {}) or {})


class RunsSideBySide(QWidget):
    """``set_runs(list of RunCurves)`` shows them; the metric chooser switches the curves' values."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runs: list[RunCurves] = []
        self.curves: dict[tuple[str, str], pg.PlotDataItem] = {}
        self.labels: dict[str, str] = {}  # run folder -> the name shown
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.heading = QLabel("Select runs in the table (Ctrl or Shift for several) to see them side by side.")
        self.heading.setObjectName("hint")
        self.heading.setWordWrap(True)
        row.addWidget(self.heading, 1)
        row.addWidget(QLabel("Validation"))
        self.metric = QComboBox()
        for key, label in METRICS.items():
            self.metric.addItem(label, key)
        self.metric.currentIndexChanged.connect(self._update_curves)
        row.addWidget(self.metric)
        layout.addLayout(row)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.setChildrenCollapsible(False)
        pg.setConfigOptions(antialias=True, background="w", foreground="#333333")
        self.plot_widget = pg.PlotWidget()
        self.plot_widget.setMinimumWidth(260)
        self.plot = self.plot_widget.getPlotItem()
        _style_plot(self.plot, "Validation per epoch", "score", None, "epoch")
        self.plot.setYRange(0, 1.02, padding=0)
        split.addWidget(self.plot_widget)
        # Short headers (full names in their tooltips): the table fits beside the plot in a 1024-pixel window.
        self.table = read_only_table(["Run", "Modality", "Acc.", "W. F1", "M. F1", "Best"], stretch_column=1)
        for column, tip in ((1, "The modality, and its line style in the plot"), (2, "Test accuracy"),
                            (3, "Test weighted F1"), (4, "Test macro F1"),
                            (5, "Best epoch: the one whose weights were kept (best validation weighted F1)")):
            self.table.horizontalHeaderItem(column).setToolTip(tip)
        self.table.setObjectName("runsMetricsTable")
        self.table.setSortingEnabled(True)
        self.table.setMinimumWidth(280)
        split.addWidget(self.table)
        split.setSizes([280, 540])
        layout.addWidget(split, 1)

    def set_runs(self, selected: list[RunCurves]) -> None:
        self.runs = list(selected)
        names = [r.name for r in self.runs]
        # Runs of the same name (the default is the modalities) are told apart by when they started.
        self.labels = {r.run_dir: f"{r.name} ({r.created[11:19]})" if names.count(r.name) > 1
                       else r.name for r in self.runs}
        wanted = {(r.run_dir, m) for r in self.runs for m in r.val}
        for key in [k for k in self.curves if k not in wanted]:
            curve = self.curves.pop(key)
            self.plot.removeItem(curve)
        for i, run in enumerate(self.runs):
            colour = RUN_COLOURS[i % len(RUN_COLOURS)]
            for j, modality in enumerate(run.val):
                key = (run.run_dir, modality)
                pen = pg.mkPen(colour, width=2, style=MODALITY_STYLES[j % len(MODALITY_STYLES)])
                if key not in self.curves:
                    # A symbol on each point: a run of one epoch still shows (a lone point draws no line).
                    self.curves[key] = self.plot.plot(pen=pen, symbol="o", symbolSize=5, symbolBrush=colour,
                                                      symbolPen=None)
                else:  # the run's place in the selection, so its colour, may have changed
                    self.curves[key].setPen(pen)
                    self.curves[key].setSymbolBrush(colour)
        self._update_curves()
        self._fill_table()
        if not self.runs:
            self.heading.setText("Select runs in the table (Ctrl or Shift for several) to see them side by side.")
        else:
            self.heading.setText(f"{len(self.runs)} run(s): one colour per run (as its name in the table), one line "
                                 "style per modality.")

    def _update_curves(self) -> None:
        metric = self.metric.currentData()
        last_epoch = 1.0
        for run in self.runs:
            for modality, series in run.val.items():
                self.curves[(run.run_dir, modality)].setData(series["epoch"], series[metric])
                if series["epoch"].size:
                    last_epoch = max(last_epoch, float(series["epoch"][-1]))
        self.plot.setLabel("left", f"validation {METRICS[metric]}")
        self.plot.setXRange(0, last_epoch, padding=0.02)

    def _fill_table(self) -> None:
        # The table is the plot's legend: the run's name in its colour, the modality with its line style.
        rows = [(i, run, modality, m) for i, run in enumerate(self.runs)
                for modality, m in (run.test_metrics or {"— (no test results)": {}}).items()]
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(rows))
        for r, (i, run, modality, m) in enumerate(rows):
            name = table_item(self.labels[run.run_dir])
            name.setForeground(QColor(RUN_COLOURS[i % len(RUN_COLOURS)]))
            bold = name.font()
            bold.setBold(True)
            name.setFont(bold)
            name.setToolTip(f"{run.name}, {run.status}, {run.epochs_done} epoch(s)\n{run.run_dir}")
            self.table.setItem(r, 0, name)
            styles = list(run.val)
            style = f" ({STYLE_NAMES[styles.index(modality) % len(STYLE_NAMES)]})" if modality in styles else ""
            self.table.setItem(r, 1, table_item(modality + style))
            for c, key in enumerate(("accuracy", "weighted_f1", "macro_f1"), start=2):
                self.table.setItem(r, c, score_item(m.get(key)))
            self.table.setItem(r, 5, table_item(m.get("best_epoch", "—")))
        self.table.setSortingEnabled(True)
