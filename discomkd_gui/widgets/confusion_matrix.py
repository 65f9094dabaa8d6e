"""Confusion matrix heat map: counts in cells, row-normalised colour, class names on both axes;
a click on a cell says which one (``cell_clicked(true_index, predicted_index)``)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

LOW = (247, 251, 255)
HIGH = (8, 48, 107)


def _blend(t: float) -> QColor:
    return QColor(*(round(a + (b - a) * t) for a, b in zip(LOW, HIGH)))


class ConfusionMatrixView(QWidget):
    """Rows are true classes, columns predicted; the colour is the share of the row (recall view)."""

    cell_clicked = Signal(int, int)  # true class index, predicted class index

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._matrix: list[list[int]] = []
        self._classes: list[str] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(220, 200)
        self.setMouseTracking(True)

    def set_matrix(self, matrix: list[list[int]], classes: list[str]) -> None:
        self._matrix = [list(map(int, row)) for row in matrix]
        self._classes = list(classes)
        self.update()

    def matrix(self) -> list[list[int]]:
        return [list(r) for r in self._matrix]

    def sizeHint(self) -> QSize:
        return QSize(420, 380)

    def _grid(self) -> tuple[float, float, float, float, float]:
        """(left, top, cell, label width, title height) of the grid for the current size and font."""
        metrics = QFontMetrics(QFont(self.font()))
        n = len(self._matrix)
        label_w = min(max((metrics.horizontalAdvance(c) for c in self._classes), default=0) + 12, 120)
        title_h = metrics.height() + 6
        left = title_h + label_w
        top = title_h
        bottom = metrics.height() + title_h + 8
        cell = max(8.0, min((self.width() - left - 8) / max(n, 1), (self.height() - top - bottom) / max(n, 1)))
        return left, top, cell, label_w, title_h

    def cell_at(self, pos: QPointF) -> tuple[int, int] | None:
        """(true index, predicted index) of the cell under ``pos``, or None outside the grid."""
        n = len(self._matrix)
        if n == 0:
            return None
        left, top, cell, _, _ = self._grid()
        col, row = int((pos.x() - left) // cell), int((pos.y() - top) // cell)
        if pos.x() < left or pos.y() < top or not (0 <= row < n and 0 <= col < n):
            return None
        return row, col

    def cell_centre(self, true_index: int, predicted_index: int) -> QPointF:
        left, top, cell, _, _ = self._grid()
        return QPointF(left + (predicted_index + 0.5) * cell, top + (true_index + 0.5) * cell)

    def mouseMoveEvent(self, event) -> None:
        hit = self.cell_at(event.position())
        if hit is None:
            self.unsetCursor()
            self.setToolTip("")
        else:
            t, p = hit
            self.setCursor(Qt.CursorShape.PointingHandCursor)
            self.setToolTip(f"{self._matrix[t][p]} test file(s) of class {self._classes[t]} predicted as "
                            f"{self._classes[p]}. Click to see them.")
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        hit = self.cell_at(event.position()) if event.button() == Qt.MouseButton.LeftButton else None
        if hit is not None:
            self.cell_clicked.emit(*hit)
        super().mouseReleaseEvent(event)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text_colour = self.palette().text().color()
        n = len(self._matrix)
        if n == 0:
            painter.setPen(text_colour)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No test results yet")
            return
        font = QFont(self.font())
        metrics = QFontMetrics(font)
        left, top, cell, label_w, title_h = self._grid()
        grid_w = cell * n
        # Axis titles.
        painter.setPen(text_colour)
        bold = QFont(font)
        bold.setBold(True)
        painter.setFont(bold)
        painter.drawText(QRectF(left, top + grid_w + metrics.height() + 6, grid_w, title_h),
                         Qt.AlignmentFlag.AlignCenter, "Predicted class")
        painter.save()
        painter.translate(2, top + grid_w / 2)
        painter.rotate(-90)
        painter.drawText(QRectF(-grid_w / 2, 0, grid_w, title_h), Qt.AlignmentFlag.AlignCenter, "True class")
        painter.restore()
        # Over the whole width (the grid alone is narrower than the title in a small window), elided if need be.
        painter.drawText(QRectF(0, 0, self.width(), title_h), Qt.AlignmentFlag.AlignCenter,
                         QFontMetrics(bold).elidedText("Test set: counts (colour = share of the true class)",
                                                       Qt.TextElideMode.ElideRight, self.width()))
        painter.setFont(font)
        cell_font = QFont(font)
        if cell < metrics.height() * 1.6:
            cell_font.setPointSizeF(max(5.0, font.pointSizeF() * cell / (metrics.height() * 1.6)))
        for i, row in enumerate(self._matrix):
            total = sum(row) or 1
            painter.setPen(text_colour)
            painter.drawText(QRectF(title_h, top + i * cell, label_w - 6, cell),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             metrics.elidedText(self._classes[i], Qt.TextElideMode.ElideRight, label_w - 6))
            for j, count in enumerate(row):
                share = count / total
                rect = QRectF(left + j * cell, top + i * cell, cell, cell)
                painter.fillRect(rect, _blend(share))
                painter.setPen(QColor("#ffffff") if share > 0.5 else QColor("#20252b"))
                painter.setFont(cell_font)
                if cell >= 14:
                    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, str(count))
                painter.setFont(font)
        painter.setPen(text_colour)
        for j, name in enumerate(self._classes):
            painter.drawText(QRectF(left + j * cell, top + grid_w + 2, cell, metrics.height() + 2),
                             Qt.AlignmentFlag.AlignCenter, metrics.elidedText(name, Qt.TextElideMode.ElideRight, int(cell)))
        painter.setPen(QColor("#c0c6d0"))
        painter.drawRect(QRectF(left, top, grid_w, grid_w))
        painter.end()
