"""One way to read a training's events: a handler method per event, implemented by every reader."""

from __future__ import annotations

import io

import pytest
from support import one_event_of_each_kind

from discomkd.cli import ConsoleReporter
from discomkd.training.baselines import RunProgressHandler
from discomkd.training.events import TRAINING_EVENTS, RunStarted, TrainingEventHandler, send_event

HANDLER_METHODS = sorted(name for name in vars(TrainingEventHandler) if name.startswith("on_"))


class RecordingHandler:
    """Every handler method, each recording its name and the event it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def __getattr__(self, name: str):
        if name not in HANDLER_METHODS:
            raise AttributeError(name)
        return lambda event: self.calls.append((name, event))


def implemented_here(cls: type) -> list[str]:
    """The handler methods ``cls`` (or a class it derives from) defines as callables."""
    return [name for name in HANDLER_METHODS if callable(getattr(cls, name, None))]


def test_every_event_kind_goes_to_its_own_handler_method():
    events = one_event_of_each_kind()
    assert [type(e) for e in events] == list(TRAINING_EVENTS)  # a new event needs a sample here
    handler = RecordingHandler()
    for event in events:
        send_event(handler, event)
    assert [event for _, event in handler.calls] == events
    assert sorted(name for name, _ in handler.calls) == HANDLER_METHODS  # one method each, none left over


@pytest.mark.parametrize("reader", [ConsoleReporter, RunProgressHandler])
def test_the_engine_readers_implement_every_handler_method(reader):
    assert implemented_here(reader) == HANDLER_METHODS


def test_something_that_is_not_a_training_event_is_an_error():
    with pytest.raises(TypeError, match="not a training event"):
        send_event(RecordingHandler(), object())
    reporter = ConsoleReporter(stream=io.StringIO(), progress_stream=io.StringIO())
    with pytest.raises(TypeError, match="not a training event"):
        reporter(type("BatchEnded", (), {})())  # a look-alike is not the event


def test_the_console_prints_the_run_started_summary_of_the_event(tmp_path):
    started = RunStarted(str(tmp_path), ["image", "audio"], ["0", "1"], {"image": 3500, "audio": 2100}, 0, 1, 110,
                         "cpu", {"image": "compact", "audio": "compact"}, "unpaired", 40)
    assert started.summary() == ("Training on cpu (backbones: image compact, audio compact); training samples: "
                                 f"image 3500, audio 2100; data unpaired, 40 unlabelled pairs; run folder {tmp_path}")
    out = io.StringIO()
    ConsoleReporter(stream=out, progress_stream=io.StringIO())(started)
    assert out.getvalue().splitlines()[0] == started.summary()


def test_the_console_prints_epochs_and_teaching_and_nothing_for_the_rest():
    out = io.StringIO()
    reporter = ConsoleReporter(stream=out, progress_stream=io.StringIO())  # not a terminal: no progress bar
    for event in one_event_of_each_kind():
        if not isinstance(event, RunStarted):  # its data problems are read from a run folder
            reporter(event)
    assert out.getvalue().splitlines() == [
        "epoch 1/2  loss 1.1000  val image: acc 0.600 wF1 0.550  (2.0 s)",
        "epoch 2: audio now learns from image on unlabelled recordings",
    ]


def test_a_comparison_run_reports_reading_and_batches_as_its_progress():
    reported = []
    handler = RunProgressHandler(lambda fraction, message: reported.append((fraction, message)), epochs=2)
    for event in one_event_of_each_kind():
        handler(event)
    assert reported == [(0.0, "Reading image: 3/10"), (0.25, "epoch 1/2"), (1.0, "Self-training image: epoch 1/2")]
