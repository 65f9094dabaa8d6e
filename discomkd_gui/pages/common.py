"""Small layout helpers shared by the pages (headers, read-only tables, number formatting)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)


class PageHeader(QWidget):
    """A title, a one-line explanation, and a row on the right (``buttons``) for the page's main buttons."""

    def __init__(self, title: str, subtitle: str) -> None:
        super().__init__()
        self.setObjectName("pageHeader")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 4)
        text = QVBoxLayout()
        title_label = QLabel(title)
        title_label.setObjectName("pageTitle")
        sub = QLabel(subtitle)
        sub.setObjectName("pageSubtitle")
        sub.setWordWrap(True)
        text.addWidget(title_label)
        text.addWidget(sub)
        row.addLayout(text, 1)
        self.buttons = QHBoxLayout()
        self.buttons.setSpacing(6)
        row.addLayout(self.buttons)


class StartStopHeader(PageHeader):
    """The header of a page that runs one long job (Train, Compare): Start, and Stop while it runs.

    ``set_running`` is what :func:`discomkd_gui.jobs.start_job` calls when the job starts and ends;
    the page connects the buttons' ``clicked`` to its own start and stop."""

    def __init__(self, title: str, subtitle: str, start_text: str, start_tip: str = "", stop_tip: str = "") -> None:
        super().__init__(title, subtitle)
        self.start_button = QPushButton(start_text)
        self.start_button.setObjectName("primary")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("danger")
        for button, tip in ((self.start_button, start_tip), (self.stop_button, stop_tip)):
            if tip:
                button.setToolTip(tip)
            self.buttons.addWidget(button)
        self.set_running(False)

    def set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)


def hint_label(text: str = "", wrap: bool = False) -> QLabel:
    """A secondary line of explanation (the ``hint`` style: smaller, greyed)."""
    label = QLabel(text)
    label.setObjectName("hint")
    label.setWordWrap(wrap)
    return label


def read_only_table(headers: list[str], stretch_column: int | None = 0) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.verticalHeader().setVisible(False)
    table.setAlternatingRowColors(True)
    header = table.horizontalHeader()
    header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # rows keep their given order until a header is clicked
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    if stretch_column is not None:
        header.setSectionResizeMode(stretch_column, QHeaderView.ResizeMode.Stretch)
    return table


def table_item(value, align_right: bool | None = None) -> QTableWidgetItem:
    """An item that sorts numbers as numbers."""
    item = QTableWidgetItem()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        item.setData(Qt.ItemDataRole.DisplayRole, value)
        align_right = True if align_right is None else align_right
    else:
        item.setText(str(value))
    if align_right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def fmt_score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def score_item(value: float | None) -> QTableWidgetItem:
    """A 0-1 score shown with three decimals (the fixed format also sorts correctly as text)."""
    return table_item(fmt_score(None if value is None else float(value)), align_right=True)


def fit_table_height(table: QTableWidget, rows: int) -> None:
    """Make a short table exactly as tall as its rows, so it never scrolls or gets squeezed."""
    height = table.horizontalHeader().sizeHint().height() + rows * table.verticalHeader().defaultSectionSize() + 4
    table.setFixedHeight(height)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
