"""Baselines DisCoM-KD is compared against, on the same splits and preprocessing.

Every method here starts from :func:`discomkd.training.preparation.prepare_modalities` with the same config
(so a given seed gives identical splits, training-split statistics and augmentation), selects
each modality's weights at the epoch with its best validation weighted F1, and reports test
metrics per modality with :func:`discomkd.training.metrics.classification_metrics`, exactly as the
DisCoM-KD trainer does.

Methods
- ``student``: each modality's classifier trained alone with cross-entropy.
- ``kd`` / ``dkd`` (paired data only): a multimodal teacher (one encoder per modality, features
  concatenated, one linear head) is trained on the paired training samples; then one student per
  modality learns from it with Hinton's knowledge distillation or with decoupled KD (DKD).
- ``dml``: deep mutual learning among the single-modal students (no teacher). With paired data a
  student mimics its peers' predictions on the *paired* samples. With unpaired data there is no
  same input to mimic, so we use a **class-conditional** variant: for a sample of modality A with
  label y, the mimicry target from peer B is the mean predicted distribution of B's batch samples
  of class y (a sample whose class is absent from B's batch gets no mimicry term from B).
- ``discomkd`` (as configured), ``discomkd_paper`` (the paper's objective), ``classifiers_only``
  (the trainer with every term but L_cl off: a control that must match ``student``) and the
  ablations (one loss weight set to 0): :func:`discomkd.training.trainer.train`.

Architecture: every single-modal student is a :class:`discomkd.model.networks.ModalityBranch`, the very
network DisCoM-KD uses at prediction time (same backbone, same size), so differences come from
the training signal and not from capacity. The DisCoM-KD-only heads are simply not trained.

Schedule: like the DisCoM-KD trainer (same learning-rate schedule, ``config.lr_schedule``), an epoch is ``ceil(largest training split / batch)`` steps
with one batch per modality per step (smaller modalities cycle), so each modality gets the same
number of updates under every method. Losses are averaged over modalities, as in the trainer.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LossWeights, TrainingConfig, paper_objective
from ..data.augment import augment_batch
from ..data.dataset import MultiModalDataset
from ..errors import ConfigError, DisComKDError
from ..model.baselines import MultimodalTeacher, dkd_loss, kd_loss
from ..model.losses import class_conditional_targets, mimicry
from ..model.networks import ModalityBranch, ModalityModuleDict, resolve_backbone
from .events import BatchEnded, RunEnded, StopToken
from .metrics import classification_metrics
from .preparation import PreparedModality, prepare_modalities
from .schedule import epoch_orders, learning_rate_at, make_optimizer
from .trainer import select_device, train

RunProgress = Callable[[float, str], None]  # fraction of this run in [0, 1], message

# Which loss weight each ablation switches off.
ABLATIONS: dict[str, str] = {
    "discomkd_no_aux": "aux",
    "discomkd_no_adv": "adv",
    "discomkd_no_mod": "mod",
    "discomkd_no_perp": "perp",
    "discomkd_no_agree": "agree",
}
PAIRED_ONLY = ("kd", "dkd")
# Methods trained by the DisCoM-KD trainer itself (discomkd_variant_config says how).
TRAINER_VARIANTS = ("discomkd", "discomkd_paper", "classifiers_only", *ABLATIONS)


@dataclass
class BaselineSettings:
    """Hyper-parameters of the baselines (DisCoM-KD's own come from the TrainingConfig)."""

    kd_temperature: float = 4.0
    kd_alpha: float = 0.9  # weight of the distillation term; 1 - alpha on cross-entropy
    dkd_alpha: float = 1.0  # TCKD weight (Zhao et al. 2022 defaults: alpha 1, beta 8, T 4)
    dkd_beta: float = 8.0  # NCKD weight
    dkd_temperature: float = 4.0
    dkd_warmup_epochs: float = 1.0  # DKD term ramps linearly from 0 over this many epochs (paper: 20 of 240)
    dml_weight: float = 1.0  # weight of the mimicry term (Zhang et al. 2018 use 1)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class BaselineRun:
    """One method on one seed: test metrics per modality with each modality's best weights."""

    method: str
    seed: int
    status: str  # "finished", "stopped" or "failed"
    reason: str
    time_s: float
    test_metrics: dict[str, dict] = field(default_factory=dict)
    teacher_metrics: dict | None = None  # kd/dkd: the multimodal teacher's test metrics


@dataclass
class TeacherResult:
    """A trained teacher: soft targets on the aligned training rows, its test metrics, its cost."""

    train_logits: torch.Tensor
    test_metrics: dict
    time_s: float


# ---------------------------------------------------------------------------------------------
# Shared machinery


@dataclass
class _Setup:
    config: TrainingConfig
    device: torch.device
    names: list[str]
    classes: list[str]
    prepared: dict[str, PreparedModality]
    backbones: dict[str, str]
    paired: bool


def _setup(config: TrainingConfig, dataset: MultiModalDataset) -> _Setup:
    config.validate()
    device = select_device(config.device)
    prepared = prepare_modalities(config, dataset)  # paired data comes back aligned row by row
    paired = dataset.report.pairing.status == "paired"
    names = dataset.names
    backbones = {n: resolve_backbone(config.backbone, prepared[n].spec.kind, device.type) for n in names}
    return _Setup(config, device, names, dataset.classes, prepared, backbones, paired)


def _autocast(setup: _Setup):
    use_amp = setup.device.type == "cuda" and setup.config.mixed_precision
    dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(setup.device.type, dtype=dtype, enabled=use_amp)


@torch.no_grad()
def _logits(model: nn.Module, inputs: torch.Tensor | dict[str, torch.Tensor], device: torch.device,
            batch: int = 512) -> torch.Tensor:
    """Logits of a branch (tensor input) or a teacher (dict input) in eval mode, on the CPU."""
    model.eval()
    n = next(iter(inputs.values())).shape[0] if isinstance(inputs, dict) else inputs.shape[0]
    chunks = []
    for start in range(0, n, batch):
        if isinstance(inputs, dict):
            out = model({k: v[start : start + batch].to(device) for k, v in inputs.items()})
        else:
            out = model(inputs[start : start + batch].to(device))
        chunks.append((out["logits"] if isinstance(out, dict) else out).float().cpu())
    model.train()
    if not chunks:
        return torch.zeros(0)
    return torch.cat(chunks)


def _metrics(logits: torch.Tensor, y: torch.Tensor, classes: list[str]) -> dict | None:
    if y.shape[0] == 0:
        return None
    metrics = classification_metrics(y.numpy(), logits.argmax(1).numpy(), classes)
    metrics["loss"] = float(F.cross_entropy(logits, y))
    return metrics


def _device_rows(setup: _Setup, part: str = "train") -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    x = {n: setup.prepared[n].x[part].to(setup.device) for n in setup.names}
    y = {n: setup.prepared[n].y[part].to(setup.device) for n in setup.names}
    return x, y


def _take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return t.index_select(0, idx.to(t.device))


class _Optimisation:
    """Optimizer plus gradient scaling (float16 on CUDA only), as in the DisCoM-KD trainer."""

    def __init__(self, setup: _Setup, params) -> None:
        self.config = setup.config
        self.optimizer = make_optimizer(setup.config, params)
        use_amp = setup.device.type == "cuda" and setup.config.mixed_precision
        fp16 = use_amp and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)

    def step(self, loss: torch.Tensor, where: str, progress_in_run: float) -> None:
        """One update; the learning rate follows the config's schedule exactly as in the trainer."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate_at(self.config, progress_in_run)
        if not torch.isfinite(loss):
            raise DisComKDError(f"The {where} loss became {float(loss)}. Lower the learning rate and start again.")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


# ---------------------------------------------------------------------------------------------
# Teacher


def train_teacher(setup: _Setup, progress: RunProgress, stop: StopToken) -> TeacherResult | None:
    """Train the multimodal teacher on the paired training rows (None if stopped before an epoch)."""
    cfg, names, device = setup.config, setup.names, setup.device
    if not setup.paired:
        raise ConfigError("A multimodal teacher needs paired files (the same file names in every modality).")
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    shapes = {n: setup.prepared[n].spec.input_shape for n in names}
    teacher = MultimodalTeacher(names, shapes, setup.backbones, 2 * cfg.embed_dim, len(setup.classes)).to(device)
    opt = _Optimisation(setup, teacher.parameters())
    train_x, train_y = _device_rows(setup)
    y_rows = train_y[names[0]]  # identical in every modality once aligned
    size = int(y_rows.shape[0])
    steps = max(1, math.ceil(size / cfg.batch_size))
    val_inputs = {n: setup.prepared[n].x["val"] for n in names}
    val_y = setup.prepared[names[0]].y["val"]
    best_score, best_state = -1.0, None
    for epoch in range(1, cfg.epochs + 1):
        teacher.train()
        order = epoch_orders({"all": size}, steps, cfg.batch_size, generator, shared=True)["all"]
        for step in range(1, steps + 1):
            if stop.is_set():
                break
            idx = order[(step - 1) * cfg.batch_size : step * cfg.batch_size]
            inputs = {n: augment_batch(_take(train_x[n], idx), setup.prepared[n].spec.augmentation, generator)
                      for n in names}
            with _autocast(setup):
                logits = teacher(inputs)
            opt.step(F.cross_entropy(logits.float(), _take(y_rows, idx)), "teacher",
                     ((epoch - 1) + (step - 1) / steps) / cfg.epochs)
            progress(((epoch - 1) * steps + step) / (cfg.epochs * steps), f"teacher epoch {epoch}/{cfg.epochs}")
        if stop.is_set():
            break
        metrics = _metrics(_logits(teacher, val_inputs, device), val_y, setup.classes)
        score = metrics["weighted_f1"] if metrics else float(epoch)
        if score > best_score:
            best_score = score
            best_state = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
    if best_state is None:
        return None
    teacher.load_state_dict(best_state)
    train_logits = _logits(teacher, {n: setup.prepared[n].x["train"] for n in names}, device)
    test = _metrics(_logits(teacher, {n: setup.prepared[n].x["test"] for n in names}, device),
                    setup.prepared[names[0]].y["test"], setup.classes) or {}
    return TeacherResult(train_logits, _slim(test), time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# Single-modal students (student alone, KD, DKD, DML)


def _student_losses(
    method: str,
    setup: _Setup,
    settings: BaselineSettings,
    logits: dict[str, torch.Tensor],
    labels: dict[str, torch.Tensor],
    rows: dict[str, torch.Tensor],
    teacher_logits: torch.Tensor | None,
    epoch_progress: float,
) -> dict[str, torch.Tensor]:
    """Each modality's loss for one step; ``epoch_progress`` counts epochs done (fractional)."""
    losses = {}
    n_classes = len(setup.classes)
    for n in setup.names:
        s, y = logits[n].float(), labels[n]
        if method == "student":
            losses[n] = F.cross_entropy(s, y)
        elif method == "kd":
            t = _take(teacher_logits, rows[n])
            losses[n] = kd_loss(s, t, y, settings.kd_temperature, settings.kd_alpha)
        elif method == "dkd":
            t = _take(teacher_logits, rows[n])
            warm = min(1.0, epoch_progress / settings.dkd_warmup_epochs) if settings.dkd_warmup_epochs > 0 else 1.0
            losses[n] = dkd_loss(s, t, y, settings.dkd_alpha, settings.dkd_beta, settings.dkd_temperature, warm)
        elif method == "dml":
            peers = []
            for peer in setup.names:
                if peer == n:
                    continue
                if setup.paired:  # same rows in every modality: the true paired sample
                    peers.append(mimicry(s, F.softmax(logits[peer].float().detach(), dim=1)))
                else:
                    target, mask = class_conditional_targets(logits[peer], labels[peer], y, n_classes)
                    peers.append(mimicry(s, target, mask))
            losses[n] = F.cross_entropy(s, y) + settings.dml_weight * torch.stack(peers).mean()
        else:
            raise ConfigError(f"Unknown student method '{method}'.")
    return losses


