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
- ``distill`` (two stages): each modality's classifier trained alone, then each modality that
  another validates clearly above (:func:`discomkd.model.losses.teaching_direction`) retrained from
  its labels plus the best such modality's predictions on the labelled pairs (paired data) and on
  the unlabelled recordings.
- ``self_training`` (two stages, needs unlabelled recordings): each modality retrained from its
  labels plus its own stage-1 predictions on its unlabelled recordings where they are confident.
- ``discomkd`` (as configured), ``discomkd_paper`` (the paper's objective), ``classifiers_only``
  (the trainer with every term but L_cl off: a control that must match ``student``) and the
  ablations (one loss weight set to 0): :func:`discomkd.training.trainer.train`.

The same data for every method: when the modality folders hold unlabelled recordings, every
baseline that can learn from them does (``dml`` mimics its peers on them too, ``kd``/``dkd`` and
``distill`` distil their teacher on them, ``self_training`` labels them itself), and each run
records whether it did (``uses_unlabelled``). The shared training machinery is
:mod:`discomkd.training.students`.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import LossWeights, TrainingConfig, paper_objective
from ..data.augment import augment_batch
from ..data.dataset import MultiModalDataset
from ..errors import ConfigError, DisComKDError
from ..storage import runs
from ..model.baselines import MultimodalTeacher
from ..model.bundle import first_non_finite_weight
from .convergence import validation_curve
from .events import (BatchEnded, BestModelSaved, DataProgress, EpochEnded, RunEnded, RunStarted, StopToken,
                     StageProgress, TeachingChanged, TrainingEvent, send_event)
from .precision import training_layout
from .schedule import epoch_orders
from .students import (  # noqa: F401 (BaselineSettings, StudentTargets: part of this module's interface)
    UNLABELLED_METHODS,
    BaselineSettings,
    Optimisation,
    RunProgress,
    StudentSetup,
    StudentTargets,
    StudentsResult,
    autocast_for,
    branch_with,
    device_rows,
    diverged_text,
    distill_targets,
    eval_logits,
    make_setup,
    slim_metrics,
    split_metrics,
    take,
    train_students,
)
from .trainer import select_device, train

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
TWO_STAGE = ("distill", "self_training")
# Methods trained by the DisCoM-KD trainer itself (discomkd_variant_config says how).
TRAINER_VARIANTS = ("discomkd", "discomkd_paper", "classifiers_only", *ABLATIONS)


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
# Teacher


def train_teacher(setup: StudentSetup, progress: RunProgress, stop: StopToken) -> TeacherResult | None:
    """Train the multimodal teacher on the paired training rows (None if stopped before an epoch)."""
    cfg, names, device = setup.config, setup.names, setup.device
    if not setup.paired:
        raise ConfigError("A multimodal teacher needs paired files (the same file names in every modality).")
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    shapes = {n: setup.prepared[n].spec.input_shape for n in names}
    teacher = training_layout(MultimodalTeacher(names, shapes, setup.backbones, 2 * cfg.embed_dim,
                                                len(setup.classes)).to(device))
    opt = Optimisation(setup, teacher.parameters())
    train_x, train_y = device_rows(setup)
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
            inputs = {n: augment_batch(take(train_x[n], idx), setup.prepared[n].spec.augmentation, generator)
                      for n in names}
            with autocast_for(setup):
                logits = teacher(inputs)
            opt.step(F.cross_entropy(logits.float(), take(y_rows, idx)), "teacher",
                     ((epoch - 1) + (step - 1) / steps) / cfg.epochs)
            progress(((epoch - 1) * steps + step) / (cfg.epochs * steps), f"teacher epoch {epoch}/{cfg.epochs}")
        if stop.is_set():
            break
        # Weights (or BatchNorm statistics) that are no longer finite would teach every student nonsense.
        broken = first_non_finite_weight(teacher.state_dict())
        if broken is not None:
            raise DisComKDError(diverged_text("teacher", f"weights became NaN or infinite at epoch {epoch} ({broken})",
                                              cfg.learning_rate))
        metrics = split_metrics(eval_logits(teacher, val_inputs, device), val_y, setup.classes)
        if metrics and not math.isfinite(metrics["loss"]):
            raise DisComKDError(diverged_text("teacher", f"the validation loss became {metrics['loss']} at epoch {epoch}",
                                              cfg.learning_rate))
        score = metrics["weighted_f1"] if metrics else float(epoch)
        if score > best_score:
            best_score = score
            best_state = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
    if best_state is None:
        return None
    teacher.load_state_dict(best_state)
    train_logits = eval_logits(teacher, {n: setup.prepared[n].x["train"] for n in names}, device)
    unlabelled_logits = eval_logits(teacher, setup.unlabelled, device) if setup.unlabelled is not None else None
    test = split_metrics(eval_logits(teacher, {n: setup.prepared[n].x["test"] for n in names}, device),
                    setup.prepared[names[0]].y["test"], setup.classes) or {}
    return TeacherResult(train_logits, slim_metrics(test), time.perf_counter() - t0, unlabelled_logits)


def train_two_stage(method: str, setup: StudentSetup, settings: BaselineSettings, progress: RunProgress,
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
        targets = distill_targets(setup, first.best_scores, first.best_states)
        retrain = sorted(set(targets.labelled) | set(targets.unlabelled), key=setup.names.index)
        if not retrain:
            first.reason += " No modality validates clearly above another, so none was retrained."
            return first
    else:
        for n in setup.names:
            stage1 = branch_with(setup, n, first.best_states[n])
            probs = F.softmax(eval_logits(stage1, setup.unlabelled[n], setup.device), dim=1)
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


class RunProgressHandler:
    """A training's events as one comparison run's progress (fraction, message): the files read, then
    every batch. A TrainingEventHandler; what the run ends with, the comparison takes from its result."""

    def __init__(self, progress: RunProgress, epochs: int) -> None:
        self.progress = progress
        self.epochs = epochs

    def __call__(self, event: TrainingEvent) -> None:
        send_event(self, event)

    def on_data_progress(self, event: DataProgress) -> None:
        self.progress(0.0, f"{event.stage}: {event.done}/{event.total}")

    def on_run_started(self, event: RunStarted) -> None:
        pass  # the comparison says "starting" itself, before the training reads anything

    def on_batch_ended(self, event: BatchEnded) -> None:
        self.progress(event.progress, f"epoch {event.epoch}/{self.epochs}")

    def on_epoch_ended(self, event: EpochEnded) -> None:
        pass  # the batch that ended the epoch has just reported the same progress

    def on_teaching_changed(self, event: TeachingChanged) -> None:
        pass  # a comparison's table reports results, not how a run got there

    def on_stage_progress(self, event: StageProgress) -> None:
        self.progress(1.0, event.text)  # after the epochs: the stage's own progress is in the text

    def on_best_model_saved(self, event: BestModelSaved) -> None:
        pass  # the run folder is temporary: its model is not kept

    def on_run_ended(self, event: RunEnded) -> None:
        pass  # train() returns the same RunEnded, which becomes the run's row


def run_discomkd_variant(
    method: str, config: TrainingConfig, dataset: MultiModalDataset, progress: RunProgress, stop: StopToken
) -> BaselineRun:
    """A DisCoM-KD trainer variant (see discomkd_variant_config), trained in a temporary run folder."""
    variant = discomkd_variant_config(method, config)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="discomkd-compare-") as tmp:
        ended: RunEnded = train(variant, run_dir=tmp, on_event=RunProgressHandler(progress, config.epochs), stop=stop,
                                dataset=dataset)
        history = runs.read_history(Path(tmp))
    # A classifier retrained after the epochs (teacher_stage.py) brings its own validation curve.
    metrics = {n: {"val_curve": [round(f, 4) for f in validation_curve(history, n)], **slim_metrics(m)}
               for n, m in (ended.test_metrics or {}).items()}
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
        reason = skip_reason(method, dataset, settings)
        if reason:
            return BaselineRun(method, config.seed, "skipped", reason, 0.0)
        if method in TRAINER_VARIANTS:
            run = run_discomkd_variant(method, config, dataset, progress, stop)
            run.uses_unlabelled = uses_unlabelled(method, config, dataset, settings)
            return run
        setup = make_setup(config, dataset, select_device(config.device), settings.use_unlabelled)
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
