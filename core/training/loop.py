"""One training run's loop as named steps: prepare, train one epoch, evaluate and select, write.

:func:`train_loop` runs them in order on one :class:`TrainingSession`; each step takes the session
(and the run it reports to), so a test can run a step on its own. The run's lifecycle around the
loop (claiming the folder, reading the data, failures) is :mod:`discomkd.training.trainer`.
"""

from __future__ import annotations

import math
import time
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import distributed
from ..config import LossWeights, TrainingConfig, ramp_explanation
from ..data.augment import augment_batch
from ..data.dataset import MultiModalDataset
from ..data.spec import ModalitySpec
from ..data.split import split_group_lines
from ..errors import DisComKDError, TrainingError
from ..model.bundle import first_non_finite_weight, make_metadata, save_bundle
from ..model.losses import (
    agreement_loss,
    discomkd_loss_terms,
    grl_factor,
    ramp_factor,
    self_labelling,
    teaching_direction,
    teaching_text,
    unlabelled_pair_loss,
    weighted_total,
)
from ..model.networks import ARCHITECTURES, DisCoMKD, resolve_backbone
from ..storage import runs
from ..storage.atomic import atomic_write
from ..model.calibration import calibrated_probabilities, calibration_report, fit_calibration
from .calibrate import fit_branch_calibration
from .convergence import train_longer_advice
from .evaluation import branch_outputs, metrics_from_logits
from .events import (BatchEnded, BestModelSaved, EpochEnded, EventCallback, RunEnded, RunStarted, StopToken,
                     TeachingChanged)
from .metrics import pca_2d
from .preparation import PreparedModality, prepare_modalities
from .precision import autocast_dtype, training_layout
from .schedule import epoch_orders, learning_rate_at, lower_learning_rate_advice, make_optimizer
from .teacher_stage import self_train_teachers

MAX_EMBEDDING_POINTS = 1500  # per modality, for the 2-D projection on the results page
MAX_SKIPPED_IN_RECORD = 500  # per modality in run.json; skipped.tsv beside it lists every one


