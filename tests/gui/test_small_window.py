"""Every page works in a 1024x700 window: nothing needs scrolling, tables and plot titles fit."""

from __future__ import annotations

import shutil

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QApplication, QScrollArea


def settle() -> None:
    for _ in range(5):
        QApplication.processEvents()


def test_every_page_fits_a_1024_by_700_window(window, trained_bundle):
    from discomkd.storage.paths import runs_dir

    for copy in ("first", "second"):
        shutil.copytree(trained_bundle.parent, runs_dir() / copy)
    window.resize(800, 600)  # below the minimum: refused
    settle()
    assert window.width() >= 1024 and window.height() >= 700
    window.resize(1024, 700)
    settle()
    assert window.size() == QSize(1024, 700)
    window.open_run(str(runs_dir() / "first"))

    for name in window.PAGES:
        window.show_page(name)
        if name == "Runs":
            window.runs_page.table.selectAll()  # two runs side by side
        settle()
        holder = window.stack.currentWidget()
        assert not holder.verticalScrollBar().isVisible() and not holder.horizontalScrollBar().isVisible(), name
        page = window.pages[name]
        assert page.width() >= page.minimumSizeHint().width() and page.height() >= page.minimumSizeHint().height(), name

    configure_scroll = window.configure_page.findChild(QScrollArea)
    window.show_page("Configure")
    settle()
    assert not configure_scroll.horizontalScrollBar().isVisible()  # no field cut at the right

    window.show_page("Results")
    settle()
    assert not window.results_page.per_class.horizontalScrollBar().isVisible()
    assert not window.results_page.summary.horizontalScrollBar().isVisible()

    window.show_page("Runs")
    settle()
    assert not window.runs_page.side_by_side.table.horizontalScrollBar().isVisible()

    window.show_page("Train")
    settle()
    train = window.train_page
    for widget, plot in ((train.loss_widget, train.loss_plot), (train.val_widget, train.val_plot)):
        assert plot.titleLabel.item.boundingRect().width() < widget.width()  # the title is not cut