def train_students(
    method: str,
    setup: _Setup,
    settings: BaselineSettings,
    progress: RunProgress,
    stop: StopToken,
    teacher_logits: torch.Tensor | None = None,
) -> tuple[str, str, dict[str, dict]]:
    """Train one ModalityBranch per modality with ``method``'s loss; (status, reason, test metrics)."""
    cfg, names, device = setup.config, setup.names, setup.device
    if method in PAIRED_ONLY and teacher_logits is None:
        raise ConfigError(f"The method '{method}' needs a trained teacher.")
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    students = ModalityModuleDict({
        n: ModalityBranch(setup.backbones[n], setup.prepared[n].spec.input_shape, cfg.embed_dim, len(setup.classes))
        for n in names
    }).to(device)
    opt = _Optimisation(setup, students.parameters())
    if teacher_logits is not None:
        teacher_logits = teacher_logits.to(device)
    train_x, train_y = _device_rows(setup)
    sizes = {n: int(train_y[n].shape[0]) for n in names}
    steps = max(1, math.ceil(max(sizes.values()) / cfg.batch_size))
    best = {n: -1.0 for n in names}
    best_epoch: dict[str, int] = {}
    best_states: dict[str, dict[str, torch.Tensor]] = {}
    stopped = False
    for epoch in range(1, cfg.epochs + 1):
        students.train()
        orders = epoch_orders(sizes, steps, cfg.batch_size, generator, shared=setup.paired)
        for step in range(1, steps + 1):
            if stop.is_set():
                stopped = True
                break
            logits, labels, rows = {}, {}, {}
            for n in names:
                idx = orders[n][(step - 1) * cfg.batch_size : step * cfg.batch_size]
                xb = augment_batch(_take(train_x[n], idx), setup.prepared[n].spec.augmentation, generator)
                with _autocast(setup):
                    logits[n] = students[n](xb)["logits"]
                labels[n], rows[n] = _take(train_y[n], idx), idx
            losses = _student_losses(method, setup, settings, logits, labels, rows, teacher_logits,
                                     (epoch - 1) + step / steps)
            opt.step(sum(losses.values()) / len(names), method, ((epoch - 1) + (step - 1) / steps) / cfg.epochs)
            progress(((epoch - 1) * steps + step) / (cfg.epochs * steps), f"epoch {epoch}/{cfg.epochs}")
        if stopped:
            break
        for n in names:  # per-modality model selection on validation weighted F1
            p = setup.prepared[n]
            metrics = _metrics(_logits(students[n], p.x["val"], device), p.y["val"], setup.classes)
            score = metrics["weighted_f1"] if metrics else float(epoch)
            if score > best[n]:
                best[n], best_epoch[n] = score, epoch
                best_states[n] = {k: v.detach().clone() for k, v in students[n].state_dict().items()}
    if len(best_states) < len(names):
        return "stopped", "Stopped before the first epoch ended; nothing to evaluate.", {}
    test = {}
    for n in names:
        students[n].load_state_dict(best_states[n])
        p = setup.prepared[n]
        metrics = _metrics(_logits(students[n], p.x["test"], device), p.y["test"], setup.classes)
        if metrics:
            test[n] = dict(_slim(metrics), best_epoch=best_epoch[n])
    if stopped:
        return "stopped", "Stopped early; the best epoch so far was evaluated.", test
    return "finished", f"Finished {cfg.epochs} epochs.", test