class ActiveRun:
    """The run folder a training writes to, with its record, events out and the stop flag in."""

    def __init__(self, config: TrainingConfig, run_dir: Path, emit: EventCallback, stop: StopToken,
                 dist: distributed.DistributedContext | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.emit = emit
        self.stop = stop
        self.record: dict = {}
        self.dist = dist or distributed.DistributedContext()

    def log(self, line: str) -> None:
        if not self.dist.is_writer:
            return
        try:
            runs.append_log(self.run_dir, line)
        except DisComKDError:
            pass  # the log is best effort: a full disk is reported by the write that matters

    def write_record(self, **updates) -> None:
        self.record.update(updates)
        if self.dist.is_writer:
            runs.write_run_record(self.run_dir, self.record)


@dataclass
class TrainingSession:
    """What the loop's steps share: the model and its optimiser, the training data on the device,
    the random generator, the epochs to run, and each modality's best validation score and weights."""

    config: TrainingConfig
    device: torch.device
    names: list[str]
    classes: list[str]
    prepared: dict[str, PreparedModality]
    specs: dict[str, ModalitySpec]
    backbones: dict[str, str]
    model: DisCoMKD
    train_model: nn.Module  # the model, or its DistributedDataParallel wrapper under torchrun
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    use_amp: bool
    amp_dtype: torch.dtype
    generator: torch.Generator
    start_epoch: int
    target_epochs: int
    history: list[dict]
    best: dict[str, dict]
    best_states: dict[str, dict[str, torch.Tensor]]
    train_x: dict[str, torch.Tensor]
    train_y: dict[str, torch.Tensor]
    train_sizes: dict[str, int]
    paired: bool  # rows aligned across modalities: one shared batch order
    steps_per_epoch: int
    unlabelled_x: dict[str, torch.Tensor] | None = None  # unlabelled recordings, row i the same in every modality
    teachers: dict[str, list[str]] = field(default_factory=dict)  # who teaches whom on them this epoch
    # The best validation scores when the teachers were last chosen: a new direction must hold on two.
    earlier_scores: dict[str, float] | None = None
    # Per modality, the temperature and uncertain-answer threshold of its best weights (fitted on validation).
    calibration: dict[str, dict] = field(default_factory=dict)
    # Per modality, the validation logits of its best weights: the calibration is fitted on them
    # without a second validation pass (empty after continuing a run: then the pass is made).
    best_val_logits: dict[str, torch.Tensor] = field(default_factory=dict)
    # Per modality retrained after the epochs (teacher_stage.py): its best epoch and validation curve
    # there, and the joint classifier's test metrics, for the test results.
    stage_metrics: dict[str, dict] = field(default_factory=dict)
    # With self-labels: per modality, the validation logits of its latest weights, and the temperature
    # fitted on them at the epoch's start, at which its own predictions' confidence is read.
    latest_val_logits: dict[str, torch.Tensor] = field(default_factory=dict)
    self_label_temperatures: dict[str, float] = field(default_factory=dict)
    stage_notes: list[str] = field(default_factory=list)  # what that stage did, for the run's end
    # The processes training together (torchrun), which must all stop at the same step when one diverges.
    dist: distributed.DistributedContext = field(default_factory=distributed.DistributedContext)

    @property
    def unlabelled_pairs(self) -> int:
        """How many unlabelled recordings the training learns from (0: none, or the term is off)."""
        return 0 if self.unlabelled_x is None else int(next(iter(self.unlabelled_x.values())).shape[0])

    @property
    def split_groups(self) -> dict[str, dict]:
        """Per modality split by groups of files, which groups each part holds (SplitIndices.group_record)."""
        return {n: p.grouping for n, p in self.prepared.items() if p.grouping is not None}


@dataclass
class RunClock:
    """Steps done since the loop started, for the progress and time-left estimates."""

    total_steps: int
    t_start: float = field(default_factory=time.perf_counter)
    done_steps: int = 0


@dataclass
class EpochTraining:
    """What one epoch of training steps summed up (losses per term), and whether a stop cut it short."""

    sums: dict[str, float]
    t_epoch: float
    steps: int = 0
    data_time: float = 0.0
    step_time: float = 0.0
    stopped: bool = False


def train_loop(run: ActiveRun, dataset: MultiModalDataset, device: torch.device, *, run_name: str | None,
               resume_from: Path | None, extra_epochs: int) -> RunEnded:
    """Train for the run's epochs (or ``extra_epochs`` more from its checkpoint), then test the best weights."""
    session = prepare_session(run, dataset, device, resume_from=resume_from, extra_epochs=extra_epochs)
    start_run_record(run, session, dataset, run_name)
    clock = RunClock((session.target_epochs - session.start_epoch) * session.steps_per_epoch)
    stopped = False
    epoch = session.start_epoch
    for epoch in range(session.start_epoch + 1, session.target_epochs + 1):
        trained = train_one_epoch(run, session, epoch, clock)
        if trained.stopped:
            stopped = True
            epoch -= 1
            break
        val_metrics, improved = evaluate_and_select(session, epoch)
        write_epoch(run, session, epoch, trained, val_metrics, improved, clock)
    if not stopped and epoch > session.start_epoch:  # `continue --epochs 0` only recalibrates
        stopped = self_train_teachers(run, session, calibrate_modality)
        if session.stage_metrics and run.dist.is_writer:
            save_checkpoint(run, session, epoch)  # a later `continue` starts from the kept classifiers
    return finish_run(run, session, epoch, stopped)


def prepare_session(run: ActiveRun, dataset: MultiModalDataset, device: torch.device, *,
                    resume_from: Path | None = None, extra_epochs: int = 0) -> TrainingSession:
    """Seed, split and standardise the data, build the model and optimiser (restored from the
    checkpoint when continuing) and move the training data to the device."""
    names, classes = dataset.names, dataset.classes
    torch.manual_seed(run.config.seed)
    generator = torch.Generator().manual_seed(run.config.seed)
    prepared = prepare_modalities(run.config, dataset)
    specs = {n: p.spec for n, p in prepared.items()}
    backbones = session_backbones(run, specs, device, resume_from)
    model = DisCoMKD(names, {n: specs[n].input_shape for n in names}, backbones, run.config.embed_dim,
                     len(classes)).to(device)
    model = training_layout(model)
    optimizer = make_optimizer(run.config, model.parameters())
    if resume_from is None:
        start = StartingPoint.first_epoch(names, run.config.epochs)
    else:
        start = restore_checkpoint(run, model, optimizer, generator, classes, specs, extra_epochs)
    config = run.config  # continuing, it trains to the start's target epochs
    data_fields = _training_data_fields(config, dataset, prepared, device)
    return TrainingSession(
        config=config, device=device, names=names, classes=classes, prepared=prepared, specs=specs,
        backbones=backbones, model=model, optimizer=optimizer, generator=generator,
        # Under torchrun: DistributedDataParallel, and each process takes its part of every batch.
        train_model=run.dist.wrap(model, config.batch_size), dist=run.dist,
        start_epoch=start.epoch, target_epochs=start.target_epochs, history=start.history, best=start.best,
        best_states=start.best_states, teachers=start.teachers, stage_metrics=start.stage_metrics,
        **_mixed_precision_fields(config, device), **data_fields,
    )


@dataclass
class StartingPoint:
    """Where a run's epochs start: the first one, or, continuing, the epoch its checkpoint saved, with
    the history, best scores and weights, and teaching direction up to there."""

    epoch: int  # the epochs done before this training (0: a new run)
    target_epochs: int
    history: list[dict]
    best: dict[str, dict]
    best_states: dict[str, dict[str, torch.Tensor]]
    teachers: dict[str, list[str]]
    stage_metrics: dict[str, dict] = field(default_factory=dict)  # classifiers kept from teacher_stage.py

    @classmethod
    def first_epoch(cls, names: list[str], epochs: int) -> StartingPoint:
        return cls(0, epochs, [], {n: {"best_epoch": 0, "val_weighted_f1": -1.0} for n in names}, {}, {})


def session_backbones(run: ActiveRun, specs: dict[str, ModalitySpec], device: torch.device,
                      resume_from: Path | None) -> dict[str, str]:
    """Each modality's encoder architecture: what the run's settings resolve to on this device, except
    that a continued run keeps the architectures its record names (runs saved before the compact CNN's
    pool-first form keep the batch-norm-first one; a run started on a CPU keeps its compact CNN on a GPU)."""
    resolved = {n: resolve_backbone(run.config.backbone, specs[n].kind, device.type, specs[n].input_shape) for n in specs}
    record = runs.read_run_record(resume_from) if resume_from is not None else None
    recorded = record.get("backbones") if isinstance(record, dict) else None
    if not isinstance(recorded, dict):
        return resolved
    return {n: recorded[n] if recorded.get(n) in ARCHITECTURES else resolved[n] for n in specs}


def restore_checkpoint(run: ActiveRun, model: DisCoMKD, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                       classes: list[str], specs: dict[str, ModalitySpec], extra_epochs: int) -> StartingPoint:
    """Continuing a run: the model, optimiser and random generator as its checkpoint left them; the run's
    config trains ``extra_epochs`` more and its record is read back. Says so when there is no checkpoint
    or the data changed since."""
    checkpoint_path = run.run_dir / runs.CHECKPOINT_FILE
    if not checkpoint_path.exists():
        saved = (" Its model file from the epochs it did train can still be used for prediction."
                 if (run.run_dir / runs.BUNDLE_FILE).exists() else "")
        raise TrainingError("This run has no checkpoint to continue from (it was stopped or interrupted before "
                            f"the end of its first epoch was saved).{saved} Start a new training instead.")
    check_data_unchanged(runs.read_run_record(run.run_dir), classes, specs, run.run_dir)
    state = _read_checkpoint(checkpoint_path, specs)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:  # a change check_data_unchanged cannot see (an edited record)
        raise TrainingError(
            f"The saved training state no longer fits the data in the modality folders ({str(exc)[:200]}). "
            "Start a new training on the data as it is now."
        ) from exc
    # A state saved as a training diverged (by an older version) must not be trained on or saved as a model.
    saved = {"the latest weights": state["model"], **{f"the best weights of '{n}'": w
                                                      for n, w in state["best_states"].items()}}
    broken = [f"{what} ({key})" for what, weights in saved.items() if (key := first_non_finite_weight(weights))]
    if broken:
        raise TrainingError(
            f"The saved training state holds weights that are not finite numbers (NaN or infinite): "
            f"{', '.join(broken)}. The training that saved it diverged, so it cannot be continued; start a new "
            f"training with a lower learning rate (the run in '{run.run_dir}' and its model file are kept).")
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    done = int(state["epoch"])
    start = StartingPoint(done, done + int(extra_epochs), runs.read_history(run.run_dir)[:done],
                          {n: dict(state["best"][n]) for n in specs}, state["best_states"],
                          state.get("teachers", {}),  # older checkpoints have no teachers: decided afresh
                          {n: m for n, m in (state.get("stage_metrics") or {}).items()
                           if n in specs and isinstance(m, dict)})
    run.config = replace(run.config, epochs=start.target_epochs)
    run.record = runs.read_run_record(run.run_dir)
    return start


def _read_checkpoint(path: Path, specs: dict[str, ModalitySpec]) -> dict:
    """The checkpoint's state, shaped as write_epoch saves it; a damaged, truncated or foreign file is a
    TrainingError that says the run's model is still there (never torch's own advice to load it unsafely)."""
    try:
        # torch.save always writes a zip archive; anything else would only reach torch's legacy reader.
        state = torch.load(path, map_location="cpu", weights_only=True) if zipfile.is_zipfile(path) else None
        ok = (isinstance(state, dict) and isinstance(state.get("model"), dict) and isinstance(state.get("optimizer"), dict)
              and isinstance(state.get("best"), dict) and isinstance(state.get("best_states"), dict)
              and all(isinstance(state["best"].get(n), dict) for n in specs)
              and all(isinstance(w, dict) for w in state["best_states"].values())
              and isinstance(state.get("epoch"), int) and isinstance(state.get("generator"), torch.Tensor))
    except Exception:  # noqa: BLE001 - a truncated zip, foreign pickled objects, a file that is not torch's
        ok = False
    if not ok:
        model = path.parent / runs.BUNDLE_FILE
        kept = (f" Its model file '{model}' is not affected and can still be used for prediction, evaluation and export."
                if model.exists() else "")
        raise TrainingError(
            f"The run's training state '{path}' is damaged (truncated, edited, or not written by DisCoM-KD Studio), so the "
            f"run cannot be continued.{kept} Start a new training to train further.")
    return state


def _mixed_precision_fields(config: TrainingConfig, device: torch.device) -> dict:
    """The session's use_amp, amp_dtype and scaler: on a GPU bfloat16 where it has it, else float16 with
    a scaler; on a CPU bfloat16 where the CPU computes it natively (elsewhere it is emulated, slower)."""
    dtype = autocast_dtype(device, config.mixed_precision)
    use_amp, amp_dtype = dtype is not None, dtype or torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    return {"use_amp": use_amp, "amp_dtype": amp_dtype, "scaler": scaler}


def _training_data_fields(config: TrainingConfig, dataset: MultiModalDataset, prepared: dict[str, PreparedModality],
                          device: torch.device) -> dict:
    """The session's training tensors (train_x, train_y, unlabelled_x), their sizes, whether they are
    paired, and the steps an epoch takes."""
    names = dataset.names
    # Training data lives on the device when it is a GPU (one copy instead of one per batch).
    train_x = {}
    for n in names:
        x = prepared[n].x["train"]
        if device.type == "cuda":
            x = x.pin_memory().to(device, non_blocking=True)
        train_x[n] = x
    train_y = {n: prepared[n].y["train"].to(device) for n in names}
    train_sizes = {n: int(prepared[n].y["train"].shape[0]) for n in names}
    # Unlabelled recordings teach only when a validation score can tell which modality to trust.
    unlabelled_x = None
    if (config.weights.unlabelled > 0 and all(prepared[n].unlabelled is not None for n in names)
            and all(prepared[n].y["val"].numel() for n in names)):
        unlabelled_x = {n: prepared[n].unlabelled.to(device) if device.type == "cuda" else prepared[n].unlabelled
                        for n in names}
    return {
        "train_x": train_x, "train_y": train_y, "train_sizes": train_sizes, "unlabelled_x": unlabelled_x,
        # Paired files come aligned row by row: one shared order keeps each batch the same samples in
        # every modality, which the agreement term compares sample by sample.
        "paired": dataset.report.pairing.status == "paired",
        "steps_per_epoch": max(1, math.ceil(max(train_sizes.values()) / config.batch_size)),
    }


def check_data_unchanged(record: dict, classes: list[str], specs: dict[str, ModalitySpec], run_dir: Path) -> None:
    """Continuing needs the classes and each modality's input as the run was trained on them; say
    what changed (classes added, removed or renamed; channels, kind or size) and what to do."""
    changes = []
    before = list(record.get("classes") or classes)
    added, removed = [c for c in classes if c not in before], [c for c in before if c not in classes]
    if added and removed and len(added) == len(removed):
        changes.append("classes renamed (or replaced): " + ", ".join(f"'{o}' is now '{n}'" for o, n in zip(removed, added)))
    else:
        if added:
            changes.append(f"classes added: {', '.join(added)}")
        if removed:
            changes.append(f"classes removed (no usable file left): {', '.join(removed)}")
    for name, spec in specs.items():
        old = (record.get("specs") or {}).get(name)
        if not old:
            continue
        if old.get("kind") != spec.kind:
            changes.append(f"{name}: read as {spec.kind} now, {old.get('kind')} before")
        elif old.get("channels") != spec.channels:
            changes.append(f"{name}: {spec.channels} channel(s) now, {old.get('channels')} before")
        elif list(spec.input_shape) != list(ModalitySpec.from_dict(old).input_shape):
            was = "x".join(map(str, ModalitySpec.from_dict(old).input_shape))
            changes.append(f"{name}: inputs of {'x'.join(map(str, spec.input_shape))} now, {was} before")
    if changes:
        raise TrainingError(
            f"The data changed since this run was trained, so it cannot be continued: {'; '.join(changes)}. "
            "Put the modality folders back as they were to continue it, or start a new training on the data as it "
            f"is now (the run in '{run_dir}' and its model are kept)."
        )


def start_run_record(run: ActiveRun, session: TrainingSession, dataset: MultiModalDataset, run_name) -> None:
    """Write the run record as the epochs start (settings, data, sizes) and announce the start."""
    config, names = session.config, session.names
    if not run.record:
        run.record = {
            "name": run_name or "+".join(names),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    skipped = dataset.report.skipped
    # run.json is rewritten every epoch, so it keeps the first skipped files; the list beside it has all.
    if run.dist.is_writer and any(skipped.values()):
        runs.write_skipped_list(run.run_dir, skipped)
    run.write_record(
        status="running",
        config=config.to_dict(),
        classes=session.classes,
        specs={n: session.specs[n].to_dict() for n in names},
        backbones=session.backbones,
        device=str(session.device),
        mixed_precision=mixed_precision_name(session),
        world_size=run.dist.world_size,
        epochs_target=session.target_epochs,
        epochs_done=session.start_epoch,
        best=session.best,
        data={
            "pairing": dataset.report.pairing.detail,
            "unlabelled_pairs": session.unlabelled_pairs,
            "unlabelled_dropped": dataset.report.unlabelled_dropped,
            "unlabelled_unused": dataset.report.unlabelled_unused_text(),
            "counts": dataset.report.counts,
            "missing": dataset.report.missing,
            "notices": dataset.report.notices,
            "skipped": {n: [{"path": s.path, "reason": s.reason} for s in skipped[n][:MAX_SKIPPED_IN_RECORD]]
                        for n in names},
            "skipped_count": {n: len(skipped[n]) for n in names},
            "skipped_list": runs.SKIPPED_FILE if any(skipped.values()) else None,
            "train_sizes": session.train_sizes,
            "validation_sizes": validation_sizes(session),
            "split_groups": session.split_groups,
        },
    )
    active = config.training_weights(session.unlabelled_pairs).active_terms(session.unlabelled_pairs)
    run.log(f"start: epochs {session.start_epoch + 1}..{session.target_epochs} on {session.device}, "
            f"backbones {session.backbones}, train sizes {session.train_sizes}")
    for line in split_group_lines(session.split_groups):
        run.log(line)
    if dataset.report.unlabelled_unused_text():
        run.log(dataset.report.unlabelled_unused_text())
    if config.weights.agree > 0 and "agree" not in active:
        run.log(f"L_agree off while learning from {session.unlabelled_pairs} unlabelled recordings (measured to "
                "cost the weak sensor there; --agree-with-unlabelled or the Configure page keeps it)")
    ramp_note = ramp_explanation(config.term_ramp, session.target_epochs, active)
    if ramp_note and session.start_epoch < config.term_ramp * session.target_epochs:
        run.log(ramp_note)
    run.emit(RunStarted(str(run.run_dir), names, session.classes, session.train_sizes, session.start_epoch,
                        session.target_epochs, session.steps_per_epoch, device_text(session), session.backbones,
                        dataset.report.pairing.status,
                        session.unlabelled_pairs, active, config.term_ramp))


def validation_sizes(session: TrainingSession) -> dict[str, int]:
    """Validation samples per modality (what a gain in validation F1 can resolve)."""
    return {n: int(session.prepared[n].y["val"].shape[0]) for n in session.names}


def mixed_precision_name(session: TrainingSession) -> str | None:
    """'bfloat16' or 'float16' when the steps autocast to it, else None (float32)."""
    return str(session.amp_dtype).removeprefix("torch.") if session.use_amp else None


def device_text(session: TrainingSession) -> str:
    """'cpu', or 'cpu, bfloat16 mixed precision' when the steps run in reduced precision."""
    name = mixed_precision_name(session)
    return f"{session.device}, {name} mixed precision" if name else str(session.device)


def train_one_epoch(run: ActiveRun, session: TrainingSession, epoch: int, clock: RunClock) -> EpochTraining:
    """One epoch of training steps (one batch per modality each), a BatchEnded event after each;
    a stop request ends it at the next step, marked ``stopped``."""
    config, names = session.config, session.names
    steps_per_epoch, target_epochs, start_epoch = session.steps_per_epoch, session.target_epochs, session.start_epoch
    session.model.train()
    trained = EpochTraining(sums={k: 0.0 for k in (*LossWeights.TERMS, "total")}, t_epoch=time.perf_counter())
    order = epoch_orders(session.train_sizes, steps_per_epoch, config.batch_size, session.generator,
                         shared=session.paired)
    teachers = _update_teaching(run, session, epoch)
    for step in range(1, steps_per_epoch + 1):
        if run.dist.any_rank(run.stop.is_set()):  # a stop on one rank stops all at the same step
            trained.stopped = True
            break
        t_step = time.perf_counter()
        inputs, labels = _step_batch(run, session, order, step, teachers)
        trained.data_time += time.perf_counter() - t_step
        progress_in_run = ((epoch - 1) + (step - 1) / steps_per_epoch) / target_epochs
        losses = _training_step(session, inputs, labels, teachers, progress_in_run, epoch, step)
        for k, v in losses.items():
            trained.sums[k] += v
        trained.steps += 1
        clock.done_steps += 1
        trained.step_time += time.perf_counter() - t_step
        elapsed = time.perf_counter() - clock.t_start
        fraction = clock.done_steps / clock.total_steps
        run.emit(BatchEnded(epoch, step, steps_per_epoch, epoch * steps_per_epoch - steps_per_epoch + step, losses,
                            (start_epoch * steps_per_epoch + clock.done_steps) / (target_epochs * steps_per_epoch),
                            elapsed / fraction * (1 - fraction) if fraction > 0 else None,
                            len(names) * config.batch_size / max(time.perf_counter() - t_step, 1e-9)))
    return trained


def _update_teaching(run: ActiveRun, session: TrainingSession, epoch: int) -> dict[str, list[str]]:
    """Who teaches whom on the unlabelled recordings this epoch (the best validation scores change
    between epochs only); a change is logged and announced."""
    if session.unlabelled_x is None:
        return {}
    scores = {n: session.best[n]["val_weighted_f1"] for n in session.names}
    # Continuing a run, the scores it ended with stand for the epoch before.
    teachers = teaching_direction(scores, session.teachers, earlier_scores=session.earlier_scores or scores)
    session.earlier_scores = scores
    if teachers != session.teachers and (any(teachers.values()) or any(session.teachers.values())):
        text = teaching_text(teachers, scores, session.config.self_label_threshold)
        run.log(f"epoch {epoch}: {text}")
        run.emit(TeachingChanged(epoch, teachers, text))
    session.teachers = teachers
    session.self_label_temperatures = self_label_temperatures(session, teachers)
    return teachers


def self_label_temperatures(session: TrainingSession, teachers: dict[str, list[str]]) -> dict[str, float]:
    """The temperature at which each self-labelling modality's confidence is read this epoch: fitted
    on validation with its latest weights (every process alike), from the logits the last epoch's
    validation kept, else (continuing a run) by a validation pass. 1 without validation data."""
    if session.config.self_label_threshold <= 0:
        return {}
    temperatures = {}
    for n in sorted(self_labelling(teachers)):
        prepared = session.prepared[n]
        logits = session.latest_val_logits.get(n)
        calibration = (fit_calibration(logits, prepared.y["val"]) if logits is not None else
                       fit_branch_calibration(session.model.branches[n], prepared.x["val"], prepared.y["val"],
                                              session.device))
        temperatures[n] = calibration["temperature"]
    return temperatures


def _step_batch(run: ActiveRun, session: TrainingSession, order: dict[str, torch.Tensor], step: int,
                teachers: dict[str, list[str]]):
    """The step's augmented batch per modality, then, when some modality has a teacher, a batch of
    unlabelled recordings after the labelled rows; this process's part under torchrun."""
    config, device, names = session.config, session.device, session.names
    inputs, labels = {}, {}
    for n in names:
        idx = order[n][(step - 1) * config.batch_size : step * config.batch_size]
        # Inputs live on the GPU under CUDA and on the CPU otherwise; .to() is a no-op when in place.
        xb = session.train_x[n].index_select(0, idx.to(session.train_x[n].device)).to(device)
        inputs[n] = augment_batch(xb, session.specs[n].augmentation, session.generator)
        labels[n] = session.train_y[n].index_select(0, idx.to(device))
        # Under torchrun this process keeps its part of the batch, augmented as a whole first so
        # that N processes see exactly the samples and augmentations one process would.
        inputs[n], labels[n] = run.dist.shard(inputs[n]), run.dist.shard(labels[n])
    if any(teachers.values()):
        pool = next(iter(session.unlabelled_x.values()))
        idx = torch.randint(pool.shape[0], (config.batch_size,), generator=session.generator)
        for n in names:
            xu = session.unlabelled_x[n].index_select(0, idx.to(session.unlabelled_x[n].device)).to(device)
            xu = augment_batch(xu, session.specs[n].augmentation, session.generator)
            inputs[n] = torch.cat([inputs[n], run.dist.shard(xu)])
    return inputs, labels


def _training_step(session: TrainingSession, inputs, labels, teachers, progress_in_run: float,
                   epoch: int, step: int) -> dict[str, float]:
    """Forward, the weighted loss terms, one optimiser update; the loss terms as numbers."""
    config, device, names = session.config, session.device, session.names
    factor = grl_factor(config.grl_schedule, config.grl_lambda, progress_in_run)
    for group in session.optimizer.param_groups:
        group["lr"] = learning_rate_at(config, progress_in_run)
    with torch.autocast(device.type, dtype=session.amp_dtype, enabled=session.use_amp):
        outputs = session.train_model(inputs, grl_factor=factor)
    unlabelled_logits = {}
    if any(teachers.values()):  # the unlabelled rows follow the labelled ones
        rows = {n: labels[n].shape[0] for n in names}
        unlabelled_logits = {n: outputs[n]["logits"][rows[n]:] for n in names}
        outputs = {n: {k: v[: rows[n]] for k, v in outputs[n].items()} for n in names}
    terms = discomkd_loss_terms(outputs, labels, names, config.orthogonality)
    terms["agree"] = agreement_loss({n: outputs[n]["logits"] for n in names}, labels, session.paired,
                                    len(session.classes), config.agree_temperature)
    terms["unlabelled"] = (unlabelled_pair_loss(unlabelled_logits, teachers, config.agree_temperature,
                                                config.self_label_threshold, session.self_label_temperatures)
                           if unlabelled_logits else terms["cl"].detach() * 0.0)
    total = weighted_total(terms, config.training_weights(session.unlabelled_pairs),
                           ramp_factor(progress_in_run, config.term_ramp))
    finite = bool(torch.isfinite(total))
    # Under torchrun a NaN on one process (its part of the batch) stops every process at this step; one
    # failing alone would leave the others waiting in DDP's all-reduce until torchrun ends them.
    if session.dist.any_rank(not finite):
        became = float(total.detach()) if not finite else "NaN or infinite on another process"
        raise diverged_error(session, f"the loss became {became} at epoch {epoch}, step {step}")
    session.optimizer.zero_grad(set_to_none=True)
    session.scaler.scale(total).backward()
    session.scaler.step(session.optimizer)
    session.scaler.update()
    values = torch.stack([terms[k].detach() for k in LossWeights.TERMS] + [total.detach()]).float().cpu().tolist()
    return dict(zip((*LossWeights.TERMS, "total"), values))


def evaluate_and_select(session: TrainingSession, epoch: int) -> tuple[dict[str, dict], list[str]]:
    """Validation metrics per modality; a modality whose weighted F1 beats its best so far keeps
    this epoch's weights (model selection per modality, as in the paper). Returns the metrics and
    the modalities that improved."""
    # Weights that are no longer finite numbers must never become a "best" model: stop instead.
    # Under torchrun every process decides together: BatchNorm statistics are each process's own.
    broken = first_non_finite_weight(session.model.state_dict())
    if session.dist.any_rank(bool(broken)):
        raise diverged_error(session, f"weights became NaN or infinite at epoch {epoch} "
                                      f"({broken or 'on another process'})")
    evaluated = {}
    for n in session.names:
        prepared = session.prepared[n]
        logits = branch_outputs(session.model.branches[n], prepared.x["val"], session.device).get("logits")
        metrics = metrics_from_logits(logits, prepared.y["val"], session.classes) if logits is not None else None
        evaluated[n] = logits, metrics
        if logits is not None and session.config.self_label_threshold > 0:
            session.latest_val_logits[n] = logits
    # Checked for every modality before any is selected, so that no weights of this epoch become a "best".
    diverged = next((f"the validation loss of '{n}' became {m['loss']}" for n, (_, m) in evaluated.items()
                     if m and not math.isfinite(m["loss"])), "")
    if session.dist.any_rank(bool(diverged)):
        raise diverged_error(session, f"{diverged or 'the validation loss became NaN or infinite on another process'} "
                                      f"at epoch {epoch}")
    val_metrics = {}
    improved = []
    for n, (logits, metrics) in evaluated.items():
        branch = session.model.branches[n]
        score = metrics["weighted_f1"] if metrics else float(epoch)  # no validation data: keep the latest
        if metrics:
            val_metrics[n] = {k: metrics[k] for k in ("accuracy", "weighted_f1", "macro_f1", "loss")}
        if score > session.best[n]["val_weighted_f1"]:
            session.best[n] = {"best_epoch": epoch, "val_weighted_f1": float(score)}
            session.stage_metrics.pop(n, None)  # a joint epoch beat the classifier a self-training stage kept
            session.best_states[n] = {k: v.detach().cpu().clone() for k, v in branch.state_dict().items()}
            if logits is not None:
                session.best_val_logits[n] = logits
            improved.append(n)
    session.model.train()
    return val_metrics, improved


def diverged_error(session: TrainingSession, what: str) -> TrainingError:
    """The message for a training that diverged: what happened, what to try, what was kept."""
    rate = session.config.learning_rate
    kept = ("The best model saved before that was kept (" + ", ".join(
                f"{n} epoch {b['best_epoch']}" for n, b in session.best.items() if n in session.best_states) + ")."
            if session.best_states else "No model was saved.")
    return TrainingError(
        f"The training diverged: {what}. Lower the learning rate (it is {rate:g}; {lower_learning_rate_advice(rate)}) "
        f"or the loss weights, and start a new training. {kept}"
    )


def bundle_metadata(run: ActiveRun, session: TrainingSession, test_metrics: dict | None = None) -> dict:
    config = session.config
    training = config.to_dict()
    if session.split_groups:  # which groups validation and test held out, beside the split's fractions
        training["split_groups"] = session.split_groups
    return make_metadata(session.classes, session.specs, session.backbones, config.embed_dim, session.best,
                         training, test_metrics, run.record.get("name"), session.calibration)


def calibrate_modality(session: TrainingSession, modality: str) -> dict:
    """Fit the modality's calibration on the validation split with its best weights, from the logits
    kept when they were selected when there are some, else by a validation pass of those weights."""
    prepared = session.prepared[modality]
    if modality in session.best_val_logits:
        session.calibration[modality] = fit_calibration(session.best_val_logits[modality], prepared.y["val"])
    else:
        # Continuing a run the branch holds the latest weights, not necessarily the best: lend it the
        # best ones for the pass, then give the training its own back.
        branch = session.model.branches[modality]
        latest = {k: v.detach().clone() for k, v in branch.state_dict().items()}
        branch.load_state_dict(session.best_states[modality])
        session.calibration[modality] = fit_branch_calibration(branch, prepared.x["val"], prepared.y["val"],
                                                               session.device)
        branch.load_state_dict(latest)
    return session.calibration[modality]


def write_epoch(run: ActiveRun, session: TrainingSession, epoch: int, trained: EpochTraining,
                val_metrics: dict[str, dict], improved: list[str], clock: RunClock) -> None:
    """The epoch's history line, the checkpoint, the bundle when a modality improved, the record and
    log, then EpochEnded (and BestModelSaved)."""
    config, steps_per_epoch, target_epochs = session.config, session.steps_per_epoch, session.target_epochs
    bundle_path = run.run_dir / runs.BUNDLE_FILE
    train_losses = {k: v / max(1, trained.steps) for k, v in trained.sums.items()}
    elapsed = time.perf_counter() - clock.t_start
    fraction = clock.done_steps / clock.total_steps
    session.history.append({"epoch": epoch, "train_losses": train_losses, "val": val_metrics,
                            "epoch_time_s": time.perf_counter() - trained.t_epoch, "elapsed_s": elapsed,
                            # throughput of the training steps alone (validation excluded), per modality
                            "train_samples_per_s": trained.steps * config.batch_size / max(trained.step_time, 1e-9),
                            "data_share": trained.data_time / max(trained.step_time, 1e-9)})
    if run.dist.is_writer:
        runs.write_history(run.run_dir, session.history)
        # Checkpoint before bundle: a kill between the two leaves a run that can still be continued.
        save_checkpoint(run, session, epoch)
        if improved:
            # A bundle saved mid-run (then stopped or killed) is calibrated too, in every modality: after
            # continuing a run, those that did not improve yet have no calibration in this session.
            not_yet = [n for n in session.best_states if n not in session.calibration and n not in improved]
            for n in [*improved, *not_yet]:
                calibrate_modality(session, n)
            save_bundle(bundle_path, bundle_metadata(run, session), session.best_states)
            if run.record.get("test_metrics"):
                # Continuing: the earlier test results describe weights the model no longer holds. They
                # are measured again when this training ends; one that fails leaves none, not another model's.
                runs.discard_test_results(run.run_dir)
                run.write_record(test_metrics={})
                run.log(f"epoch {epoch}: a new best model replaced the one the earlier test results describe; "
                        "they are measured again when this training ends")
    run.write_record(epochs_done=epoch, best=session.best)
    val_text = ", ".join(f"{n} acc {m['accuracy']:.3f} wF1 {m['weighted_f1']:.3f}" for n, m in val_metrics.items())
    run.log(f"epoch {epoch}/{target_epochs}: total loss {train_losses['total']:.4f}; val {val_text or 'n/a'}")
    run.emit(EpochEnded(epoch, target_epochs, train_losses, val_metrics,
                        (session.start_epoch * steps_per_epoch + clock.done_steps) / (target_epochs * steps_per_epoch),
                        elapsed / fraction * (1 - fraction) if fraction > 0 else None, elapsed,
                        time.perf_counter() - trained.t_epoch))
    if improved:
        run.emit(BestModelSaved(epoch, improved, str(bundle_path)))


def save_checkpoint(run: ActiveRun, session: TrainingSession, epoch: int) -> None:
    """What `continue` starts from: the latest weights, the optimiser, each modality's best weights."""
    checkpoint = {"model": session.model.state_dict(), "optimizer": session.optimizer.state_dict(),
                  "epoch": epoch, "best": session.best, "best_states": session.best_states,
                  "teachers": session.teachers, "generator": session.generator.get_state(),
                  "stage_metrics": session.stage_metrics}
    atomic_write(run.run_dir / runs.CHECKPOINT_FILE, lambda fh: torch.save(checkpoint, fh))


def finish_run(run: ActiveRun, session: TrainingSession, epoch: int, stopped: bool) -> RunEnded:
    """Test each modality with its best weights, save the embeddings' 2-D view and the final bundle."""
    status = "stopped" if stopped else "finished"
    if not run.dist.is_writer:  # rank 0 evaluates on the test split and writes the results
        return RunEnded(status, "", str(run.run_dir), None, epoch)
    if not session.best_states:
        reason = "Stopped before the first epoch ended; no model was saved."
        run.write_record(status=status, reason=reason)
        run.log(reason)
        event = RunEnded(status, reason, str(run.run_dir), None, epoch)
        run.emit(event)
        return event

    # Test metrics and embeddings with each modality's best weights.
    test_metrics = {}
    test_predictions = {}
    emb_inv, emb_inf, emb_mod, emb_label = [], [], [], []
    for k, n in enumerate(session.names):
        branch = session.model.branches[n]
        branch.load_state_dict(session.best_states[n])
        prepared = session.prepared[n]
        x_test, y_test = prepared.x["test"], prepared.y["test"]
        calibration = calibrate_modality(session, n)  # refitted on every finish, `continue` included
        if calibration["fitted_on"] is None:
            run.log(f"{n}: no validation split, so its probabilities are not calibrated (temperature 1)")
        if x_test.shape[0] == 0:
            continue
        out = branch_outputs(branch, x_test, session.device)  # the test split through the model once
        metrics = metrics_from_logits(out["logits"], y_test, session.classes)
        metrics["best_epoch"] = session.best[n]["best_epoch"]
        metrics.update(calibration_report(out["logits"], y_test, calibration["temperature"]))
        metrics["calibrated_on"] = calibration["fitted_on"]
        metrics["uncertain_below"] = calibration["uncertain_below"]
        metrics.update(session.stage_metrics.get(n, {}))  # a retrained classifier: its own best epoch
        test_metrics[n] = metrics
        # Each test file's prediction (calibrated probabilities), for the Results page's error browser.
        test_predictions[n] = {
            "folder": prepared.data.folder,
            "files": [prepared.data.files[int(i)] for i in prepared.rows["test"]],
            "true": y_test.tolist(),
            "predicted": out["logits"].argmax(1).tolist(),
            "probabilities": calibrated_probabilities(out["logits"], calibration["temperature"]).tolist(),
        }
        keep = slice(0, MAX_EMBEDDING_POINTS)
        emb_inv.append(out["z_inv"][keep].numpy())
        emb_inf.append(out["z_inf"][keep].numpy())
        emb_mod.append(np.full(emb_inv[-1].shape[0], k))
        emb_label.append(y_test[keep].numpy())
    if test_predictions:
        runs.write_test_predictions(run.run_dir, session.classes, test_predictions)
    if emb_inv:
        runs.save_embeddings(
            run.run_dir,
            inv_2d=pca_2d(np.concatenate(emb_inv)),
            inf_2d=pca_2d(np.concatenate(emb_inf)),
            modality=np.concatenate(emb_mod).astype(np.int64),
            label=np.concatenate(emb_label).astype(np.int64),
            modality_names=np.asarray(session.names),
        )
    bundle_path = run.run_dir / runs.BUNDLE_FILE
    save_bundle(bundle_path, bundle_metadata(run, session, test_metrics), session.best_states)
    reason = (
        f"Stopped after epoch {epoch}; the best model so far was kept." if stopped else f"Finished {epoch} epochs."
    )
    advice = "" if stopped else train_longer_advice(
        session.history, {n: b["best_epoch"] for n, b in session.best.items()}, str(run.run_dir),
        validation_sizes(session))
    if advice:
        run.log(advice)
    reason = " ".join([reason, *session.stage_notes, *session.config.split_warnings(), *([advice] if advice else [])])
    run.write_record(status=status, reason=reason, epochs_done=epoch, test_metrics=test_metrics,
                     calibration=session.calibration)
    summary = "; ".join(f"{n} test acc {m['accuracy']:.3f} wF1 {m['weighted_f1']:.3f} ECE {m['ece_uncalibrated']:.3f} -> "
                        f"{m['ece']:.3f} (T {m['temperature']:.3f})" for n, m in test_metrics.items())
    run.log(f"{status}: {summary}")
    event = RunEnded(status, reason, str(run.run_dir), str(bundle_path), epoch, test_metrics)
    run.emit(event)
    return event
