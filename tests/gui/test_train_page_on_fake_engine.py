"""The Train page alone, driven by a fake engine: what a user sees while a run starts, reports,
stops or fails, and how often the page repaints. No window, no PyTorch, no training."""

from __future__ import annotations

import threading

import pytest
from conftest import shown_alone
from discomkd.config import ModalitySource, TrainingConfig
from discomkd.errors import DataError
from discomkd.training.events import BatchEnded, BestModelSaved, EpochEnded, RunEnded, RunStarted

MODALITIES = ("image", "audio")
STEPS = 2


def run_started(epochs: int) -> RunStarted:
    return RunStarted("/runs/fake", list(MODALITIES), ["0", "1"], {m: 40 for m in MODALITIES}, 0, epochs, STEPS, "cpu",
                      {m: "compact" for m in MODALITIES}, "unpaired", 0, ["cl", "aux"], 0.0)


def batch_ended(epoch: int, step: int, epochs: int = 2) -> BatchEnded:
    done = (epoch - 1) * STEPS + step
    return BatchEnded(epoch, step, STEPS, done, {"cl": 1.0 / done, "aux": 0.5, "total": 1.5 / done},
                      done / (epochs * STEPS), 3.0, 120.0)


def epoch_ended(epoch: int, epochs: int = 2) -> EpochEnded:
    return EpochEnded(epoch, epochs, {"cl": 0.5, "total": 0.9},
                      {m: {"accuracy": 0.3 * epoch, "weighted_f1": 0.2 * epoch} for m in MODALITIES},
                      epoch / epochs, 1.0, float(epoch), 1.0)


class FakeEngine:
    """Stands in for ``trainer.train``: reports a run of ``epochs`` epochs as the engine does, asks
    for the stop flag after each epoch, and holds its end until the test lets it go."""

    def __init__(self, epochs: int = 2, fail_with: Exception | None = None) -> None:
        self.epochs = epochs
        self.fail_with = fail_with
        self.release = threading.Event()
        self.saw_stop = False

    def __call__(self, state, config, run_name):
        if self.fail_with is not None:
            raise self.fail_with
        state.publish(run_started(self.epochs))
        for epoch in range(1, self.epochs + 1):
            for step in range(1, STEPS + 1):
                state.publish(batch_ended(epoch, step, self.epochs))
            state.publish(epoch_ended(epoch, self.epochs))
            state.publish(BestModelSaved(epoch, list(MODALITIES), "/runs/fake/model.discomkd"))
            if state.is_interrupted:
                self.saw_stop = True
                return RunEnded("stopped", "Stopped by the user; the best model is kept.", "/runs/fake",
                                "/runs/fake/model.discomkd", epoch)
            self.release.wait(10)
        return RunEnded("finished", "Finished all epochs.", "/runs/fake", "/runs/fake/model.discomkd", self.epochs,
                        {m: {"accuracy": 0.9, "weighted_f1": 0.8, "macro_f1": 0.7, "best_epoch": 2} for m in MODALITIES})


@pytest.fixture
def page(qtbot):
    from discomkd_gui.pages.train_page import TrainPage

    train_page = shown_alone(qtbot, TrainPage)
    yield train_page
    if train_page.is_training():
        train_page.stop()
        qtbot.waitUntil(lambda: not train_page.is_training(), timeout=10000)


@pytest.fixture
def engine(monkeypatch):
    from discomkd_gui.pages import train_page

    fake = FakeEngine()
    monkeypatch.setattr(train_page, "run_training", fake)
    yield fake
    fake.release.set()


def config(epochs: int = 2) -> TrainingConfig:
    return TrainingConfig(modalities=[ModalitySource(m, f"/data/{m}") for m in MODALITIES], epochs=epochs)


def points(curve) -> int:
    x = curve.getData()[0]
    return 0 if x is None else len(x)


