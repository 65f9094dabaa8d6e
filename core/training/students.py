"""Single-modal classifiers trained with a per-method loss: the machinery every baseline shares, and
the distillation stage the DisCoM-KD trainer can run after its joint epochs.

Every student is a :class:`discomkd.model.networks.ModalityBranch`, the very network DisCoM-KD uses at
prediction time (same backbone, same size), so differences between methods come from the training
signal and not from capacity. An epoch is ``ceil(largest training split / batch)`` steps with one
batch per modality per step (smaller modalities cycle) and, for methods that learn from unlabelled
recordings, one batch of those forwarded after the labelled rows, as in the DisCoM-KD trainer;
the learning rate follows ``config.lr_schedule``; each modality keeps the weights of its best
validation weighted F1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainingConfig
from ..data.augment import augment_batch
from ..data.dataset import MultiModalDataset
from ..errors import ConfigError, DisComKDError
from ..model.bundle import first_non_finite_weight
from ..model.baselines import dkd_loss, dkd_terms, kd_divergence, kd_loss
from ..model.losses import class_conditional_targets, mimicry, teaching_direction
from ..model.networks import ModalityBranch, ModalityModuleDict, resolve_backbone
from .events import StopToken
from .metrics import classification_metrics
from .precision import autocast_dtype, training_layout
from .preparation import PreparedModality, prepare_modalities
from .schedule import epoch_orders, learning_rate_at, lower_learning_rate_advice, make_optimizer

RunProgress = Callable[[float, str], None]  # fraction of this run in [0, 1], message
# Methods that learn from the unlabelled recordings (the _unlabelled folders) when there are some,
# so that DisCoM-KD is compared with methods given the same data.
UNLABELLED_METHODS = ("dml", "kd", "dkd", "distill", "self_training")


@dataclass
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
# Shared machinery


@dataclass
class StudentSetup:
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


def make_setup(config: TrainingConfig, dataset: MultiModalDataset, device: torch.device,
               use_unlabelled: bool = True) -> StudentSetup:
    """Split and standardise the data as the trainer does (same seed, same rows) for single-modal students."""
    config.validate()
    prepared = prepare_modalities(config, dataset)  # paired data comes back aligned row by row
    paired = dataset.report.pairing.status == "paired"
    names = dataset.names
    backbones = {n: resolve_backbone(config.backbone, prepared[n].spec.kind, device.type,
                                    prepared[n].spec.input_shape) for n in names}
    unlabelled = None
    if use_unlabelled and all(prepared[n].unlabelled is not None for n in names):
        unlabelled = {n: prepared[n].unlabelled for n in names}
    return StudentSetup(config, device, names, dataset.classes, prepared, backbones, paired, unlabelled)


def autocast_for(setup: StudentSetup):
    dtype = autocast_dtype(setup.device, setup.config.mixed_precision)
    return torch.autocast(setup.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


@torch.no_grad()
def eval_logits(model: nn.Module, inputs: torch.Tensor | dict[str, torch.Tensor], device: torch.device,
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


def split_metrics(logits: torch.Tensor, y: torch.Tensor, classes: list[str]) -> dict | None:
    if y.shape[0] == 0:
        return None
    metrics = classification_metrics(y.numpy(), logits.argmax(1).numpy(), classes)
    metrics["loss"] = float(F.cross_entropy(logits, y))
    return metrics


def diverged_text(what: str, happened: str, learning_rate: float) -> str:
    """What a baseline's row says when its training diverged, as the DisCoM-KD trainer says it."""
    return (f"The {what} training diverged: {happened}. Lower the learning rate (it is {learning_rate:g}; "
            f"{lower_learning_rate_advice(learning_rate)}) and start again.")


def device_rows(setup: StudentSetup, part: str = "train") -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    x = {n: setup.prepared[n].x[part].to(setup.device) for n in setup.names}
    y = {n: setup.prepared[n].y[part].to(setup.device) for n in setup.names}
    return x, y


def take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return t.index_select(0, idx.to(t.device))


