"""Train page: it reads the training's events through the one handler protocol of the engine."""

from __future__ import annotations

import pytest
from support import one_event_of_each_kind

from discomkd.training.events import DataProgress, RunStarted, TrainingEventHandler


@pytest.fixture
def train_page(qtbot):
    from discomkd_gui.app import create_application
    from discomkd_gui.pages.train_page import TrainPage

    create_application([])
    page = TrainPage()
    qtbot.addWidget(page)
    page.reset()
    return page


def test_the_train_page_implements_every_handler_method():
    from discomkd_gui.pages.train_page import TrainPage

    methods = [name for name in vars(TrainingEventHandler) if name.startswith("on_")]
    assert methods and all(callable(getattr(TrainPage, name, None)) for name in methods)


def test_a_look_alike_of_an_event_is_an_error_not_ignored(train_page):
    with pytest.raises(TypeError, match="not a training event"):
        train_page.on_event(type("BatchEnded", (), {})())


def test_every_event_of_a_run_shows_on_the_page(train_page, qtbot):
    page = train_page
    events = one_event_of_each_kind()
    started = next(e for e in events if isinstance(e, RunStarted))
    page.on_event(next(e for e in events if isinstance(e, DataProgress)))
    assert page.progress.format() == "Reading image: 3/10 files"
    with qtbot.waitSignal(page.best_saved) as saved:
        for event in events:
            page.on_event(event)
    assert saved.args == ["/tmp/run/model.discomkd"]
    assert page.run_dir == "/tmp/run" and page.batch_events == 1 and page.epoch_events == 1
    assert page.log.toPlainText().splitlines() == [
        started.summary(),  # the same line the console prints
        "Epoch 1/2: loss 1.1000 · validation image acc 0.600 / wF1 0.550 · 2.0 s",
        "Epoch 2: audio now learns from image on unlabelled recordings",
        "Best model saved (epoch 1; improved: image).",
    ]
