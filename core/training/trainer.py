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
from dataclasses import replace
from pathlib import Path

import torch

from . import distributed
from ..config import TrainingConfig
from ..data.dataset import MultiModalDataset
from ..errors import Cancelled, ConfigError, DisComKDError
from ..storage import runs
from ..storage.run_lock import RunLock
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
    run_dir: str | Path | None = None,
    on_event: EventCallback | None = None,
    stop: StopToken | None = None,
    dataset: MultiModalDataset | None = None,
    run_name: str | None = None,
) -> RunEnded:
    """Train DisCoM-KD from scratch. Never raises for user errors: the RunEnded says what happened."""
    return _train(config, run_dir, on_event, stop, dataset, run_name, resume_from=None, extra_epochs=0)


def continue_run(
    run_dir: str | Path,
    extra_epochs: int,
    on_event: EventCallback | None = None,
    stop: StopToken | None = None,
) -> RunEnded:
    """Continue a stopped or finished run for ``extra_epochs`` more epochs from its checkpoint."""
    if isinstance(extra_epochs, bool) or not isinstance(extra_epochs, int) or extra_epochs < 1:
        return RunEnded("failed", f"Continue a run for at least one more epoch (got {extra_epochs}).", "", None, 0)
    record = runs.read_run_record(Path(run_dir))
    try:
        config = TrainingConfig.from_dict(record["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return RunEnded("failed", f"The run record in '{run_dir}' is damaged ({type(exc).__name__}: {exc}), so the run "
                        "cannot be continued. Start a new training.", "", None, 0)
    if runs.never_trained(Path(run_dir)):
        # Nothing was saved to continue from: train its settings from the first epoch, in its folder.
        return _train(replace(config, epochs=extra_epochs), run_dir, on_event, stop, None, record.get("name"),
                      resume_from=None, extra_epochs=0)
    return _train(config, run_dir, on_event, stop, None, record.get("name"), resume_from=Path(run_dir), extra_epochs=extra_epochs)


def _train(config, run_dir, on_event, stop, dataset, run_name, resume_from, extra_epochs) -> RunEnded:
    emit = on_event or (lambda event: None)
    stop = stop or StopToken()
    created_here = False
    dist_ctx = distributed.DistributedContext()  # one process unless torchrun started several
    lock: RunLock | None = None
    run: ActiveRun | None = None
    try:
        config.validate()
        if len(config.modalities) < 2 and dataset is None:
            raise ConfigError("DisCoM-KD needs at least two modalities. Add another modality folder.")
        dist_ctx = distributed.from_environment(select_device(config.device))
        device = dist_ctx.device
        # Rank 0 claims the folder first: a run is never overwritten and two trainings never share a folder.
        if not dist_ctx.is_writer:
            emit = lambda event: None  # noqa: E731 - rank 0 reports for all
            run_path = None
        elif resume_from is not None:
            run_path = Path(resume_from)
            lock = runs.claim_run_dir(run_path, existing=True)
        elif run_dir is not None:
            run_path = Path(run_dir).expanduser()
            created_here = not run_path.exists() or (run_path.is_dir() and not any(run_path.iterdir()))
            lock = runs.claim_run_dir(run_path, data_folders=[m.folder for m in config.modalities])
        else:
            run_path = runs.new_run_dir(label=run_name or "+".join(m.name for m in config.modalities))
            created_here = True
            lock = runs.claim_run_dir(run_path, data_folders=[m.folder for m in config.modalities])
        run_path = Path(dist_ctx.broadcast(str(run_path)))
        run = ActiveRun(config, run_path, emit, stop, dist_ctx)
        if resume_from is None:  # visible (and later "interrupted" if killed) from the first moment
            run.write_record(name=run_name or "+".join(m.name for m in config.modalities),
                             created=time.strftime("%Y-%m-%dT%H:%M:%S"), status="running", epochs_done=0,
                             config=config.to_dict())
        if dataset is None:
            with dist_ctx.leader_first():  # the cache is decoded once per machine
                dataset = load_dataset(config, emit, stop)
        if stop.is_set():
            raise Cancelled()
    except Exception as exc:  # noqa: BLE001 - whatever fails before training, the folder is released and it is said
        stopped = isinstance(exc, Cancelled)
        if stopped:
            reason = "Stopped while reading the data; nothing was trained."
        elif isinstance(exc, DisComKDError):
            reason = str(exc)
        else:
            reason = (f"Reading the data failed unexpectedly ({type(exc).__name__}: {exc}). Nothing was trained; "
                      "check the modality folders and start again.")
        if run is not None and resume_from is None:
            if created_here:
                _discard_new_run(run.run_dir, lock)
            else:
                run.log(f"failed: {reason}")
                _write_record_quietly(run, status="stopped" if stopped else "failed", reason=reason)
        if lock is not None:
            lock.release()
        dist_ctx.close(wait_for_others=False)
        return RunEnded("stopped" if stopped else "failed", reason, "", None, 0)

    try:
        ended = train_loop(run, dataset, device, run_name, resume_from, extra_epochs)
        dist_ctx.close()  # every rank ended normally: leave the group together
        return ended
    except DisComKDError as exc:
        run.log(f"failed: {exc}")
        return _end_failed(run, str(exc))
    except Exception as exc:  # keep the app alive; the log has the traceback
        run.log("failed:\n" + traceback.format_exc())
        if _is_out_of_memory(exc):
            reason = (
                f"Out of memory on {device.type.upper()}. Lower the batch size, use the compact backbone "
                "or a smaller embedding size, and start again. The best model so far was kept."
            )
        else:
            reason = f"Training failed unexpectedly: {type(exc).__name__}: {exc}. Details are in {run.run_dir / runs.LOG_FILE}."
        return _end_failed(run, reason)
    finally:
        dist_ctx.close(wait_for_others=False)  # after a failure (a no-op when already closed)
        if lock is not None:  # rank 0 only
            lock.release()


def _discard_new_run(run_path: Path, lock: RunLock | None) -> None:
    """A run that failed before training leaves nothing behind (only what this training wrote)."""
    if lock is not None:
        lock.release()
    for name in (runs.RUN_FILE, runs.LOG_FILE):
        try:
            (run_path / name).unlink(missing_ok=True)
        except OSError:
            pass
    try:
        if run_path.exists() and not any(run_path.iterdir()):
            run_path.rmdir()
    except OSError:
        pass


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