class Optimisation:
    """Optimizer plus gradient scaling (float16 on CUDA only), as in the DisCoM-KD trainer."""

    def __init__(self, setup: StudentSetup, params) -> None:
        self.config = setup.config
        self.optimizer = make_optimizer(setup.config, params)
        fp16 = autocast_dtype(setup.device, setup.config.mixed_precision) == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)

    def step(self, loss: torch.Tensor, where: str, progress_in_run: float) -> None:
        """One update; the learning rate follows the config's schedule exactly as in the trainer."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate_at(self.config, progress_in_run)
        if not torch.isfinite(loss):
            raise DisComKDError(f"The {where} loss became {float(loss.detach())}. Lower the learning rate (it is "
                                f"{self.config.learning_rate:g}; {lower_learning_rate_advice(self.config.learning_rate)}) "
                                "and start again.")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


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
    setup: StudentSetup,
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
            losses[n] = kd_loss(s, take(targets.labelled[n], rows[n]), y, settings.kd_temperature, settings.kd_alpha)
            if su is not None:
                t = take(targets.unlabelled[n], unlabelled_rows[n])
                losses[n] = losses[n] + settings.kd_alpha * kd_divergence(su, t, settings.kd_temperature)
        elif method == "dkd":
            warm = min(1.0, epoch_progress / settings.dkd_warmup_epochs) if settings.dkd_warmup_epochs > 0 else 1.0
            losses[n] = dkd_loss(s, take(targets.labelled[n], rows[n]), y, settings.dkd_alpha, settings.dkd_beta,
                                 settings.dkd_temperature, warm)
            if su is not None:  # no label: the teacher's class plays the target class of the decoupling
                t = take(targets.unlabelled[n], unlabelled_rows[n])
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
                t = take(targets.labelled[n], rows[n])
                losses[n] = losses[n] + settings.distill_weight * kd_divergence(s, t, settings.distill_temperature)
            if su is not None:
                t = take(targets.unlabelled[n], unlabelled_rows[n])
                losses[n] = losses[n] + settings.distill_weight * kd_divergence(su, t, settings.distill_temperature)
        elif method == "self_training":
            losses[n] = F.cross_entropy(s, y)
            if su is not None:
                pseudo = take(targets.pseudo_labels[n], unlabelled_rows[n])
                losses[n] = losses[n] + settings.self_training_weight * F.cross_entropy(su.float(), pseudo)
        else:
            raise ConfigError(f"Unknown student method '{method}'.")
    return losses


def _unlabelled_batch_rows(method: str, setup: StudentSetup, targets: StudentTargets, names: list[str],
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
    setup: StudentSetup,
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
    if method in ("kd", "dkd") and not targets.labelled:
        raise ConfigError(f"The method '{method}' needs a trained teacher.")
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    # Every modality's branch is built (in the same order) so that a modality gets the same
    # initial weights whichever subset is trained.
    students = ModalityModuleDict({
        n: ModalityBranch(setup.backbones[n], setup.prepared[n].spec.input_shape, cfg.embed_dim, len(setup.classes))
        for n in setup.names
    }).to(device)
    students = training_layout(students)
    opt = Optimisation(setup, [p for n in names for p in students[n].parameters()])
    best = {n: -1.0 for n in names}
    best_epoch: dict[str, int] = {}
    val_curves: dict[str, list[float]] = {n: [] for n in names}  # for the comparison's convergence check
    best_states: dict[str, dict[str, torch.Tensor]] = {}
    for n in names if init_states else ():
        students[n].load_state_dict(init_states[n])
        best[n], best_epoch[n] = float(init_scores[n]), 0
        best_states[n] = {k: v.detach().clone() for k, v in init_states[n].items()}
    targets = StudentTargets(**{part: {n: t.to(device) for n, t in getattr(targets, part).items()}
                                for part in ("labelled", "unlabelled", "pseudo_rows", "pseudo_labels")})
    train_x, train_y = device_rows(setup)
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
                xb = augment_batch(take(train_x[n], idx), setup.prepared[n].spec.augmentation, generator)
                if n in u_rows:
                    xu = augment_batch(take(unlabelled_x[n], u_rows[n]), setup.prepared[n].spec.augmentation,
                                       generator)
                    xb = torch.cat([xb, xu])
                with autocast_for(setup):
                    out = students[n](xb)["logits"]
                logits[n], labels[n], rows[n] = out[: idx.numel()], take(train_y[n], idx), idx
                if n in u_rows:
                    u_logits[n] = out[idx.numel():]
            losses = _student_losses(method, setup, settings, logits, labels, rows, targets, u_logits, u_rows,
                                     (epoch - 1) + step / steps)
            opt.step(sum(losses.values()) / len(names), method, ((epoch - 1) + (step - 1) / steps) / cfg.epochs)
            progress(((epoch - 1) * steps + step) / (cfg.epochs * steps), f"epoch {epoch}/{cfg.epochs}")
        if stopped:
            break
        epoch_metrics = {n: split_metrics(eval_logits(students[n], setup.prepared[n].x["val"], device),
                                          setup.prepared[n].y["val"], setup.classes) for n in names}
        check_finite(method, students, epoch_metrics, epoch, cfg.learning_rate)  # before any is selected
        for n in names:  # per-modality model selection on validation weighted F1
            metrics = epoch_metrics[n]
            score = metrics["weighted_f1"] if metrics else float(epoch)
            if metrics:
                val_curves[n].append(round(float(score), 4))
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
        metrics = split_metrics(eval_logits(students[n], p.x["test"], device), p.y["test"], setup.classes)
        if metrics:
            test[n] = dict(slim_metrics(metrics), best_epoch=best_epoch[n], val_curve=val_curves[n])
    if stopped:
        return StudentsResult("stopped", "Stopped early; the best epoch so far was evaluated.", test, best, best_states)
    return StudentsResult("finished", f"Finished {cfg.epochs} epochs.", test, best, best_states)


def check_finite(method: str, students: ModalityModuleDict, val_metrics: dict[str, dict | None], epoch: int,
                 learning_rate: float) -> None:
    """Raise the diverged message when a student's weights (BatchNorm statistics included) or its
    validation loss stopped being finite numbers, so that such an epoch is never selected and the
    run fails as the DisCoM-KD trainer's does instead of finishing with an earlier best."""
    for n, metrics in val_metrics.items():
        broken = first_non_finite_weight(students[n].state_dict())
        if broken:
            raise DisComKDError(diverged_text(method, f"the weights of {n} became NaN or infinite at epoch {epoch} "
                                                      f"({broken})", learning_rate))
        if metrics and not math.isfinite(metrics["loss"]):
            raise DisComKDError(diverged_text(method, f"the validation loss of {n} became {metrics['loss']} at "
                                                      f"epoch {epoch}", learning_rate))


