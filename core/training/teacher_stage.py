"""After DisCoM-KD's epochs: self-training of the modality that teaches the others.

On unlabelled recordings L_unlabelled lets the better-validated modality teach the weaker ones, so
the teaching modality itself learns nothing from them. Retrained alone on its labels plus its own
confident predictions there (the comparison's ``self_training`` baseline: Lee 2013, with
FixMatch's 0.9 confidence cut), a classifier gains from them what DisCoM-KD's joint training does
not give it (README, "What we measured"). The retrained classifier is kept only when it validates
higher than DisCoM-KD's, the same per-modality model selection as between epochs.

Under torchrun every process runs the stage alike, without DistributedDataParallel (one modality,
after the joint epochs), so that none waits in a collective for the others; only the first writes.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import DisComKDError
from ..model.losses import self_labelling
from .events import StageProgress
from .students import (BaselineSettings, StudentSetup, StudentTargets, branch_with, eval_logits, slim_metrics,
                       split_metrics, train_students)

SETTINGS = BaselineSettings()  # the self-training baseline's confidence cut (0.9) and weight (1)


def teaching_modalities(teachers: dict[str, list[str]], names: list[str]) -> list[str]:
    """The modalities that teach another on the recordings and have no teacher of their own, in order."""
    teaching = self_labelling(teachers)
    return [n for n in names if n in teaching]


def self_train_teachers(run, session, calibrate: Callable[[object, str], dict]) -> bool:
    """Retrain each teaching modality by self-training once the epochs are done; a modality keeps the
    retrained classifier when it validates higher. Returns whether a stop request ended the stage
    (the best classifier so far is kept either way). ``run``/``session``: loop.ActiveRun, TrainingSession;
    ``calibrate(session, modality)``: loop.calibrate_modality, whose temperature makes the confidence
    cut mean what it says (the joint classifier's raw probabilities are far too modest: at 92%
    accuracy on paired digits, none of 3,000 recordings reached 0.9)."""
    config = session.config
    if not config.teacher_self_training or session.unlabelled_x is None or not session.best_states:
        return False
    stage = "self-training stage"
    teaching = [n for n in teaching_modalities(session.teachers, session.names) if n in session.best_states]
    if not teaching:
        run.log(f"{stage}: no modality teaches another at the end of the epochs, so none is retrained")
        return False
    teaching = [n for n in teaching if session.prepared[n].y["val"].numel()]
    if not teaching:
        run.log(f"{stage}: skipped, since without a validation split nothing could tell whether the retrained "
                "classifier is better")
        return False
    setup = StudentSetup(config, session.device, session.names, session.classes, session.prepared,
                         session.backbones, session.paired, dict(session.unlabelled_x))
    targets, before = StudentTargets(), {}
    for n in teaching:
        joint = branch_with(setup, n, session.best_states[n])
        temperature = float(calibrate(session, n)["temperature"])
        logits = eval_logits(joint, setup.unlabelled[n], setup.device)
        confidence, labels = F.softmax(logits / temperature, dim=1).max(dim=1)
        targets.pseudo_rows[n] = torch.nonzero(confidence >= SETTINGS.self_training_threshold).flatten()
        targets.pseudo_labels[n] = labels
        test = split_metrics(eval_logits(joint, session.prepared[n].x["test"], setup.device),
                             session.prepared[n].y["test"], session.classes)
        before[n] = dict(slim_metrics(test), best_epoch=session.best[n]["best_epoch"]) if test else {}
    teaching = [n for n in teaching if targets.pseudo_rows[n].numel()]
    if not teaching:
        run.log(f"{stage}: no recording is predicted with {SETTINGS.self_training_threshold:.0%} calibrated "
                "confidence or more, so nothing is retrained")
        return False
    recordings = setup.unlabelled_count
    for n in teaching:
        run.log(f"{stage}: {n} is retrained alone on its labels and the {targets.pseudo_rows[n].numel()} of "
                f"{recordings} unlabelled recordings it predicts with {SETTINGS.self_training_threshold:.0%} "
                f"calibrated confidence or more ({config.epochs} epochs); it keeps whichever classifier validates higher")
    title = f"Self-training {', '.join(teaching)}"
    shown = [-1]

    def progress(fraction: float, message: str) -> None:
        if int(fraction * 200) != shown[0]:  # at most 200 updates for the whole stage
            shown[0] = int(fraction * 200)
            run.emit(StageProgress(title, fraction, f"{title}: {message}"))

    try:
        result = train_students("self_training", setup, SETTINGS, progress, run.stop, targets, teaching)
    except DisComKDError as exc:
        run.log(f"{stage} failed: {exc} DisCoM-KD's classifiers are kept.")
        return False
    outcome = {}
    for n in teaching:
        joint_score = float(session.best[n]["val_weighted_f1"])
        retrained = n in result.best_states and n in result.test
        score = float(result.best_scores[n]) if retrained else None
        kept = retrained and score > joint_score
        outcome[n] = {"confident_recordings": int(targets.pseudo_rows[n].numel()), "recordings": recordings,
                      "validation_joint": round(joint_score, 4),
                      "validation_retrained": None if score is None else round(score, 4),
                      "kept": "retrained" if kept else "joint"}
        if kept:
            session.best_states[n] = {k: v.detach().cpu().clone() for k, v in result.best_states[n].items()}
            session.best[n] = {**session.best[n], "val_weighted_f1": score}
            session.best_val_logits.pop(n, None)  # the calibration is fitted again, on the kept weights
            session.calibration.pop(n, None)
            session.stage_metrics[n] = {"best_epoch": result.test[n]["best_epoch"],
                                        "val_curve": result.test[n]["val_curve"], "before_self_training": before[n]}
        note = (f"{n}: validation weighted F1 {joint_score:.4f} after the joint epochs, "
                + (f"{score:.4f} retrained by self-training" if score is not None else "not retrained (stopped)")
                + f": the {'retrained' if kept else 'joint'} classifier is kept.")
        session.stage_notes.append(note)
        run.log(f"{stage}: {note}")
    run.write_record(teacher_self_training=outcome)
    return result.status == "stopped"
