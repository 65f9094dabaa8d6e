"""Runs page: several selected runs show their validation curves overlaid and test metrics in one table."""

from __future__ import annotations

import shutil

import numpy as np


def two_saved_runs(trained_bundle):
    """Two runs in the user's run folder: the trained one, and a copy whose history stops at epoch 3."""
    from discomkd.storage import runs
    from discomkd.storage.paths import runs_dir

    full, short = runs_dir() / "full", runs_dir() / "short"
    shutil.copytree(trained_bundle.parent, full)
    shutil.copytree(trained_bundle.parent, short)
    runs.rename_run(full, "six epochs")
    runs.rename_run(short, "three epochs")
    runs.write_history(short, runs.read_history(short)[:3])
    return full, short


def test_selected_runs_are_overlaid_and_tabled_side_by_side(qtbot, trained_bundle):
    from discomkd.storage import runs
    from discomkd_gui.app import create_application
    from discomkd_gui.pages.runs_page import RunsPage

    create_application([])
    full, short = two_saved_runs(trained_bundle)
    page = RunsPage()
    qtbot.addWidget(page)
    page.resize(1024, 700)
    page.show()
    page.refresh()
    view = page.side_by_side

    page.table.selectAll()
    assert page.selected_run() is None  # single-run actions wait for one run
    assert not page.open_button.isEnabled()
    modalities = list(runs.read_run_record(full)["test_metrics"])
    assert set(view.curves) == {(str(d), m) for d in (full, short) for m in modalities}
    history = runs.read_history(full)
    x, y = view.curves[(str(full), "audio")].getData()
    assert x.tolist() == [float(h["epoch"]) for h in history]
    assert np.allclose(y, [h["val"]["audio"]["weighted_f1"] for h in history])
    assert len(view.curves[(str(short), "audio")].getData()[0]) == 3
    assert view.table.rowCount() == 2 * len(modalities)
    names = {view.table.item(r, 0).text() for r in range(view.table.rowCount())}
    assert names == {"six epochs", "three epochs"}

    # Another metric updates the same curves (created once, then setData).
    before = dict(view.curves)
    view.metric.setCurrentIndex(view.metric.findData("accuracy"))
    assert view.curves == before
    _, y = view.curves[(str(full), "audio")].getData()
    assert np.allclose(y, [h["val"]["audio"]["accuracy"] for h in history])

    # One run left: the other's curves and rows go, and the single-run actions come back.
    page.select_run(str(short))
    assert set(view.curves) == {(str(short), m) for m in modalities}
    assert view.table.rowCount() == len(modalities) and page.open_button.isEnabled()
