"""Compare page: a time estimate before a long comparison, and a stopped one neither misleads nor is saved."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox


@pytest.fixture
def compare_page(qtbot):
    from discomkd_gui.app import create_application
    from discomkd_gui.pages.compare_page import ComparePage

    create_application([])
    page = ComparePage()
    qtbot.addWidget(page)
    page.ensure_methods()
    return page


def stopped_result(finished_methods: list[str]):
    """A comparison of DisCoM-KD and the student alone stopped after ``finished_methods`` finished seed 0."""
    from discomkd.training.compare import ComparisonResult, summarise

    metrics = {"image": {"accuracy": 0.8, "weighted_f1": 0.8, "best_epoch": 1}}
    per_run = [{"method": m, "seed_index": 0, "seed": 0, "status": "finished", "reason": "", "time_s": 1.0,
                "metrics": metrics} for m in finished_methods]
    per_run.append({"method": "student" if "discomkd" in finished_methods else "discomkd", "seed_index": 0,
                    "seed": 0, "status": "stopped", "reason": "stopped", "time_s": 0.5, "metrics": {}})
    methods = ["discomkd", "student"]
    settings = {"methods": methods, "seeds": 2, "config": {"modalities": [{"name": "image"}], "epochs": 10}}
    return ComparisonResult(summarise(per_run, methods, ["image"]), {}, per_run, settings, stopped=True)


def test_a_comparison_stopped_before_any_run_finished_is_not_saved(compare_page, private_data_dir):
    from discomkd_gui.pages.compare_page import comparisons_dir

    compare_page._on_result(stopped_result([]))
    assert compare_page.saved_folder is None and not comparisons_dir().exists()
    assert "Stopped before any run finished" in compare_page.verdict.text()
    assert "Add 'Student alone'" not in compare_page.verdict.text()


def test_a_stopped_comparison_does_not_ask_for_the_student_it_has(compare_page):
    compare_page._on_result(stopped_result(["discomkd"]))
    text = compare_page.verdict.text()
    assert "Add 'Student alone'" not in text and "no paired difference yet" in text and "stopped" in text


def test_a_long_comparison_is_estimated_and_confirmed_first(compare_page, trained_bundle, tiny_demo, monkeypatch):
    from discomkd.config import ModalitySource, TrainingConfig
    from discomkd.storage import runs
    from discomkd.storage.paths import runs_dir

    # An earlier training of the same folders (the trained fixture's run) times an epoch.
    shutil.copytree(trained_bundle.parent, runs_dir() / "earlier")
    per_epoch = [h["epoch_time_s"] for h in runs.read_history(runs_dir() / "earlier")]
    config = TrainingConfig(modalities=[ModalitySource(m, str(f)) for m, f in tiny_demo.items()], embed_dim=16,
                            epochs=6, batch_size=16, learning_rate=3e-3, device="cpu", seed=1)
    epochs = int(3 * 3600 / (float(np.median(per_epoch)) * 10)) + 1  # 10 trainings: just over 3 hours
    config.epochs = epochs
    for method, box in compare_page.method_boxes.items():
        box.setChecked(method in ("discomkd", "student"))
    compare_page.seeds.setValue(5)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kw: asked.append(args[2]) or QMessageBox.StandardButton.No)

    assert compare_page.start(config) is None  # declined: nothing runs
    assert compare_page.job is None
    assert asked and "about 3 h" in asked[0]
    assert f"10 trainings × {epochs} epochs" in compare_page.estimate.text()


def test_the_progress_bar_says_how_long_is_left(compare_page):
    import time

    compare_page._started_at = time.monotonic() - 600  # ten minutes in, a quarter done
    compare_page._on_progress(0.25, "DisCoM-KD, seed 1/4: epoch 3/12")
    assert compare_page.progress.format() == "DisCoM-KD, seed 1/4: epoch 3/12 · about 30 min left"


def test_many_seeds_best_epochs_are_summarised_so_the_table_fits(compare_page):
    """Thirty seeds' best epochs would make one column wider than the window: the cell gives their
    median and range, the tooltip the list; ten or fewer are listed as before."""
    from discomkd.training.compare import ComparisonResult, summarise
    from discomkd_gui.pages.compare_page import BEST_EPOCHS_COLUMN, best_epochs_cell

    per_run = [{"method": "discomkd", "seed_index": k, "seed": k, "status": "finished", "reason": "", "time_s": 1.0,
                "metrics": {"image": {"accuracy": 0.8, "weighted_f1": 0.8, "best_epoch": 10 + k % 7}}}
               for k in range(30)]
    settings = {"methods": ["discomkd"], "seeds": 30, "config": {"modalities": [{"name": "image"}], "epochs": 20}}
    compare_page.show_result(ComparisonResult(summarise(per_run, ["discomkd"], ["image"]), {}, per_run, settings))
    cell = compare_page.table.item(0, BEST_EPOCHS_COLUMN)
    assert cell.text() == "median 13 (10-16)"
    assert cell.toolTip().startswith("Best epoch per seed: 10/11/12/13/14/15/16/10/")
    assert best_epochs_cell("12/9/11") == ("12/9/11", "")
