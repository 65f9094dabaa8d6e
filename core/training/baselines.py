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
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LossWeights, TrainingConfig, paper_objective
from ..data.augment import augment_batch
from ..data.dataset import MultiModalDataset
from ..errors import ConfigError, DisComKDError
from ..model.baselines import MultimodalTeacher, dkd_loss, dkd_terms, kd_divergence, kd_loss
from ..model.losses import class_conditional_targets, mimicry, teaching_direction
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
    "discomkd_no_unlabelled": "unlabelled",
}
PAIRED_ONLY = ("kd", "dkd")
# Baselines that learn from the unlabelled recordings (the _unlabelled folders) when there are some,
# so that DisCoM-KD is compared with methods given the same data.
UNLABELLED_METHODS = ("dml", "kd", "dkd", "distill", "self_training")
TWO_STAGE = ("distill", "self_training")
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
    # Two-stage distillation: the distillation terms' weight and temperature (1 and 1, as DisCoM-KD's
    # L_unlabelled, so that the two differ only in how the teacher is trained).
    distill_weight: float = 1.0
    distill_temperature: float = 1.0
    # Self-training: a stage-1 prediction becomes a pseudo-label from this confidence up (Lee 2013
    # uses every arg-max, FixMatch 0.95); the pseudo-labelled term's weight.
    self_training_threshold: float = 0.9
    self_training_weight: float = 1.0
    # False: no baseline sees the unlabelled recordings (the comparison of earlier releases).
    use_unlabelled: bool = True

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
    uses_unlabelled: bool = False  # learnt from the unlabelled recordings


@dataclass
class TeacherResult:
    """A trained teacher: soft targets on the aligned training rows (and on the unlabelled
    recordings, when there are some), its test metrics, its cost."""

    train_logits: torch.Tensor
    test_metrics: dict
    time_s: float
    unlabelled_logits: torch.Tensor | None = None


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
    # Unlabelled recordings (row i the same recording in every modality), or None: none, or not given.
    unlabelled: dict[str, torch.Tensor] | None = None

    @property
    def unlabelled_count(self) -> int:
        return 0 if self.unlabelled is None else int(next(iter(self.unlabelled.values())).shape[0])


def _setup(config: TrainingConfig, dataset: MultiModalDataset, use_unlabelled: bool = True) -> _Setup:
    config.validate()
    device = select_device(config.device)
    prepared = prepare_modalities(config, dataset)  # paired data comes back aligned row by row
    paired = dataset.report.pairing.status == "paired"
    names = dataset.names
    backbones = {n: resolve_backbone(config.backbone, prepared[n].spec.kind, device.type) for n in names}
    unlabelled = None
    if use_unlabelled and all(prepared[n].unlabelled is not None for n in names):
        unlabelled = {n: prepared[n].unlabelled for n in names}
    return _Setup(config, device, names, dataset.classes, prepared, backbones, paired, unlabelled)


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
    unlabelled_logits = _logits(teacher, setup.unlabelled, device) if setup.unlabelled is not None else None
    test = _metrics(_logits(teacher, {n: setup.prepared[n].x["test"] for n in names}, device),
                    setup.prepared[names[0]].y["test"], setup.classes) or {}
    return TeacherResult(train_logits, _slim(test), time.perf_counter() - t0, unlabelled_logits)


# ---------------------------------------------------------------------------------------------
# Single-modal students (student alone, KD, DKD, DML, two-stage distillation, self-training)


@dataclass
class StudentTargets:
    """What the single-modal students learn from beyond their labels; every part is optional.

    ``labelled``: modality -> a teacher's logits on that modality's training rows (row-aligned);
    ``unlabelled``: modality -> a teacher's logits on the unlabelled recordings (rows of
    ``setup.unlabelled``); ``pseudo_rows`` / ``pseudo_labels``: modality -> the unlabelled rows with a
    confident pseudo-label of its own, and those labels (self-training).
    """

    labelled: dict[str, torch.Tensor] = field(default_factory=dict)
    unlabelled: dict[str, torch.Tensor] = field(default_factory=dict)
    pseudo_rows: dict[str, torch.Tensor] = field(default_factory=dict)
    pseudo_labels: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class StudentsResult:
    """One training of single-modal students: status, test metrics, and per modality the best
    validation score and weights (what a second stage starts from)."""

    status: str
    reason: str
    test: dict[str, dict]
    best_scores: dict[str, float]
    best_states: dict[str, dict[str, torch.Tensor]]