def _slim(metrics: dict) -> dict:
    """The metrics kept per run (no per-class table)."""
    keep = ("n", "accuracy", "weighted_f1", "macro_f1", "confusion", "best_epoch")
    return {k: metrics[k] for k in keep if k in metrics}


# ---------------------------------------------------------------------------------------------
# One method on one seed


def discomkd_variant_config(method: str, config: TrainingConfig) -> TrainingConfig:
    """The training config of DisCoM-KD (as configured), the paper's objective, the classifiers-only
    control, or an ablation (one loss weight set to 0)."""
    if method == "discomkd":
        return config
    if method == "discomkd_paper":
        return paper_objective(config)
    if method == "classifiers_only":
        return replace(config, weights=LossWeights(cl=config.weights.cl, aux=0.0, adv=0.0, mod=0.0, perp=0.0, agree=0.0, unlabelled=0.0))
    return replace(config, weights=replace(config.weights, **{ABLATIONS[method]: 0.0}))


def run_discomkd_variant(
    method: str, config: TrainingConfig, dataset: MultiModalDataset, progress: RunProgress, stop: StopToken
) -> BaselineRun:
    """A DisCoM-KD trainer variant (see discomkd_variant_config), trained in a temporary run folder."""
    variant = discomkd_variant_config(method, config)
    t0 = time.perf_counter()

    def on_event(event) -> None:
        if isinstance(event, BatchEnded):
            progress(event.progress, f"epoch {event.epoch}/{config.epochs}")

    with tempfile.TemporaryDirectory(prefix="discomkd-compare-") as tmp:
        ended: RunEnded = train(variant, run_dir=tmp, on_event=on_event, stop=stop, dataset=dataset)
    metrics = {n: _slim(m) for n, m in (ended.test_metrics or {}).items()}
    return BaselineRun(method, config.seed, ended.status, ended.reason, time.perf_counter() - t0, metrics)


