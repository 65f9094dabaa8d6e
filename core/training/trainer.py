"""The DisCoM-KD training loop: events out, a stop flag in, best model per modality kept on disk.

Usage (no Qt anywhere)::

    result = train(config, on_event=print, stop=StopToken())

Each epoch draws one batch per modality per step (unpaired modalities are shuffled on their own
and the smaller ones cycled; paired ones share one order, so a batch holds the same samples in
every modality); an epoch is as many steps as the largest modality needs. After every
epoch each modality's validation weighted F1 decides whether its branch is the new best (model
selection per modality, as in the paper); the bundle on disk is rewritten whenever one improves,
so a stop, a crash or a closed window keeps the best model so far.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import distributed
from ..config import LossWeights, TrainingConfig
from ..data.augment import augment_batch
from ..data.dataset import ModalityData, MultiModalDataset, combine_modalities
from ..data.load import load_modality
from ..data.spec import ModalitySpec
from ..data.split import SplitIndices, split_dataset, with_statistics
from ..errors import Cancelled, ConfigError, DisComKDError, TrainingError
from ..model.bundle import load_bundle, make_metadata, save_bundle
from ..model.losses import (
    agreement_loss,
    better_validated,
    discomkd_loss_terms,
    grl_factor,
    mix_paired_batch,
    mixed_pair_distillation,
    paired_alignment,
    ramp_factor,
    weighted_total,
)
from ..model.networks import DisCoMKD, resolve_backbone
from ..storage import runs
from ..storage.atomic import atomic_write
from .events import (
    BatchEnded,
    BestModelSaved,
    DataProgress,
    EpochEnded,
    RunEnded,
    RunStarted,
    StopToken,
    TrainingEvent,
)
from .metrics import classification_metrics, pca_2d

EventCallback = Callable[[TrainingEvent], None]
MAX_EMBEDDING_POINTS = 1500  # per modality, for the 2-D projection on the results page


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


@dataclass
class PreparedModality:
    """One modality ready for the loop: standardised tensors for each split, spec with statistics."""

    data: ModalityData
    spec: ModalitySpec
    x: dict[str, torch.Tensor]  # "train", "val", "test" -> (N, C, ...)
    y: dict[str, torch.Tensor]  # global class indices


def prepare_modalities(
    config: TrainingConfig,
    dataset: MultiModalDataset,
) -> dict[str, PreparedModality]:
    """Split, standardise with the training split's statistics, and, when the files are paired,
    order every split so that row i is the same (class, file stem) in every modality."""
    splits = split_dataset(dataset, tuple(config.split), config.seed)
    paired = dataset.report.pairing.status == "paired"
    reference: dict[str, dict[tuple[str, str], int]] = {}
    prepared = {}
    for k, modality in enumerate(dataset.modalities):
        split = splits[modality.name]
        if paired:
            split = _aligned_split(modality, split, reference)
        labels = dataset.global_labels(k)
        spec = with_statistics(modality.spec, modality.x[split.train])
        x = {part: torch.from_numpy(spec.normalize(modality.x[getattr(split, part)])) for part in ("train", "val", "test")}
        y = {part: torch.from_numpy(labels[getattr(split, part)]) for part in ("train", "val", "test")}
        prepared[modality.name] = PreparedModality(modality, spec, x, y)
    return prepared


def _aligned_split(modality: ModalityData, split: SplitIndices,
                   reference: dict[str, dict[tuple[str, str], int]]) -> SplitIndices:
    """The split's rows reordered by (class, stem) in the first modality's sorted order.

    split_dataset keeps pairs in the same part, so each part holds the same samples in every
    modality; only the order differs, and the sets (so every metric) are unchanged.
    """
    stems = modality.stems  # a property that builds the whole list: read it once
    parts = {}
    for part in ("train", "val", "test"):
        rows = getattr(split, part)
        keys = [(modality.classes[modality.labels[i]], stems[i]) for i in rows]
        if len(set(keys)) != len(keys):
            raise ConfigError(
                f"The modality '{modality.name}' has two files with the same name in one class, so its samples "
                "cannot be paired with the other modalities. Rename one of them."
            )
        if part not in reference:
            reference[part] = {key: i for i, key in enumerate(sorted(keys))}
        if set(keys) != set(reference[part]):
            raise ConfigError("The modalities are not paired file by file. Check that every file name exists "
                              "in every modality, or rename the files so that they differ.")
        parts[part] = rows[np.argsort([reference[part][key] for key in keys], kind="stable")]
    return SplitIndices(**parts)


def load_dataset(
    config: TrainingConfig,
    emit: EventCallback,
    stop: StopToken,
) -> MultiModalDataset:
    loaded = []
    for source in config.modalities:
        def progress(done: int, total: int, name: str = source.name) -> None:
            emit(DataProgress(f"Reading {name}", done, total))

        loaded.append(load_modality(source.folder, source.name, source.overrides, progress, stop.is_set))
    return combine_modalities(loaded)


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))) or "out of memory" in str(exc).lower()


@torch.no_grad()
def _branch_outputs(branch, x: torch.Tensor, device: torch.device, batch: int = 512) -> dict[str, torch.Tensor]:
    branch.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    for start in range(0, x.shape[0], batch):
        xb = x[start : start + batch].to(device, non_blocking=True)
        out = branch(xb)
        for key in ("logits", "z_inv", "z_inf"):
            chunks.setdefault(key, []).append(out[key].float().cpu())
    if not chunks:
        return {}
    return {k: torch.cat(v) for k, v in chunks.items()}


def _evaluate(branch, x: torch.Tensor, y: torch.Tensor, classes: list[str], device: torch.device) -> dict | None:
    if x.shape[0] == 0:
        return None
    out = _branch_outputs(branch, x, device)
    metrics = classification_metrics(y.numpy(), out["logits"].argmax(1).numpy(), classes)
    metrics["loss"] = float(F.cross_entropy(out["logits"], y))
    return metrics


class _Run:
    """State of one training session (new or continued)."""

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
    record = runs.read_run_record(Path(run_dir))
    try:
        config = TrainingConfig.from_dict(record["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return RunEnded("failed", f"The run record in '{run_dir}' is damaged ({type(exc).__name__}: {exc}), so the run "
                        "cannot be continued. Start a new training.", "", None, 0)
    return _train(config, run_dir, on_event, stop, None, record.get("name"), resume_from=Path(run_dir), extra_epochs=extra_epochs)


def _train(config, run_dir, on_event, stop, dataset, run_name, resume_from, extra_epochs) -> RunEnded:
    emit = on_event or (lambda event: None)
    stop = stop or StopToken()
    created_here = False
    dist_ctx = distributed.DistributedContext()  # one process unless torchrun started several
    lock: runs.RunLock | None = None
    run: _Run | None = None
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
            lock = runs.claim_run_dir(run_path)
        else:
            run_path = runs.new_run_dir(label=run_name or "+".join(m.name for m in config.modalities))
            created_here = True
            lock = runs.claim_run_dir(run_path)
        run_path = Path(dist_ctx.broadcast(str(run_path)))
        run = _Run(config, run_path, emit, stop, dist_ctx)
        if resume_from is None:  # visible (and later "interrupted" if killed) from the first moment
            run.write_record(name=run_name or "+".join(m.name for m in config.modalities),
                             created=time.strftime("%Y-%m-%dT%H:%M:%S"), status="running", epochs_done=0,
                             config=config.to_dict())
        if dataset is None:
            with dist_ctx.leader_first():  # the cache is decoded once per machine
                dataset = load_dataset(config, emit, stop)
        if stop.is_set():
            raise Cancelled()
    except (Cancelled, DisComKDError) as exc:
        stopped = isinstance(exc, Cancelled)
        reason = "Stopped while reading the data; nothing was trained." if stopped else str(exc)
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
        ended = _train_loop(run, dataset, device, run_name, resume_from, extra_epochs)
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


def _discard_new_run(run_path: Path, lock: runs.RunLock | None) -> None:
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


def _write_record_quietly(run: "_Run", **updates) -> None:
    try:
        run.write_record(**updates)
    except DisComKDError:
        pass  # the disk is full or read-only: the returned event still says what happened


def _end_failed(run: _Run, reason: str) -> RunEnded:
    bundle = run.run_dir / runs.BUNDLE_FILE
    if run.record:
        _write_record_quietly(run, status="failed", reason=reason)
    event = RunEnded("failed", reason, str(run.run_dir), str(bundle) if bundle.exists() else None,
                     int(run.record.get("epochs_done", 0)))
    run.emit(event)
    return event


def learning_rate_at(config: TrainingConfig, progress: float) -> float:
    """Cosine decay from the set rate to zero over the run (continuing a run re-spreads the rest)."""
    if config.lr_schedule == "cosine":
        return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return config.learning_rate


def epoch_orders(sizes: dict[str, int], steps: int, batch: int, generator: torch.Generator,
                 shared: bool) -> dict[str, torch.Tensor]:
    """Row indices for one epoch per modality: permutations cycled to ``steps * batch`` rows (smaller
    modalities repeat); one shared order when the rows are paired (every modality the same size)."""
    def order(size: int) -> torch.Tensor:
        needed = steps * batch
        repeats = math.ceil(needed / size)
        return torch.cat([torch.randperm(size, generator=generator) for _ in range(repeats)])[:needed]

    if shared:
        common = order(next(iter(sizes.values())))
        return {n: common for n in sizes}
    return {n: order(s) for n, s in sizes.items()}


def make_optimizer(config: TrainingConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate, momentum=0.9, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def _train_loop(run: _Run, dataset: MultiModalDataset, device: torch.device, run_name, resume_from, extra_epochs) -> RunEnded:
    config, emit, stop = run.config, run.emit, run.stop
    names = dataset.names
    classes = dataset.classes
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    prepared = prepare_modalities(config, dataset)
    specs = {n: p.spec for n, p in prepared.items()}
    backbones = {n: resolve_backbone(config.backbone, specs[n].kind, device.type) for n in names}
    model = DisCoMKD(names, {n: specs[n].input_shape for n in names}, backbones, config.embed_dim, len(classes)).to(device)
    optimizer = make_optimizer(config, model.parameters())

    use_amp = device.type == "cuda" and config.mixed_precision
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    start_epoch, history = 0, []
    best = {n: {"best_epoch": 0, "val_weighted_f1": -1.0} for n in names}
    best_states: dict[str, dict[str, torch.Tensor]] = {}
    target_epochs = config.epochs
    if resume_from is not None:
        checkpoint_path = run.run_dir / runs.CHECKPOINT_FILE
        if not checkpoint_path.exists():
            saved = (" Its model file from the epochs it did train can still be used for prediction."
                     if (run.run_dir / runs.BUNDLE_FILE).exists() else "")
            raise TrainingError("This run has no checkpoint to continue from (it was stopped or interrupted before "
                                f"the end of its first epoch was saved).{saved} Start a new training instead.")
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start_epoch = int(state["epoch"])
        best = {n: dict(state["best"][n]) for n in names}
        best_states = state["best_states"]
        history = runs.read_history(run.run_dir)[:start_epoch]
        target_epochs = start_epoch + int(extra_epochs)
        run.config = config = replace(config, epochs=target_epochs)
        run.record = runs.read_run_record(run.run_dir)

    # Training data lives on the device when it is a GPU (one copy instead of one per batch).
    train_x = {}
    for n in names:
        x = prepared[n].x["train"]
        if device.type == "cuda":
            x = x.pin_memory().to(device, non_blocking=True)
        train_x[n] = x
    train_y = {n: prepared[n].y["train"].to(device) for n in names}
    train_sizes = {n: int(prepared[n].y["train"].shape[0]) for n in names}
    # Paired files come aligned row by row: one shared order keeps each batch the same samples in
    # every modality, which the agreement term compares sample by sample.
    paired = dataset.report.pairing.status == "paired"
    # Mixed-pair distillation and alignment need paired rows, and a validation score to tell who
    # teaches whom.
    teaching = (paired and (config.weights.mix > 0 or config.weights.align > 0)
                and any(prepared[n].y["val"].numel() for n in names))
    steps_per_epoch = max(1, math.ceil(max(train_sizes.values()) / config.batch_size))
    # Under torchrun: DistributedDataParallel, and each process takes its part of every batch.
    train_model = run.dist.wrap(model, config.batch_size)

    if not run.record:
        run.record = {
            "name": run_name or "+".join(names),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    run.write_record(
        status="running",
        config=config.to_dict(),
        classes=classes,
        specs={n: specs[n].to_dict() for n in names},
        backbones=backbones,
        device=str(device),
        world_size=run.dist.world_size,
        epochs_target=target_epochs,
        epochs_done=start_epoch,
        best=best,
        data={
            "pairing": dataset.report.pairing.detail,
            "counts": dataset.report.counts,
            "missing": dataset.report.missing,
            "skipped": {n: [{"path": s.path, "reason": s.reason} for s in dataset.report.skipped[n][:500]] for n in names},
            "train_sizes": train_sizes,
        },
    )
    run.log(f"start: epochs {start_epoch + 1}..{target_epochs} on {device}, backbones {backbones}, train sizes {train_sizes}")
    emit(RunStarted(str(run.run_dir), names, classes, train_sizes, start_epoch, target_epochs, steps_per_epoch,
                    str(device), backbones, dataset.report.pairing.status))

    total_steps = (target_epochs - start_epoch) * steps_per_epoch
    t_start = time.perf_counter()
    done_steps = 0
    stopped = False
    bundle_path = run.run_dir / runs.BUNDLE_FILE

    def metadata(test_metrics=None) -> dict:
        return make_metadata(classes, specs, backbones, config.embed_dim, best, config.to_dict(), test_metrics, run.record.get("name"))

    epoch = start_epoch
    for epoch in range(start_epoch + 1, target_epochs + 1):
        model.train()
        t_epoch = time.perf_counter()
        order = epoch_orders(train_sizes, steps_per_epoch, config.batch_size, generator, shared=paired)
        sums = {k: 0.0 for k in (*LossWeights.TERMS, "total")}
        steps_this_epoch = 0
        data_time = step_time = 0.0
        for step in range(1, steps_per_epoch + 1):
            if run.dist.any_rank(stop.is_set()):  # a stop on one rank stops all at the same step
                stopped = True
                break
            t_step = time.perf_counter()
            inputs, labels = {}, {}
            for n in names:
                idx = order[n][(step - 1) * config.batch_size : step * config.batch_size]
                # Inputs live on the GPU under CUDA and on the CPU otherwise; .to() is a no-op when in place.
                xb = train_x[n].index_select(0, idx.to(train_x[n].device)).to(device)
                inputs[n] = augment_batch(xb, specs[n].augmentation, generator)
                labels[n] = train_y[n].index_select(0, idx.to(device))
            teachers = better_validated({n: best[n]["val_weighted_f1"] for n in names}) if teaching else {}
            # Blends of the batch's pairs ride along in the same forward pass, after the clean rows.
            mixed = mix_paired_batch(inputs, generator) if config.weights.mix > 0 and any(teachers.values()) else None
            for n in names:
                # Under torchrun this process keeps its part of the batch, augmented as a whole first so
                # that N processes see exactly the samples and augmentations one process would.
                inputs[n], labels[n] = run.dist.shard(inputs[n]), run.dist.shard(labels[n])
                if mixed is not None:
                    inputs[n] = torch.cat([inputs[n], run.dist.shard(mixed[n])])
            data_time += time.perf_counter() - t_step
            progress_in_run = ((epoch - 1) + (step - 1) / steps_per_epoch) / target_epochs
            factor = grl_factor(config.grl_schedule, config.grl_lambda, progress_in_run)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(config, progress_in_run)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                outputs = train_model(inputs, grl_factor=factor)
            mixed_logits = {}
            if mixed is not None:
                clean = {n: labels[n].shape[0] for n in names}
                mixed_logits = {n: outputs[n]["logits"][clean[n]:] for n in names}
                outputs = {n: {k: v[: clean[n]] for k, v in outputs[n].items()} for n in names}
            terms = discomkd_loss_terms(outputs, labels, names, config.orthogonality)
            terms["agree"] = agreement_loss({n: outputs[n]["logits"] for n in names}, labels, paired, len(classes),
                                            config.agree_temperature)
            terms["mix"] = (mixed_pair_distillation(mixed_logits, teachers, config.agree_temperature) if mixed_logits
                            else terms["cl"].detach() * 0.0)
            terms["align"] = paired_alignment({n: outputs[n]["z_inv"] for n in names}, teachers)
            total = weighted_total(terms, config.weights, ramp_factor(progress_in_run, config.term_ramp))
            if not torch.isfinite(total):
                raise TrainingError(
                    f"The loss became {float(total)} at epoch {epoch}, step {step}. Lower the learning rate "
                    "or the loss weights and start again. The best model so far was kept."
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
            values = torch.stack([terms[k].detach() for k in LossWeights.TERMS] + [total.detach()]).float().cpu().tolist()
            losses = dict(zip((*LossWeights.TERMS, "total"), values))
            for k, v in losses.items():
                sums[k] += v
            steps_this_epoch += 1
            done_steps += 1
            step_time += time.perf_counter() - t_step
            elapsed = time.perf_counter() - t_start
            fraction = done_steps / total_steps
            emit(BatchEnded(epoch, step, steps_per_epoch, epoch * steps_per_epoch - steps_per_epoch + step, losses,
                            (start_epoch * steps_per_epoch + done_steps) / (target_epochs * steps_per_epoch),
                            elapsed / fraction * (1 - fraction) if fraction > 0 else None,
                            len(names) * config.batch_size / max(time.perf_counter() - t_step, 1e-9)))
        if stopped:
            epoch -= 1
            break
        # Validation and per-modality model selection.
        val_metrics = {}
        improved = []
        for n in names:
            branch = model.branches[n]
            metrics = _evaluate(branch, prepared[n].x["val"], prepared[n].y["val"], classes, device)
            score = metrics["weighted_f1"] if metrics else float(epoch)  # no validation data: keep the latest
            if metrics:
                val_metrics[n] = {k: metrics[k] for k in ("accuracy", "weighted_f1", "macro_f1", "loss")}
            if score > best[n]["val_weighted_f1"]:
                best[n] = {"best_epoch": epoch, "val_weighted_f1": float(score)}
                best_states[n] = {k: v.detach().cpu().clone() for k, v in branch.state_dict().items()}
                improved.append(n)
        model.train()
        train_losses = {k: v / max(1, steps_this_epoch) for k, v in sums.items()}
        elapsed = time.perf_counter() - t_start
        fraction = done_steps / total_steps
        history.append({"epoch": epoch, "train_losses": train_losses, "val": val_metrics,
                        "epoch_time_s": time.perf_counter() - t_epoch, "elapsed_s": elapsed,
                        # throughput of the training steps alone (validation excluded), per modality
                        "train_samples_per_s": steps_this_epoch * config.batch_size / max(step_time, 1e-9),
                        "data_share": data_time / max(step_time, 1e-9)})
        if run.dist.is_writer:
            runs.write_history(run.run_dir, history)
            # Checkpoint before bundle: a kill between the two leaves a run that can still be continued.
            checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                          "best": best, "best_states": best_states, "generator": generator.get_state()}
            atomic_write(run.run_dir / runs.CHECKPOINT_FILE, lambda fh: torch.save(checkpoint, fh))
            if improved:
                save_bundle(bundle_path, metadata(), best_states)
        run.write_record(epochs_done=epoch, best=best)
        val_text = ", ".join(f"{n} acc {m['accuracy']:.3f} wF1 {m['weighted_f1']:.3f}" for n, m in val_metrics.items())
        run.log(f"epoch {epoch}/{target_epochs}: total loss {train_losses['total']:.4f}; val {val_text or 'n/a'}")
        emit(EpochEnded(epoch, target_epochs, train_losses, val_metrics,
                        (start_epoch * steps_per_epoch + done_steps) / (target_epochs * steps_per_epoch),
                        elapsed / fraction * (1 - fraction) if fraction > 0 else None, elapsed,
                        time.perf_counter() - t_epoch))
        if improved:
            emit(BestModelSaved(epoch, improved, str(bundle_path)))

    status = "stopped" if stopped else "finished"
    if not run.dist.is_writer:  # rank 0 evaluates on the test split and writes the results
        return RunEnded(status, "", str(run.run_dir), None, epoch)
    if not best_states:
        reason = "Stopped before the first epoch ended; no model was saved."
        run.write_record(status=status, reason=reason)
        run.log(reason)
        event = RunEnded(status, reason, str(run.run_dir), None, epoch)
        emit(event)
        return event

    # Test metrics and embeddings with each modality's best weights.
    test_metrics = {}
    emb_inv, emb_inf, emb_mod, emb_label = [], [], [], []
    for k, n in enumerate(names):
        branch = model.branches[n]
        branch.load_state_dict(best_states[n])
        x_test, y_test = prepared[n].x["test"], prepared[n].y["test"]
        metrics = _evaluate(branch, x_test, y_test, classes, device)
        if metrics:
            metrics["best_epoch"] = best[n]["best_epoch"]
            test_metrics[n] = metrics
            keep = slice(0, MAX_EMBEDDING_POINTS)
            out = _branch_outputs(branch, x_test[keep], device)
            emb_inv.append(out["z_inv"].numpy())
            emb_inf.append(out["z_inf"].numpy())
            emb_mod.append(np.full(out["z_inv"].shape[0], k))
            emb_label.append(y_test[keep].numpy())
    if emb_inv:
        runs.save_embeddings(
            run.run_dir,
            inv_2d=pca_2d(np.concatenate(emb_inv)),
            inf_2d=pca_2d(np.concatenate(emb_inf)),
            modality=np.concatenate(emb_mod).astype(np.int64),
            label=np.concatenate(emb_label).astype(np.int64),
            modality_names=np.asarray(names),
        )
    save_bundle(bundle_path, metadata(test_metrics), best_states)
    reason = (
        f"Stopped after epoch {epoch}; the best model so far was kept." if stopped else f"Finished {epoch} epochs."
    )
    run.write_record(status=status, reason=reason, epochs_done=epoch, test_metrics=test_metrics)
    summary = "; ".join(f"{n} test acc {m['accuracy']:.3f} wF1 {m['weighted_f1']:.3f}" for n, m in test_metrics.items())
    run.log(f"{status}: {summary}")
    event = RunEnded(status, reason, str(run.run_dir), str(bundle_path), epoch, test_metrics)
    emit(event)
    return event


def evaluate_bundle_on_folder(bundle_path: str | Path, modality: str, folder: str | Path,
                              progress: Callable[[int, int], None] | None = None) -> dict:
    """Metrics of one modality's classifier on every usable file of a class-per-folder directory."""
    bundle = load_bundle(bundle_path)
    if modality not in bundle.specs:
        raise ConfigError(f"The model has no modality '{modality}'; it has {', '.join(bundle.modality_names)}.")
    spec = bundle.specs[modality]
    overrides = {
        "kind": spec.kind, "bands": spec.bands, "size": spec.size, "length": spec.length,
        "length_mode": spec.length_mode, "spectrogram": spec.spectrogram.to_dict() if spec.spectrogram else None,
        "source_channels": spec.source_channels,
    }
    data = load_modality(folder, modality, overrides, progress)
    unknown = [c for c in data.classes if c not in bundle.classes]
    keep = np.asarray([data.classes[l] in bundle.classes for l in data.labels])
    if not keep.any():
        raise ConfigError(f"None of the class folders ({', '.join(data.classes)}) is a class of this model.")
    x = torch.from_numpy(spec.normalize(data.x[keep]))
    y = np.asarray([bundle.classes.index(data.classes[l]) for l in data.labels[keep]])
    branch = bundle.build_branch(modality)
    out = _branch_outputs(branch, x, torch.device("cpu"))
    metrics = classification_metrics(y, out["logits"].argmax(1).numpy(), bundle.classes)
    metrics["skipped"] = [{"path": s.path, "reason": s.reason} for s in data.skipped]
    metrics["unknown_classes"] = unknown
    return metrics
