"""Events the trainer reports, and the one way to read them.

A reader of a training's events is a :class:`TrainingEventHandler`: one method per event, like the
hooks of PyTorch Lightning's ``Callback``. The console reporter (``cli.ConsoleReporter``), the Train
page and a comparison's progress (``baselines.RunProgressHandler``) implement every method;
:func:`send_event` calls the one for an event (each event knows its method: ``send_to``), so no
reader dispatches on types or type names. Text that more than one reader shows lives with its
event (``RunStarted.summary``, ``TeachingChanged.text``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol, get_args


class StopToken:
    """A stop request shared between whoever drives the training and the training loop."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def request(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    __call__ = is_set


@dataclass
class DataProgress:
    """Decoding files before training (stage names the modality)."""

    stage: str
    done: int
    total: int

    def send_to(self, handler: TrainingEventHandler) -> None:
        handler.on_data_progress(self)


@dataclass
class RunStarted:
    """The epochs start: where the run is written, on what data and device, and what it trains."""

    run_dir: str
    modalities: list[str]
    classes: list[str]
    train_sizes: dict[str, int]
    start_epoch: int  # 0 for a new run, >0 when continuing
    epochs: int  # last epoch this run trains to
    steps_per_epoch: int
    device: str
    backbones: dict[str, str]
    pairing: str
    unlabelled_pairs: int = 0  # unlabelled recordings the training learns from (0: none or switched off)
    active_terms: list[str] = field(default_factory=list)  # loss terms that take part (weight > 0, data present)
    term_ramp: float = 0.0  # share of training over which the ramped terms grow to their weights

    def summary(self) -> str:
        """The run's start in one line, as the console prints it and the Train page logs it."""
        sizes = ", ".join(f"{name} {size}" for name, size in self.train_sizes.items())
        backbones = ", ".join(f"{name} {backbone}" for name, backbone in self.backbones.items())
        unlabelled = f", {self.unlabelled_pairs} unlabelled pairs" if self.unlabelled_pairs else ""
        return (f"Training on {self.device} (backbones: {backbones}); training samples: {sizes}; "
                f"data {self.pairing}{unlabelled}; run folder {self.run_dir}")

    def send_to(self, handler: TrainingEventHandler) -> None:
        handler.on_run_started(self)


@dataclass
class BatchEnded:
    epoch: int  # 1-based
    step: int  # 1-based within the epoch
    steps_per_epoch: int
    global_step: int
    losses: dict[str, float]  # "cl", "aux", "adv", "mod", "perp", "total" (unweighted terms, weighted total)
    progress: float  # 0..1 over the whole run
    eta_s: float | None
    samples_per_s: float

    def send_to(self, handler: TrainingEventHandler) -> None:
        handler.on_batch_ended(self)


@dataclass
class EpochEnded:
    epoch: int
    epochs: int
    train_losses: dict[str, float]  # epoch means
    val_metrics: dict[str, dict[str, float]]  # modality -> accuracy, weighted_f1, macro_f1, loss
    progress: float
    eta_s: float | None
    elapsed_s: float
    epoch_time_s: float

    def send_to(self, handler: TrainingEventHandler) -> None:
        handler.on_epoch_ended(self)


@dataclass
class TeachingChanged:
    """Who teaches whom on the unlabelled recordings changed as an epoch starts (see losses.teaching_direction)."""

    epoch: int  # the epoch that trains with this direction
    teachers: dict[str, list[str]]  # modality -> the peers it mimics on unlabelled recordings
    text: str  # the same sentence for the log, the console and the Train page

    def send_to(self, handler: TrainingEventHandler) -> None:
        handler.on_teaching_changed(self)


@dataclass
class StageProgress:
    """A stage after the epochs (the teaching modality's self-training) advanced; ``text`` says where it is."""

    stage: str  # e.g. "self-training strong"
    fraction: float  # 0..1 of the stage
    text: str

    def send_to(self, handler: TrainingEventHandler) -> None:
        handler.on_stage_progress(self)


@dataclass
class BestModelSaved:
    epoch: int
    improved: list[str]  # modalities whose validation weighted F1 improved
    bundle_path: str

    def send_to(self, handler: TrainingEventHandler) -> None:
        handler.on_best_model_saved(self)


@dataclass
class RunEnded:
    status: str  # "finished", "stopped" or "failed"
    reason: str
    run_dir: str
    bundle_path: str | None
    epochs_done: int
    test_metrics: dict[str, dict] = field(default_factory=dict)  # modality -> metrics (see metrics.py)

    def send_to(self, handler: TrainingEventHandler) -> None:
        handler.on_run_ended(self)


TrainingEvent = (DataProgress | RunStarted | BatchEnded | EpochEnded | TeachingChanged | StageProgress | BestModelSaved
                 | RunEnded)
EventCallback = Callable[[TrainingEvent], None]  # where a job sends its events
TRAINING_EVENTS: tuple[type, ...] = get_args(TrainingEvent)


class TrainingEventHandler(Protocol):
    """What reads a training's events: one method per event. An implementation defines all of them
    (an event it has nothing to do with gets a method that says why), so a new event cannot be
    forgotten by one of them: tests/test_training_events.py checks every implementation."""

    def on_data_progress(self, event: DataProgress) -> None: ...

    def on_run_started(self, event: RunStarted) -> None: ...

    def on_batch_ended(self, event: BatchEnded) -> None: ...

    def on_epoch_ended(self, event: EpochEnded) -> None: ...

    def on_teaching_changed(self, event: TeachingChanged) -> None: ...

    def on_stage_progress(self, event: StageProgress) -> None: ...

    def on_best_model_saved(self, event: BestModelSaved) -> None: ...

    def on_run_ended(self, event: RunEnded) -> None: ...


def send_event(handler: TrainingEventHandler, event: TrainingEvent) -> None:
    """Call the handler's method for ``event``; anything that is not a training event is an error."""
    if not isinstance(event, TRAINING_EVENTS):
        raise TypeError(f"{event!r} is not a training event (one of {', '.join(e.__name__ for e in TRAINING_EVENTS)}).")
    event.send_to(handler)