def run_method(
    method: str,
    config: TrainingConfig,
    dataset: MultiModalDataset,
    progress: RunProgress | None = None,
    stop: StopToken | None = None,
    settings: BaselineSettings | None = None,
    teacher_cache: dict[int, TeacherResult] | None = None,
) -> BaselineRun:
    """Run one method with ``config.seed`` (split and initialisation). Never raises for user errors.

    ``teacher_cache`` (seed -> TeacherResult) lets kd and dkd share one teacher per seed; the
    teacher's training time is counted in the time of every method that uses it.
    """
    progress = progress or (lambda fraction, message: None)
    stop = stop or StopToken()
    settings = settings or BaselineSettings()
    t0 = time.perf_counter()
    try:
        if method in TRAINER_VARIANTS:
            return run_discomkd_variant(method, config, dataset, progress, stop)
        setup = _setup(config, dataset)
        teacher = None
        extra_time = 0.0
        if method in PAIRED_ONLY:
            if not setup.paired:
                return BaselineRun(method, config.seed, "skipped", _UNPAIRED_REASON, 0.0)
            cache = teacher_cache if teacher_cache is not None else {}
            teacher = cache.get(config.seed)
            if teacher is None:
                teacher = train_teacher(setup, lambda f, m: progress(0.5 * f, m), stop)
                if teacher is None:
                    return BaselineRun(method, config.seed, "stopped", "Stopped while training the teacher.",
                                       time.perf_counter() - t0)
                cache[config.seed] = teacher
                student_progress = lambda f, m: progress(0.5 + 0.5 * f, m)  # noqa: E731
            else:
                extra_time = teacher.time_s  # trained for another method; its cost still counts
                student_progress = progress
        else:
            student_progress = progress
        status, reason, test = train_students(method, setup, settings, student_progress, stop,
                                              teacher.train_logits if teacher else None)
        return BaselineRun(method, config.seed, status, reason, time.perf_counter() - t0 + extra_time, test,
                           teacher.test_metrics if teacher else None)
    except DisComKDError as exc:
        return BaselineRun(method, config.seed, "failed", str(exc), time.perf_counter() - t0)
    except (RuntimeError, MemoryError) as exc:  # e.g. out of memory: report, keep the comparison going
        return BaselineRun(method, config.seed, "failed", f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)


_UNPAIRED_REASON = "needs paired data (the multimodal teacher sees every modality of a sample)"


def pairing_skip_reason(dataset: MultiModalDataset) -> str | None:
    """Why teacher methods cannot run on this data, or None when they can."""
    if dataset.report.pairing.status == "paired":
        return None
    return f"{_UNPAIRED_REASON}; here the data is {dataset.report.pairing.detail}"