def test_a_run_shows_live_then_frees_start_when_it_finishes(page, engine, qtbot):
    active: list[bool] = []
    page.training_active.connect(active.append)
    with qtbot.waitSignal(page.best_saved, timeout=10000) as saved:
        page.start(config(), "fake run")
    assert saved.args == ["/runs/fake/model.discomkd"]
    assert active == [True] and page.is_training()
    assert not page.start_button.isEnabled() and page.stop_button.isEnabled()
    with pytest.raises(RuntimeError, match="already running"):
        page.start(config())
    with qtbot.waitSignal(page.run_finished, timeout=10000) as finished:
        engine.release.set()
    assert finished.args[0].status == "finished"
    qtbot.waitUntil(lambda: not page.is_training(), timeout=10000)
    assert active == [True, False]
    assert page.start_button.isEnabled() and not page.stop_button.isEnabled()
    assert page.progress.format() == "Finished after 2 epoch(s)" and page.progress.value() == 1000
    log = page.log.toPlainText()
    assert "run folder /runs/fake" in log and "Epoch 2/2: loss 0.9000" in log
    assert "Test image: accuracy 0.900" in log
    assert page.run_dir == "/runs/fake" and page.batch_events == 4 and page.epoch_events == 2
    assert points(page.loss_curves["total"]) == 4 and points(page.val_curves[("audio", "accuracy")]) == 2


def test_stop_reaches_the_engine_and_the_page_says_what_it_kept(page, engine, qtbot):
    with qtbot.waitSignal(page.best_saved, timeout=10000):
        page.start(config())
    page.stop_button.click()
    assert not page.stop_button.isEnabled()  # one request is enough
    assert page.status.text().startswith("Stopping after this batch")
    with qtbot.waitSignal(page.run_finished, timeout=10000) as finished:
        engine.release.set()
    qtbot.waitUntil(lambda: not page.is_training(), timeout=10000)
    assert engine.saw_stop and finished.args[0].status == "stopped"
    assert page.progress.format().startswith("Stopped after")
    assert page.start_button.isEnabled() and not page.stop_button.isEnabled()


def test_an_engine_error_is_shown_and_start_works_again(page, engine, qtbot):
    engine.fail_with = DataError("The folder '/data/image' holds no class folders.")
    with qtbot.waitSignal(page.error, timeout=10000) as error:
        page.start(config())
    assert error.args[0] == "The folder '/data/image' holds no class folders."
    qtbot.waitUntil(lambda: not page.is_training(), timeout=10000)
    assert page.progress.format() == "Failed" and page.status.text() == error.args[0]
    assert page.start_button.isEnabled() and not page.stop_button.isEnabled()


def test_the_page_redraws_one_plot_per_tick_and_none_while_hidden(page):
    # What keeps the window responsive while it trains; how long a stall lasts depends on the
    # machine's load, so that figure is measured by benchmarks/gui_stall.py, not asserted here.
    page.reset()
    page.on_event(run_started(epochs=4))
    accuracy = ("image", "accuracy")
    page.hide()
    page.on_event(batch_ended(1, 1, epochs=4))
    page.on_event(epoch_ended(1, epochs=4))
    page.timer.timeout.emit()  # a tick while the page is hidden draws nothing
    assert points(page.loss_curves["total"]) == 0 and points(page.val_curves[accuracy]) == 0
    page.show()  # showing the page catches up at once
    assert points(page.loss_curves["total"]) == 1 and points(page.val_curves[accuracy]) == 1

    page.on_event(batch_ended(2, 1, epochs=4))
    page.on_event(epoch_ended(2, epochs=4))
    page.timer.timeout.emit()  # one tick redraws one plot: the loss plot
    assert points(page.loss_curves["total"]) == 2 and points(page.val_curves[accuracy]) == 1
    page.on_event(batch_ended(2, 2, epochs=4))
    page.timer.timeout.emit()  # the next tick is the validation plot's turn, although a batch came
    assert points(page.val_curves[accuracy]) == 2 and points(page.loss_curves["total"]) == 2


def test_a_long_end_of_run_reason_is_one_short_status_line_and_whole_in_the_log():
    from discomkd_gui.pages.train_page import status_line

    advice = ("Finished 5 epochs. Still improving at the end (audio: best epoch 5 of 5, +8.1 validation F1 points in "
              "the last 20% of the epochs): more epochs may give a better model.")
    assert status_line(advice) == "Finished 5 epochs. More in the log below."
    assert status_line("Finished 12 epochs.") == "Finished 12 epochs."
