"""Events the trainer reports; a GUI adapter turns them into Qt signals, the CLI prints them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable


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


@dataclass
class RunStarted:
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


@dataclass
class TeachingChanged:
    """Who teaches whom on the unlabelled recordings changed as an epoch starts (see losses.teaching_direction)."""

    epoch: int  # the epoch that trains with this direction
    teachers: dict[str, list[str]]  # modality -> the peers it mimics on unlabelled recordings
    text: str  # the same sentence for the log, the console and the Train page


@dataclass
class BestModelSaved:
    epoch: int
    improved: list[str]  # modalities whose validation weighted F1 improved
    bundle_path: str


@dataclass
class RunEnded:
    status: str  # "finished", "stopped" or "failed"
    reason: str
    run_dir: str
    bundle_path: str | None
    epochs_done: int
    test_metrics: dict[str, dict] = field(default_factory=dict)  # modality -> metrics (see metrics.py)


TrainingEvent = DataProgress | RunStarted | BatchEnded | EpochEnded | TeachingChanged | BestModelSaved | RunEnded
EventCallback = Callable[[TrainingEvent], None]  # where a job sends its events
