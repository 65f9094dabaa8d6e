"""Training a DisCoM-KD run: events out, a stop flag in, best model per modality kept on disk.

Usage (no Qt anywhere)::

    result = train(config, on_event=print, stop=StopToken())

Each epoch draws one batch per modality per step (unpaired modalities are shuffled on their own
and the smaller ones cycled; paired ones share one order, so a batch holds the same samples in
every modality); an epoch is as many steps as the largest modality needs. After every
epoch each modality's validation weighted F1 decides whether its branch is the new best (model
selection per modality, as in the paper); the bundle on disk is rewritten whenever one improves,
so a stop, a crash or a closed window keeps the best model so far.

This module is the run's lifecycle (the folder claimed and locked, the data read, failures turned
into a RunEnded that says what happened); the loop's steps are in loop.py.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch

from . import distributed
from ..config import LossWeights, ModalitySource, TrainingConfig
from ..data.dataset import MultiModalDataset
from ..errors import Cancelled, ConfigError, DisComKDError
from ..storage import runs
from .events import EventCallback, RunEnded, StopToken
from .loop import ActiveRun, train_loop
from .preparation import load_dataset


def select_device(requested: str = "auto") -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU. Asking for a missing device is a clear error."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if requested == "cuda" and not cuda:
        raise ConfigError("CUDA was selected, but PyTorch sees no CUDA GPU here. Choose 'auto' or 'cpu'.")
    if requested == "mps" and not mps:
        raise ConfigError("Apple MPS was selected, but it is not available here. Choose 'auto' or 'cpu'.")
    return torch.device(requested)


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.insert(0, "cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.insert(0, "mps")
    return devices


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))) or "out of memory" in str(exc).lower()


def train(
    config: TrainingConfig,
    *,
    run_dir: str | Path | None = None,
    on_event: EventCallback | None = None,
    stop: StopToken | None = None,
    dataset: MultiModalDataset | None = None,
    run_name: str | None = None,
) -> RunEnded:
    """Train DisCoM-KD from scratch. Never raises for user errors: the RunEnded says what happened."""
    return _train(config, run_dir=run_dir, on_event=on_event, stop=stop, dataset=dataset, run_name=run_name)


def continue_run(
    run_dir: str | Path,
    extra_epochs: int,
    on_event: EventCallback | None = None,
    stop: StopToken | None = None,
) -> RunEnded:
    """Continue a stopped or finished run for ``extra_epochs`` more epochs from its checkpoint (0: only
    refit the calibration of its best weights and test again)."""
    if isinstance(extra_epochs, bool) or not isinstance(extra_epochs, int) or extra_epochs < 0:
        return RunEnded("failed", f"Continue a run for zero or more epochs (got {extra_epochs}).", "", None, 0)
    record = runs.read_run_record(Path(run_dir))
    problem = run_record_problem(record)
    if problem is None:
        try:
            config = TrainingConfig.from_dict(record["config"])
        except (KeyError, TypeError, ValueError, AttributeError):  # a shape run_record_problem does not know
            problem = "its settings are not in the form DisCoM-KD Studio writes them"
    if problem is not None:
        return RunEnded("failed", f"The run record in '{run_dir}' is damaged ({problem}), so the run "
                        "cannot be continued. Start a new training.", "", None, 0)
    if runs.never_trained(Path(run_dir)):
        # Nothing was saved to continue from: train its settings from the first epoch, in its folder.
        if extra_epochs < 1:
            return RunEnded("failed", "This run ended before its first epoch, so it has nothing to recalibrate: "
                            "continue it for at least one epoch.", "", None, 0)
        return _train(replace(config, epochs=extra_epochs), run_dir=run_dir, on_event=on_event, stop=stop,
                      run_name=record.get("name"))
    return _train(config, run_dir=run_dir, on_event=on_event, stop=stop, run_name=record.get("name"),
                  resume_from=Path(run_dir), extra_epochs=extra_epochs)


def _json_kind(value) -> str:
    """What a JSON value is, in the words a user editing run.json would use."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    kinds = ((int, "a number"), (float, "a number"), (str, "text"), (list, "a list"), (dict, "an object"))
    return next((kind for t, kind in kinds if isinstance(value, t)), type(value).__name__)