def _student_losses(
    method: str,
    setup: _Setup,
    settings: BaselineSettings,
    logits: dict[str, torch.Tensor],
    labels: dict[str, torch.Tensor],
    rows: dict[str, torch.Tensor],
    targets: StudentTargets,
    unlabelled_logits: dict[str, torch.Tensor],
    unlabelled_rows: dict[str, torch.Tensor],
    epoch_progress: float,
) -> dict[str, torch.Tensor]:
    """Each trained modality's loss for one step; ``epoch_progress`` counts epochs done (fractional).

    ``unlabelled_logits`` / ``unlabelled_rows``: the step's batch of unlabelled recordings (empty
    when the method gets none); rows index ``setup.unlabelled`` (the same recordings in every
    modality except for self-training, where each modality draws from its own confident rows).
    """
    losses = {}
    n_classes = len(setup.classes)
    for n in logits:
        s, y = logits[n].float(), labels[n]
        su = unlabelled_logits.get(n)
        if method == "student":
            losses[n] = F.cross_entropy(s, y)
        elif method == "kd":
            losses[n] = kd_loss(s, _take(targets.labelled[n], rows[n]), y, settings.kd_temperature, settings.kd_alpha)
            if su is not None:
                t = _take(targets.unlabelled[n], unlabelled_rows[n])
                losses[n] = losses[n] + settings.kd_alpha * kd_divergence(su, t, settings.kd_temperature)
        elif method == "dkd":
            warm = min(1.0, epoch_progress / settings.dkd_warmup_epochs) if settings.dkd_warmup_epochs > 0 else 1.0
            losses[n] = dkd_loss(s, _take(targets.labelled[n], rows[n]), y, settings.dkd_alpha, settings.dkd_beta,
                                 settings.dkd_temperature, warm)
            if su is not None:  # no label: the teacher's class plays the target class of the decoupling
                t = _take(targets.unlabelled[n], unlabelled_rows[n])
                tckd, nckd = dkd_terms(su, t, t.argmax(dim=1), settings.dkd_temperature)
                losses[n] = losses[n] + warm * (settings.dkd_alpha * tckd + settings.dkd_beta * nckd)
        elif method == "dml":
            peers = []
            for peer in logits:
                if peer == n:
                    continue
                if setup.paired:  # same rows in every modality: the true paired sample
                    peers.append(mimicry(s, F.softmax(logits[peer].float().detach(), dim=1)))
                else:
                    target, mask = class_conditional_targets(logits[peer], labels[peer], y, n_classes)
                    peers.append(mimicry(s, target, mask))
                if su is not None:  # unlabelled recordings are always paired: mimic the peer on the same one
                    peers.append(mimicry(su.float(), F.softmax(unlabelled_logits[peer].float().detach(), dim=1)))
            losses[n] = F.cross_entropy(s, y) + settings.dml_weight * torch.stack(peers).mean()
        elif method == "distill":
            losses[n] = F.cross_entropy(s, y)
            if n in targets.labelled:
                t = _take(targets.labelled[n], rows[n])
                losses[n] = losses[n] + settings.distill_weight * kd_divergence(s, t, settings.distill_temperature)
            if su is not None:
                t = _take(targets.unlabelled[n], unlabelled_rows[n])
                losses[n] = losses[n] + settings.distill_weight * kd_divergence(su, t, settings.distill_temperature)
        elif method == "self_training":
            losses[n] = F.cross_entropy(s, y)
            if su is not None:
                pseudo = _take(targets.pseudo_labels[n], unlabelled_rows[n])
                losses[n] = losses[n] + settings.self_training_weight * F.cross_entropy(su.float(), pseudo)
        else:
            raise ConfigError(f"Unknown student method '{method}'.")
    return losses