def branch_with(setup: StudentSetup, name: str, state: dict[str, torch.Tensor]) -> ModalityBranch:
    """A modality's classifier with the given weights, on the setup's device."""
    branch = ModalityBranch(setup.backbones[name], setup.prepared[name].spec.input_shape, setup.config.embed_dim,
                            len(setup.classes)).to(setup.device)
    branch = training_layout(branch)
    branch.load_state_dict(state)
    return branch


def slim_metrics(metrics: dict) -> dict:
    """The metrics kept per run (no per-class table)."""
    keep = ("n", "accuracy", "weighted_f1", "macro_f1", "confusion", "best_epoch", "val_curve", "before_self_training")
    return {k: metrics[k] for k in keep if k in metrics}


def distill_targets(setup: StudentSetup, scores: dict[str, float], states: dict[str, dict[str, torch.Tensor]]
                     ) -> StudentTargets:
    """Per modality some other one validates clearly above, the best-validated such teacher's logits on
    the labelled training pairs (paired data) and on the unlabelled recordings."""
    targets = StudentTargets()
    for n, peers in teaching_direction(scores).items():
        if not peers:
            continue
        teacher = max(peers, key=lambda p: scores[p])
        branch = branch_with(setup, teacher, states[teacher])
        if setup.paired:  # row i of the training split is the same sample in every modality
            targets.labelled[n] = eval_logits(branch, setup.prepared[teacher].x["train"], setup.device)
        if setup.unlabelled is not None:
            targets.unlabelled[n] = eval_logits(branch, setup.unlabelled[teacher], setup.device)
    return targets