def _expects(value, default) -> bool:
    """Whether a JSON value fits a setting whose default is ``default`` (a number where a number goes...)."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def run_record_problem(record) -> str | None:
    """What keeps a run record's settings from being read, in words (which field is missing or of the
    wrong type), or None. A hand edit or another tool's file gave Python's own text before
    ("TypeError: 'NoneType' object is not subscriptable")."""
    if not isinstance(record, dict):
        return f"it is {_json_kind(record)}, not an object"
    config = record.get("config")
    if not isinstance(config, dict):
        return "it has no 'config' (the training settings)" if "config" not in record else \
            f"its 'config' is {_json_kind(config)}, not an object of settings"
    modalities = config.get("modalities")
    if not isinstance(modalities, list):
        return "its settings name no modalities" if "modalities" not in config else \
            f"its 'modalities' is {_json_kind(modalities)}, not a list"
    source_example = ModalitySource(name="", folder="")  # its fields' types: text, text, object, text
    for i, m in enumerate(modalities, 1):
        if not isinstance(m, dict):
            return f"modality {i} is {_json_kind(m)}, not an object"
        which = f"the modality '{m['name']}'" if isinstance(m.get("name"), str) else f"modality {i}"
        for key in ("name", "folder"):
            if key not in m:
                return f"{which} has no '{key}'"
        for key, value in m.items():
            if key not in {f.name for f in fields(ModalitySource)}:
                return f"{which} has an unknown field '{key}'"
            default = getattr(source_example, key)
            if not _expects(value, default):
                return f"the '{key}' of {which} is {_json_kind(value)}, not {_json_kind(default)}"
    weights = config.get("weights", {})
    if not isinstance(weights, dict):
        return f"its loss 'weights' is {_json_kind(weights)}, not an object"
    for key, value in weights.items():
        if key not in LossWeights.TERMS:
            return f"its loss 'weights' has an unknown term '{key}'"
        if not _expects(value, 1.0):
            return f"the loss weight '{key}' is {_json_kind(value)}, not a number"
    split = config.get("split", [0.0] * 3)
    if not (isinstance(split, list) and len(split) == 3 and all(_expects(v, 1.0) for v in split)):
        return f"its 'split' is {_json_kind(split)}, not a list of three numbers"
    defaults = TrainingConfig()
    for f in fields(TrainingConfig):
        if f.name in config and f.name not in ("modalities", "weights", "split"):
            default = getattr(defaults, f.name)
            if not _expects(config[f.name], default):
                return f"its setting '{f.name}' is {_json_kind(config[f.name])}, not {_json_kind(default)}"
    return None


@dataclass
class RunStart:
    """What a training holds from its start to its end: torchrun's process group (one process without
    torchrun), rank 0's claim on the run folder, the run once its folder is known, and whether the
    training has begun (a failure before that leaves the folder as it was found)."""

    emit: EventCallback
    stop: StopToken
    resume_from: Path | None
    dist: distributed.DistributedContext = field(default_factory=distributed.DistributedContext)
    claim: runs.RunFolderClaim | None = None
    run: ActiveRun | None = None
    training: bool = False

    def release(self) -> None:
        self.dist.close(wait_for_others=False)  # after a failure (a no-op when already closed)
        if self.claim is not None:  # rank 0 only
            self.claim.release()


def _train(config: TrainingConfig, *, run_dir: str | Path | None = None, on_event: EventCallback | None = None,
           stop: StopToken | None = None, dataset: MultiModalDataset | None = None, run_name: str | None = None,
           resume_from: Path | None = None, extra_epochs: int = 0) -> RunEnded:
    """Claim the run folder, read the data, train; whatever fails becomes the run's end (end_after_failure)."""
    start = RunStart(on_event or _no_event, stop or StopToken(), resume_from)
    if resume_from is None:
        config = config.with_absolute_folders()
    try:
        _check_and_join(start, config, dataset)
        _open_run(start, config, run_dir, run_name)
        if dataset is None:
            dataset = _read_data(start, config)
        start.training = True
        ended = train_loop(start.run, dataset, start.dist.device, run_name=run_name, resume_from=resume_from,
                           extra_epochs=extra_epochs)
        start.dist.close()  # every rank ended normally: leave the group together
        return ended
    except Exception as exc:  # noqa: BLE001 - keep the app alive; the run's end says what happened
        return end_after_failure(start, exc)
    finally:
        start.release()