def _unlabelled_batch_rows(method: str, setup: _Setup, targets: StudentTargets, names: list[str],
                           batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The step's unlabelled rows per trained modality: one draw shared by every modality (the same
    recordings, as the DisCoM-KD trainer draws them), or, for self-training, each modality's draw
    from its own confidently pseudo-labelled rows. Empty when the method gets no such batch."""
    if method == "self_training":
        out = {}
        for n in names:
            pool = targets.pseudo_rows.get(n)
            if pool is not None and pool.numel():
                out[n] = pool[torch.randint(pool.numel(), (batch,), generator=generator)]
        return out
    if setup.unlabelled is None or method not in UNLABELLED_METHODS:
        return {}
    if method in ("kd", "dkd", "distill") and not all(n in targets.unlabelled for n in names):
        return {}  # only a modality with a teacher on these recordings learns from them
    idx = torch.randint(setup.unlabelled_count, (batch,), generator=generator)
    return {n: idx for n in names}


def train_students(
    method: str,
    setup: _Setup,
    settings: BaselineSettings,
    progress: RunProgress,
    stop: StopToken,
    targets: StudentTargets | None = None,
    train_names: list[str] | None = None,
    init_states: dict[str, dict[str, torch.Tensor]] | None = None,
    init_scores: dict[str, float] | None = None,
) -> StudentsResult:
    """Train one ModalityBranch per modality (or per modality of ``train_names``) with ``method``'s loss.

    Each step draws one labelled batch per trained modality and, when the method learns from
    unlabelled recordings, one batch of them, forwarded after the labelled rows as the DisCoM-KD
    trainer does (so batch normalisation sees the same mix under every method).
    ``init_states`` / ``init_scores``: start each trained modality from these weights, which stay its
    selected model (epoch 0) unless an epoch validates higher (a further stage of training).
    """
    cfg, device = setup.config, setup.device
    names = list(train_names or setup.names)
    targets = targets or StudentTargets()
    if method in PAIRED_ONLY and not targets.labelled:
        raise ConfigError(f"The method '{method}' needs a trained teacher.")
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    # Every modality's branch is built (in the same order) so that a modality gets the same
    # initial weights whichever subset is trained.
    students = ModalityModuleDict({
        n: ModalityBranch(setup.backbones[n], setup.prepared[n].spec.input_shape, cfg.embed_dim, len(setup.classes))
        for n in setup.names
    }).to(device)
    opt = _Optimisation(setup, [p for n in names for p in students[n].parameters()])
    best = {n: -1.0 for n in names}
    best_epoch: dict[str, int] = {}
    best_states: dict[str, dict[str, torch.Tensor]] = {}
    for n in names if init_states else ():
        students[n].load_state_dict(init_states[n])
        best[n], best_epoch[n] = float(init_scores[n]), 0
        best_states[n] = {k: v.detach().clone() for k, v in init_states[n].items()}
    targets = StudentTargets(**{part: {n: t.to(device) for n, t in getattr(targets, part).items()}
                                for part in ("labelled", "unlabelled", "pseudo_rows", "pseudo_labels")})
    train_x, train_y = _device_rows(setup)
    unlabelled_x = ({n: t.to(device) for n, t in setup.unlabelled.items()} if setup.unlabelled is not None else {})
    sizes = {n: int(train_y[n].shape[0]) for n in names}
    steps = max(1, math.ceil(max(sizes.values()) / cfg.batch_size))
    stopped = False
    for epoch in range(1, cfg.epochs + 1):
        students.train()
        orders = epoch_orders(sizes, steps, cfg.batch_size, generator, shared=setup.paired)
        for step in range(1, steps + 1):
            if stop.is_set():
                stopped = True
                break
            u_rows = _unlabelled_batch_rows(method, setup, targets, names, cfg.batch_size, generator)
            logits, labels, rows, u_logits = {}, {}, {}, {}
            for n in names:
                idx = orders[n][(step - 1) * cfg.batch_size : step * cfg.batch_size]
                xb = augment_batch(_take(train_x[n], idx), setup.prepared[n].spec.augmentation, generator)
                if n in u_rows:
                    xu = augment_batch(_take(unlabelled_x[n], u_rows[n]), setup.prepared[n].spec.augmentation,
                                       generator)
                    xb = torch.cat([xb, xu])
                with _autocast(setup):
                    out = students[n](xb)["logits"]
                logits[n], labels[n], rows[n] = out[: idx.numel()], _take(train_y[n], idx), idx
                if n in u_rows:
                    u_logits[n] = out[idx.numel():]
            losses = _student_losses(method, setup, settings, logits, labels, rows, targets, u_logits, u_rows,
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
        return StudentsResult("stopped", "Stopped before the first epoch ended; nothing to evaluate.", {}, best,
                              best_states)
    test = {}
    for n in names:
        students[n].load_state_dict(best_states[n])
        p = setup.prepared[n]
        metrics = _metrics(_logits(students[n], p.x["test"], device), p.y["test"], setup.classes)
        if metrics:
            test[n] = dict(_slim(metrics), best_epoch=best_epoch[n])
    if stopped:
        return StudentsResult("stopped", "Stopped early; the best epoch so far was evaluated.", test, best, best_states)
    return StudentsResult("finished", f"Finished {cfg.epochs} epochs.", test, best, best_states)


def _branch(setup: _Setup, name: str, state: dict[str, torch.Tensor]) -> ModalityBranch:
    """A modality's classifier with the given weights, on the setup's device."""
    branch = ModalityBranch(setup.backbones[name], setup.prepared[name].spec.input_shape, setup.config.embed_dim,
                            len(setup.classes)).to(setup.device)
    branch.load_state_dict(state)
    return branch


def train_two_stage(method: str, setup: _Setup, settings: BaselineSettings, progress: RunProgress,
                    stop: StopToken) -> StudentsResult:
    """``distill`` or ``self_training``: each modality's classifier trained alone (stage 1), then retrained
    from its labels plus targets made by stage 1's classifiers (stage 2).

    distill: a modality that some other one validates above (by the margin of teaching_direction)
    is retrained with the best-validated of those as teacher: its predictions on the labelled
    pairs (paired data) and on the unlabelled recordings. The others keep their stage-1 classifier.
    self_training: every modality is retrained with its own stage-1 predictions on its unlabelled
    recordings as labels, where they are confident (``settings.self_training_threshold``).
    """
    first = train_students("student", setup, settings, lambda f, m: progress(0.5 * f, f"stage 1, {m}"), stop)
    if first.status != "finished":
        return first
    targets = StudentTargets()
    if method == "distill":
        targets = _distill_targets(setup, first.best_scores, first.best_states)
        retrain = sorted(set(targets.labelled) | set(targets.unlabelled), key=setup.names.index)
        if not retrain:
            first.reason += " No modality validates clearly above another, so none was retrained."
            return first
    else:
        for n in setup.names:
            probs = F.softmax(_logits(_branch(setup, n, first.best_states[n]), setup.unlabelled[n], setup.device), 1)
            confidence, labels = probs.max(dim=1)
            targets.pseudo_rows[n] = torch.nonzero(confidence >= settings.self_training_threshold).flatten()
            targets.pseudo_labels[n] = labels
        retrain = list(setup.names)
    second = train_students(method, setup, settings, lambda f, m: progress(0.5 + 0.5 * f, f"stage 2, {m}"), stop,
                            targets, retrain)
    if not second.best_states:
        return StudentsResult("stopped", "Stopped in the second stage; nothing to evaluate.", {}, second.best_scores,
                              second.best_states)
    test = {**first.test, **second.test}
    test = {n: test[n] for n in setup.names if n in test}
    reason = second.reason
    if method == "distill":
        reason += " Retrained with a teacher: " + ", ".join(retrain) + "."
    else:
        reason += " Confident pseudo-labels: " + ", ".join(
            f"{n} {targets.pseudo_rows[n].numel()} of {setup.unlabelled_count}" for n in setup.names) + "."
    return StudentsResult(second.status, reason, test, {**first.best_scores, **second.best_scores},
                          {**first.best_states, **second.best_states})


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


def run_discomkd_then_distill(config: TrainingConfig, dataset: MultiModalDataset, progress: RunProgress,
                              stop: StopToken, settings: BaselineSettings) -> BaselineRun:
    """DisCoM-KD as configured, then a distillation stage: each modality another one validates clearly
    above continues from its DisCoM-KD weights for ``config.epochs`` more epochs, taught by the
    best-validated such modality's DisCoM-KD classifier on the labelled pairs and the unlabelled
    recordings (the teacher converged, unlike during the joint training)."""
    from ..model.bundle import load_bundle
    from ..storage import runs as run_files

    t0 = time.perf_counter()

    def on_event(event) -> None:
        if isinstance(event, BatchEnded):
            progress(0.5 * event.progress, f"DisCoM-KD epoch {event.epoch}/{config.epochs}")

    with tempfile.TemporaryDirectory(prefix="discomkd-compare-") as tmp:
        ended: RunEnded = train(config, run_dir=tmp, on_event=on_event, stop=stop, dataset=dataset)
        if ended.status != "finished":
            return BaselineRun("discomkd_distill", config.seed, ended.status, ended.reason, time.perf_counter() - t0,
                               {n: _slim(m) for n, m in (ended.test_metrics or {}).items()})
        bundle = load_bundle(Path(tmp) / run_files.BUNDLE_FILE)
    states = bundle.weights
    scores = {n: float(bundle.metadata["modalities"][n]["val_weighted_f1"]) for n in bundle.modality_names}
    setup = _setup(config, dataset, settings.use_unlabelled)
    targets = _distill_targets(setup, scores, states)
    retrain = sorted(set(targets.labelled) | set(targets.unlabelled), key=setup.names.index)
    test = {n: _slim(m) for n, m in ended.test_metrics.items()}
    if retrain:
        second = train_students("distill", setup, settings, lambda f, m: progress(0.5 + 0.5 * f, f"stage 2, {m}"),
                                stop, targets, retrain, states, scores)
        test.update(second.test)
    return BaselineRun("discomkd_distill", config.seed, "finished", "Retrained: " + ", ".join(retrain),
                       time.perf_counter() - t0, test, None, uses_unlabelled("discomkd", config, dataset, settings))


def _distill_targets(setup: _Setup, scores: dict[str, float], states: dict[str, dict[str, torch.Tensor]]
                     ) -> StudentTargets:
    """Per modality some other one validates clearly above, the best-validated such teacher's logits on
    the labelled training pairs (paired data) and on the unlabelled recordings."""
    targets = StudentTargets()
    for n, peers in teaching_direction(scores).items():
        if not peers:
            continue
        teacher = max(peers, key=lambda p: scores[p])
        branch = _branch(setup, teacher, states[teacher])
        if setup.paired:  # row i of the training split is the same sample in every modality
            targets.labelled[n] = _logits(branch, setup.prepared[teacher].x["train"], setup.device)
        if setup.unlabelled is not None:
            targets.unlabelled[n] = _logits(branch, setup.unlabelled[teacher], setup.device)
    return targets


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
        reason = skip_reason(method, dataset, settings)
        if reason:
            return BaselineRun(method, config.seed, "skipped", reason, 0.0)
        if method == "discomkd_distill":
            return run_discomkd_then_distill(config, dataset, progress, stop, settings)
        if method in TRAINER_VARIANTS:
            run = run_discomkd_variant(method, config, dataset, progress, stop)
            run.uses_unlabelled = uses_unlabelled(method, config, dataset, settings)
            return run
        setup = _setup(config, dataset, settings.use_unlabelled)
        teacher = None
        extra_time = 0.0
        targets = None
        student_progress = progress
        if method in PAIRED_ONLY:
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
            targets = StudentTargets(labelled={n: teacher.train_logits for n in setup.names})
            if teacher.unlabelled_logits is not None:
                targets.unlabelled = {n: teacher.unlabelled_logits for n in setup.names}
        if method in TWO_STAGE:
            result = train_two_stage(method, setup, settings, student_progress, stop)
        else:
            result = train_students(method, setup, settings, student_progress, stop, targets)
        return BaselineRun(method, config.seed, result.status, result.reason, time.perf_counter() - t0 + extra_time,
                           result.test, teacher.test_metrics if teacher else None,
                           uses_unlabelled(method, config, dataset, settings))
    except DisComKDError as exc:
        return BaselineRun(method, config.seed, "failed", str(exc), time.perf_counter() - t0)
    except (RuntimeError, MemoryError) as exc:  # e.g. out of memory: report, keep the comparison going
        return BaselineRun(method, config.seed, "failed", f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)


_UNPAIRED_REASON = "needs paired data (the multimodal teacher sees every modality of a sample)"
_NO_UNLABELLED_REASON = ("needs unlabelled recordings (an _unlabelled folder in every modality, a recording's "
                         "files named the same in each)")


def skip_reason(method: str, dataset: MultiModalDataset, settings: BaselineSettings | None = None) -> str | None:
    """Why ``method`` cannot run on this data, or None when it can."""
    settings = settings or BaselineSettings()
    paired = dataset.report.pairing.status == "paired"
    has_unlabelled = dataset.report.unlabelled_pairs > 0 and settings.use_unlabelled
    if method in PAIRED_ONLY and not paired:
        return pairing_skip_reason(dataset)
    if method == "self_training" and not has_unlabelled:
        return _NO_UNLABELLED_REASON
    if method == "distill" and not (paired or has_unlabelled):
        return ("needs paired files or unlabelled recordings (a teacher's predictions on the same recording); "
                f"here the data is {dataset.report.pairing.detail}")
    return None


def uses_unlabelled(method: str, config: TrainingConfig, dataset: MultiModalDataset,
                    settings: BaselineSettings | None = None) -> bool:
    """Whether ``method`` learns from the data's unlabelled recordings (what the comparison tells the user)."""
    settings = settings or BaselineSettings()
    if dataset.report.unlabelled_pairs == 0:
        return False
    if method in TRAINER_VARIANTS:  # the trainer teaches on them only with a validation split to choose teachers
        return discomkd_variant_config(method, config).weights.unlabelled > 0 and config.split[1] > 0
    return method in UNLABELLED_METHODS and settings.use_unlabelled


def pairing_skip_reason(dataset: MultiModalDataset) -> str | None:
    """Why teacher methods cannot run on this data, or None when they can."""
    if dataset.report.pairing.status == "paired":
        return None
    return f"{_UNPAIRED_REASON}; here the data is {dataset.report.pairing.detail}"
