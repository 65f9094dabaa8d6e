"""The distillation stage that follows DisCoM-KD's joint epochs.

During the joint training the strong sensor teaches the weak one on unlabelled recordings while it
is itself still learning: early on its predictions are poor. After the joint epochs each modality
that another validates clearly above (:func:`discomkd.model.losses.teaching_direction`) continues
from its best DisCoM-KD weights for as many epochs again, taught by the best-validated such
modality's best classifier, now converged: its predictions on the labelled pairs (paired files)
and on the unlabelled recordings (Hinton's distillation at temperature 1, weight 1, as
L_unlabelled), plus cross-entropy on its labels. The learning rate follows the run's schedule
afresh. Model selection goes on: a stage epoch replaces a modality's model only when it validates
higher, so the stage cannot make the selected model worse on validation.

It runs when the training learnt from unlabelled recordings (there the teacher gives the weak
sensor what its labels do not) and ``config.distill_stage`` is on. The teachers keep their weights.
"""

from __future__ import annotations

import time

from ..model.bundle import save_bundle
from ..model.losses import teaching_text
from ..storage import runs
from .events import BatchEnded, BestModelSaved, EpochEnded, StageStarted
from .students import BaselineSettings, StudentSetup, distill_targets, train_students


def wants_distillation_stage(session) -> bool:
    """Whether the run ends with a distillation stage (see the module's docstring)."""
    return bool(session.config.distill_stage) and session.unlabelled_x is not None


def run_distillation_stage(run, session, last_joint_epoch: int, metadata) -> tuple[int, bool]:
    """Train the stage after epoch ``last_joint_epoch``; returns (last epoch trained, stopped).

    Each stage epoch is reported like a joint one (BatchEnded, EpochEnded, history, log) with the
    epoch numbers continuing; a modality whose validation improves gets its best weights replaced
    and the bundle rewritten. ``run``/``session``: the loop's ActiveRun and TrainingSession;
    ``metadata(run, session)``: the bundle's metadata (the loop's bundle_metadata).
    """
    names = session.names
    scores = {n: session.best[n]["val_weighted_f1"] for n in names}
    # The stage's students see the very rows of the joint training (same split, same statistics).
    setup = StudentSetup(session.config, session.device, names,
                         session.classes, session.prepared, session.backbones, session.paired,
                         {n: session.prepared[n].unlabelled for n in names})
    targets = distill_targets(setup, scores, session.best_states)
    students = [n for n in names if n in targets.labelled or n in targets.unlabelled]
    stage_epochs = session.config.epochs
    if not students:
        run.log("no distillation stage: no modality validates clearly above another")
        return last_joint_epoch, False
    teachers = {n: [targets.teacher_of[n]] if n in targets.teacher_of else [] for n in names}
    text = (f"distillation stage, epochs {last_joint_epoch + 1}-{last_joint_epoch + stage_epochs}: "
            f"{', '.join(students)} continue from their best weights; " + teaching_text(teachers, scores))
    run.log(text)
    run.emit(StageStarted(last_joint_epoch + 1, last_joint_epoch + stage_epochs, students, text))
    t_start = time.perf_counter()
    t_epoch = [time.perf_counter()]
    steps_total = [0]
    last = [last_joint_epoch]

    def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
        steps_total[0] += 1
        fraction = ((epoch - 1) * steps + step) / (stage_epochs * steps)
        elapsed = time.perf_counter() - t_start
        run.emit(BatchEnded(last_joint_epoch + epoch, step, steps, (last_joint_epoch + epoch - 1) * steps + step,
                            {"total": loss}, fraction, elapsed / fraction * (1 - fraction),
                            session.config.batch_size / max(elapsed / steps_total[0], 1e-9)))

    def on_epoch(epoch: int, val_metrics: dict, improved: list[str], mean_loss: float, best_states: dict) -> None:
        number = last_joint_epoch + epoch
        last[0] = number
        epoch_time = time.perf_counter() - t_epoch[0]
        t_epoch[0] = time.perf_counter()
        elapsed = time.perf_counter() - t_start
        session.history.append({"epoch": number, "stage": "distillation", "train_losses": {"total": mean_loss},
                                "val": val_metrics, "epoch_time_s": epoch_time, "elapsed_s": elapsed})
        for n in improved:
            session.best[n] = {"best_epoch": number, "val_weighted_f1": float(val_metrics[n]["weighted_f1"])}
            session.best_states[n] = best_states[n]
        if run.dist.is_writer:
            runs.write_history(run.run_dir, session.history)
            if improved:
                save_bundle(run.run_dir / runs.BUNDLE_FILE, metadata(run, session), session.best_states)
        run.write_record(epochs_done=number, best=session.best)
        val_text = ", ".join(f"{n} acc {m['accuracy']:.3f} wF1 {m['weighted_f1']:.3f}" for n, m in val_metrics.items())
        run.log(f"epoch {number} (distillation stage): loss {mean_loss:.4f}; val {val_text or 'n/a'}")
        fraction = epoch / stage_epochs
        run.emit(EpochEnded(number, last_joint_epoch + stage_epochs, {"total": mean_loss}, val_metrics, fraction,
                            elapsed / fraction * (1 - fraction), elapsed, epoch_time))
        if improved:
            run.emit(BestModelSaved(number, improved, str(run.run_dir / runs.BUNDLE_FILE)))

    result = train_students("distill", setup, BaselineSettings(), lambda fraction, message: None, run.stop, targets,
                            students, session.best_states, scores, on_step, on_epoch)
    return last[0], result.status == "stopped"