def _no_event(event) -> None:
    pass


def _check_and_join(start: RunStart, config: TrainingConfig, dataset: MultiModalDataset | None) -> None:
    """The settings checked, the device chosen and, under torchrun, the process group joined."""
    config.validate()
    if len(config.modalities) < 2 and dataset is None:
        raise ConfigError("DisCoM-KD needs at least two modalities. Add another modality folder.")
    start.dist = distributed.from_environment(select_device(config.device))
    if not start.dist.is_writer:
        start.emit = _no_event  # rank 0 reports for all


def _open_run(start: RunStart, config: TrainingConfig, run_dir: str | Path | None, run_name: str | None) -> None:
    """Rank 0 claims the run folder first (a run is never overwritten and two trainings never share a
    folder) and every rank learns where it is; a new run is recorded at once, so it is visible (and
    later "interrupted" if killed) from the first moment."""
    name = run_name or "+".join(m.name for m in config.modalities)
    if start.dist.is_writer:
        if start.resume_from is not None:
            start.claim = runs.claim_existing_run(start.resume_from)
        else:
            start.claim = runs.claim_new_run_folder(run_dir, label=name,
                                                    data_folders=[m.folder for m in config.modalities])
    run_path = Path(start.dist.broadcast(str(start.claim.path) if start.claim is not None else None))
    start.run = ActiveRun(config, run_path, start.emit, start.stop, start.dist)
    if start.resume_from is None:
        start.run.write_record(name=name, created=time.strftime("%Y-%m-%dT%H:%M:%S"), status="running",
                               epochs_done=0, config=config.to_dict())


def _read_data(start: RunStart, config: TrainingConfig) -> MultiModalDataset:
    with start.dist.leader_first():  # the cache is decoded once per machine
        dataset = load_dataset(config, start.emit, start.stop)
    if start.stop.is_set():
        raise Cancelled()
    return dataset


def end_after_failure(start: RunStart, exc: Exception) -> RunEnded:
    """The run's end after any failure. Before training, a folder this training made is removed, another
    new run records why it ended, and nothing is announced (the caller shows the returned RunEnded);
    during training the log keeps the details, the record says "failed" and RunEnded is announced."""
    run = start.run
    if start.training:
        if isinstance(exc, DisComKDError):
            run.log(f"failed: {exc}")
            return _end_failed(run, str(exc))
        run.log("failed:\n" + "".join(traceback.format_exception(exc)))
        return _end_failed(run, _unexpected_failure_reason(exc, run))
    stopped = isinstance(exc, Cancelled)
    if stopped:
        reason = "Stopped while reading the data; nothing was trained."
    elif isinstance(exc, DisComKDError):
        reason = str(exc)
    else:
        reason = (f"Reading the data failed unexpectedly ({type(exc).__name__}: {exc}). Nothing was trained; "
                  "check the modality folders and start again.")
    if run is not None and start.resume_from is None:
        if start.claim is not None and start.claim.created_here:
            start.claim.discard()
        else:
            run.log(f"failed: {reason}")
            _write_record_quietly(run, status="stopped" if stopped else "failed", reason=reason)
    return RunEnded("stopped" if stopped else "failed", reason, "", None, 0)


def _unexpected_failure_reason(exc: Exception, run: ActiveRun) -> str:
    if _is_out_of_memory(exc):
        return (f"Out of memory on {run.dist.device.type.upper()}. Lower the batch size, use the compact backbone "
                "or a smaller embedding size, and start again. The best model so far was kept.")
    return f"Training failed unexpectedly: {type(exc).__name__}: {exc}. Details are in {run.run_dir / runs.LOG_FILE}."


def _write_record_quietly(run: ActiveRun, **updates) -> None:
    try:
        run.write_record(**updates)
    except DisComKDError:
        pass  # the disk is full or read-only: the returned event still says what happened


def _end_failed(run: ActiveRun, reason: str) -> RunEnded:
    bundle = run.run_dir / runs.BUNDLE_FILE
    if run.record:
        _write_record_quietly(run, status="failed", reason=reason)
    event = RunEnded("failed", reason, str(run.run_dir), str(bundle) if bundle.exists() else None,
                     int(run.record.get("epochs_done", 0)))
    run.emit(event)
    return event
