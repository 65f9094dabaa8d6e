"""Grouped bar chart of a comparison: one group per method, one bar per modality, ± std error bars."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

# Same order as the Train page's per-modality curves, so a modality keeps its colour across pages.
MODALITY_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
# Short names for the x axis (nine groups must fit at the default window size); the table has the full ones.
SHORT_LABELS = {
    "discomkd": "DisCoM-KD", "student": "Student (CE)", "kd": "Teacher+KD", "dkd": "Teacher+DKD", "dml": "DML",
    "discomkd_no_aux": "w/o L_aux", "discomkd_no_adv": "w/o L_adv", "discomkd_no_mod": "w/o L_mod",
    "discomkd_no_perp": "w/o L_perp", "discomkd_no_agree": "w/o L_agree", "discomkd_paper": "Paper obj.",
    "classifiers_only": "Control", "distill": "Distillation", "self_training": "Self-training",
    "discomkd_no_unlabelled": "w/o L_unlab.", "discomkd_distill": "DisCoM-KD+stage",
}
GROUP_WIDTH = 0.8  # share of a method's slot taken by its bars


def style_static_plot(plot, grid_x: bool = True, alpha: float = 0.2) -> None:
    """A plot that shows a result rather than one to explore: no mouse zoom, buttons or menu, a light
    grid, the house's axis colours (shared by the comparison chart and the reliability diagram)."""
    plot.showGrid(x=grid_x, y=True, alpha=alpha)
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    plot.setMenuEnabled(False)
    for axis in ("left", "bottom"):
        plot.getAxis(axis).setTextPen("#333333")
        plot.getAxis(axis).setPen("#888888")


class ComparisonChart(pg.PlotWidget):
    """Draws the rows of a ``ComparisonResult`` (method, modality, wf1_mean, wf1_std); computes nothing."""

    def __init__(self, parent: QWidget | None = None) -> None:
        pg.setConfigOptions(antialias=True, background="w", foreground="#333333")
        super().__init__(parent)
        plot = self.getPlotItem()
        plot.setTitle("Test weighted F1 per method (mean ± std over seeds)", size="10pt")
        style_static_plot(plot, grid_x=False, alpha=0.25)
        plot.getAxis("left").setTicks([[(v / 5, f"{v / 5:.1f}") for v in range(6)]])
        plot.getAxis("bottom").setHeight(28)  # room for the method names under the ticks
        plot.getAxis("left").setLabel("test weighted F1", color="#333333")
        plot.getAxis("left").setStyle(hideOverlappingLabels=False)  # else "0.0" at the bottom edge is dropped
        # The legend sits in the title row, right-aligned, so it never hides a bar near 1.0.
        self.legend = pg.LegendItem(colCount=8, horSpacing=12)
        self.legend.setParentItem(plot)
        self.legend.anchor(itemPos=(1, 0), parentPos=(1, 0), offset=(-6, -2))
        self.methods: list[str] = []
        self.modalities: list[str] = []
        self.bar_items: dict[str, pg.BarGraphItem] = {}
        self.error_items: dict[str, pg.ErrorBarItem] = {}
        self.set_rows([])

    def set_rows(self, rows: list[dict]) -> None:
        plot = self.getPlotItem()
        for item in [*self.bar_items.values(), *self.error_items.values()]:
            plot.removeItem(item)
        self.legend.clear()
        self.bar_items.clear()
        self.error_items.clear()
        self.methods = list(dict.fromkeys(r["method"] for r in rows))
        self.modalities = list(dict.fromkeys(r["modality"] for r in rows))
        width = GROUP_WIDTH / max(1, len(self.modalities))
        for j, modality in enumerate(self.modalities):
            offset = (j - (len(self.modalities) - 1) / 2) * width
            xs, heights, stds = [], [], []
            for row in rows:
                if row["modality"] == modality and math.isfinite(float(row["wf1_mean"])):
                    xs.append(self.methods.index(row["method"]) + offset)
                    heights.append(float(row["wf1_mean"]))
                    std = float(row["wf1_std"])
                    stds.append(std if math.isfinite(std) else 0.0)
            if not xs:
                continue
            colour = MODALITY_COLOURS[j % len(MODALITY_COLOURS)]
            xs, heights, stds = (np.asarray(v, dtype=np.float64) for v in (xs, heights, stds))  # ErrorBarItem needs arrays
            bars = pg.BarGraphItem(x=xs, height=heights, width=width * 0.92, brush=colour, pen=pg.mkPen(colour))
            errors = pg.ErrorBarItem(x=xs, y=heights, top=stds, bottom=stds, beam=width * 0.35,
                                     pen=pg.mkPen("#222222", width=1.5))
            plot.addItem(bars)
            self.legend.addItem(bars, modality)
            plot.addItem(errors)
            self.bar_items[modality] = bars
            self.error_items[modality] = errors
        labels = [(i, SHORT_LABELS.get(m, m)) for i, m in enumerate(self.methods)]
        plot.getAxis("bottom").setTicks([labels, []])
        plot.setXRange(-0.6, max(0, len(self.methods) - 1) + 0.6, padding=0)
        plot.setYRange(-0.04, 1.05, padding=0)  # a little below 0, else the "0.0" tick label is dropped

    def bar_heights(self) -> dict[tuple[str, str], float]:
        """(method, modality) -> drawn height, read back from the bar items (what the user sees)."""
        width = GROUP_WIDTH / max(1, len(self.modalities))
        out = {}
        for j, (modality, item) in enumerate(self.bar_items.items()):
            offset = (self.modalities.index(modality) - (len(self.modalities) - 1) / 2) * width
            for x, h in zip(item.opts["x"], item.opts["height"]):
                out[(self.methods[round(float(x) - offset)], modality)] = float(h)
        return out
