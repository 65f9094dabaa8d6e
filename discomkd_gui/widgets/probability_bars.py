"""Top-k class probabilities as horizontal bars with the class name and a percentage."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

ACCENT = QColor("#2f6fde")
TRACK = QColor("#e6e9ef")


class ProbabilityBars(QWidget):
    ROW = 20

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._items: list[tuple[str, float]] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_items(self, items: list[tuple[str, float]]) -> None:
        self._items = list(items)
        self.updateGeometry()
        self.update()

    def items(self) -> list[tuple[str, float]]:
        return list(self._items)

    def sizeHint(self) -> QSize:
        return QSize(240, max(1, len(self._items)) * self.ROW + 2)

    def minimumSizeHint(self) -> QSize:
        return QSize(160, self.sizeHint().height())

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        metrics = QFontMetrics(self.font())
        name_w = min(max((metrics.horizontalAdvance(n) for n, _ in self._items), default=0) + 10, self.width() // 3)
        pct_w = metrics.horizontalAdvance("100.0%") + 8
        bar_w = max(10, self.width() - name_w - pct_w)
        for i, (name, p) in enumerate(self._items):
            y = i * self.ROW
            painter.setPen(self.palette().text().color())
            painter.drawText(QRectF(0, y, name_w - 6, self.ROW), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             metrics.elidedText(name, Qt.TextElideMode.ElideRight, name_w - 6))
            track = QRectF(name_w, y + 4, bar_w, self.ROW - 8)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(TRACK)
            painter.drawRoundedRect(track, 3, 3)
            painter.setBrush(ACCENT if i == 0 else ACCENT.lighter(150))
            painter.drawRoundedRect(QRectF(track.x(), track.y(), max(2.0, bar_w * p), track.height()), 3, 3)
            painter.setPen(self.palette().text().color())
            painter.drawText(QRectF(name_w + bar_w + 6, y, pct_w, self.ROW), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             f"{100 * p:.1f}%")
        painter.end()
