"""Reliability diagram of one classifier: accuracy against confidence per confidence bin.

Draws the bins the engine computed (``discomkd.model.calibration.reliability_bins``: bounds, count,
mean confidence, accuracy); computes nothing itself. Bars are the calibrated answers' accuracy per
bin, the grey line the same answers before calibration, the dashed diagonal a perfectly calibrated
classifier (an answer given with 80% right 80% of the time). The page explains this under the
diagrams: a legend inside the square would hide bins.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from .comparison_chart import style_static_plot

CALIBRATED_COLOUR = "#2f6fde"
UNCALIBRATED_COLOUR = "#8a8f98"


class ReliabilityDiagram(pg.PlotWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        pg.setConfigOptions(antialias=True, background="w", foreground="#333333")
        super().__init__(parent)
        plot = self.getPlotItem()
        plot.setLabel("bottom", "confidence")
        plot.setLabel("left", "accuracy")
        style_static_plot(plot)
        plot.setXRange(0, 1, padding=0.02)
        plot.setYRange(0, 1, padding=0.02)
        self.setMinimumSize(220, 200)
        self.bars: pg.BarGraphItem | None = None
        self.uncalibrated_curve: pg.PlotDataItem | None = None

    def set_bins(self, title: str, calibrated: list[dict], uncalibrated: list[dict] | None = None) -> None:
        """Show one classifier's bins; empty bins (no answers) are left out."""
        plot = self.getPlotItem()
        plot.clear()
        plot.setTitle(title, size="10pt")
        plot.addItem(pg.PlotDataItem([0, 1], [0, 1], pen=pg.mkPen("#444444", width=1, style=Qt.PenStyle.DashLine),
                                     name="perfectly calibrated"))
        filled = [b for b in calibrated if b.get("count")]
        self.bars = pg.BarGraphItem(
            x=[(b["lower"] + b["upper"]) / 2 for b in filled], height=[b["accuracy"] for b in filled],
            width=[0.9 * (b["upper"] - b["lower"]) for b in filled],
            brush=pg.mkBrush(CALIBRATED_COLOUR + "b0"), pen=pg.mkPen(CALIBRATED_COLOUR), name="calibrated")
        plot.addItem(self.bars)
        self.uncalibrated_curve = None
        if uncalibrated:
            points = [b for b in uncalibrated if b.get("count")]
            self.uncalibrated_curve = pg.PlotDataItem(
                [b["confidence"] for b in points], [b["accuracy"] for b in points],
                pen=pg.mkPen(UNCALIBRATED_COLOUR, width=2), symbol="o", symbolSize=6,
                symbolBrush=UNCALIBRATED_COLOUR, symbolPen=None, name="before calibration")
            plot.addItem(self.uncalibrated_curve)
        plot.setXRange(0, 1, padding=0.02)
        plot.setYRange(0, 1, padding=0.02)

    def bar_heights(self) -> list[float]:
        """The accuracies drawn as bars (for tests and screenshots)."""
        return [] if self.bars is None else [float(h) for h in self.bars.opts["height"]]
