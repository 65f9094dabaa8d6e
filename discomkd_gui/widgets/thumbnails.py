"""Turn the engine's :class:`discomkd.data.preview.Thumbnail` into a QPixmap (images, spectrograms, signals)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap, QPolygonF

SIGNAL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def array_to_pixmap(image: np.ndarray, size: int) -> QPixmap:
    """uint8 (H, W) or (H, W, 3) -> pixmap scaled to fit ``size`` (nearest for tiny images)."""
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    if image.ndim == 2:
        qimage = QImage(image.data, w, h, w, QImage.Format.Format_Grayscale8)
    else:
        qimage = QImage(image.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    qimage = qimage.copy()  # own the buffer; the numpy array may go away
    mode = Qt.TransformationMode.FastTransformation if max(h, w) < size // 2 else Qt.TransformationMode.SmoothTransformation
    return QPixmap.fromImage(qimage).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode)


def signal_to_pixmap(signal: np.ndarray, size: int) -> QPixmap:
    """A small line plot of a (C, L) signal, one colour per channel (up to six)."""
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor("white"))
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(QPen(QColor("#d0d0d0"), 1))
    painter.drawRect(0, 0, size - 1, size - 1)
    channels = signal[: len(SIGNAL_COLOURS)].astype(np.float64)
    step = max(1, channels.shape[1] // (2 * size))
    channels = channels[:, ::step]
    lo, hi = float(np.min(channels)), float(np.max(channels))
    span = hi - lo or 1.0
    n = channels.shape[1]
    for c, row in enumerate(channels):
        xs = np.linspace(3, size - 3, n)
        ys = size - 3 - (row - lo) / span * (size - 6)
        painter.setPen(QPen(QColor(SIGNAL_COLOURS[c]), 1.2))
        painter.drawPolyline(QPolygonF([QPointF(x, y) for x, y in zip(xs, ys)]))
    painter.end()
    return pixmap


def thumbnail_pixmap(thumb, size: int = 96) -> QPixmap:
    """Pixmap for an engine Thumbnail (kind image/audio -> picture, signal -> line plot)."""
    if thumb.image is not None:
        return array_to_pixmap(thumb.image, size)
    if thumb.signal is not None:
        return signal_to_pixmap(thumb.signal, size)
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor("#eeeeee"))
    return pixmap
