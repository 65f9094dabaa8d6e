"""Train page: the first validation point shows, only the loss terms that take part are drawn, the
loss ramp is explained, and a reopened run shows its log."""

from __future__ import annotations

import pytest
from conftest import shown_alone
from discomkd.training.events import EpochEnded, RunStarted


@pytest.fixture
def train_page(qtbot):
    from discomkd_gui.pages.train_page import TrainPage

    page = shown_alone(qtbot, TrainPage)
    page.reset()
    return page


def run_started(active_terms, term_ramp=0.3, epochs=10, unlabelled_pairs=0) -> RunStarted:
    return RunStarted("/tmp/run", ["image", "audio"], ["0", "1"], {"image": 50, "audio": 50}, 0, epochs, 4, "cpu",
                      {"image": "compact", "audio": "compact"}, "unpaired", unlabelled_pairs, list(active_terms), term_ramp)


def legend_labels(page) -> list[str]:
    return [label.text for _, label in page.loss_legend.items]


def test_the_first_validation_point_shows_as_soon_as_epoch_one_ends(train_page):
    page = train_page
    page.on_event(run_started(["cl", "aux", "adv", "mod", "perp", "agree"]))
    assert "epoch 1 ends" in page.val_waiting.textItem.toPlainText()  # says why the plot is empty
    page.on_event(EpochEnded(1, 10, {"total": 1.0}, {"image": {"accuracy": 0.6, "weighted_f1": 0.5},
                                                     "audio": {"accuracy": 0.4, "weighted_f1": 0.3}},
                             0.1, 90.0, 10.0, 10.0))
    page.flush_plots()
    # One point per curve draws no line; each curve's latest point is drawn as a dot.
    shown = sorted((p.pos().x(), p.pos().y()) for p in page.val_latest.points())
    assert shown == [(1.0, 0.3), (1.0, 0.4), (1.0, 0.5), (1.0, 0.6)]
    assert page.val_waiting.textItem.toPlainText() == ""


def test_terms_that_are_off_or_without_data_are_not_drawn(train_page):
    from discomkd.config import LossWeights

    page = train_page
    # No unlabelled recordings: the engine leaves L_unlabelled out of the active terms.
    active = LossWeights(agree=0.0).active_terms(unlabelled_pairs=0)
    assert "unlabelled" not in active and "agree" not in active and "cl" in active
    page.on_event(run_started(active))
    assert not page.loss_curves["unlabelled"].isVisible() and not page.epoch_curves["agree"].isVisible()
    assert page.loss_curves["cl"].isVisible() and page.loss_curves["total"].isVisible()
    assert "L_unlabelled" not in legend_labels(page) and "L_agree" not in legend_labels(page)
    assert "L_cl" in legend_labels(page) and "total" in legend_labels(page)
    # With unlabelled recordings the term is drawn again.
    page.reset()
    page.on_event(run_started(LossWeights().active_terms(unlabelled_pairs=300), unlabelled_pairs=300))
    assert page.loss_curves["unlabelled"].isVisible() and "L_unlabelled" in legend_labels(page)


def test_the_loss_ramp_is_marked_and_explained(train_page):
    page = train_page
    page.on_event(run_started(["cl", "aux", "adv", "mod", "perp"], term_ramp=0.3, epochs=10))
    assert page.ramp_line.isVisible() and page.ramp_line.value() == pytest.approx(3.0)
    log = page.log.toPlainText()
    assert "Loss ramp: L_aux, L_adv, L_mod and L_perp grow from weight 0" in log and "epoch 3.0 of 10" in log
    assert "total can rise" in page.loss_widget.toolTip()
    page.reset()
    page.on_event(run_started(["cl", "aux"], term_ramp=0.0))  # the paper's objective: nothing ramps
    assert not page.ramp_line.isVisible() and "Loss ramp" not in page.log.toPlainText()


def test_a_reopened_run_shows_its_log_and_only_its_terms(train_page, trained_bundle):
    from discomkd.storage import runs

    run_dir = trained_bundle.parent
    record = runs.read_run_record(run_dir)
    train_page.show_history(runs.read_history(run_dir), record["name"], record, runs.read_log_tail(run_dir))
    log = train_page.log.toPlainText()
    assert "epoch 1/6" in log and "finished" in log
    assert not train_page.loss_curves["unlabelled"].isVisible()  # the tiny demo has no unlabelled recordings
    assert train_page.ramp_line.isVisible()
