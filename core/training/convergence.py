"""Was a training still improving when it ended? One rule for the comparison's convergence check
and the trainer's advice at the end of a run.

A model was still improving when its best validation epoch fell in the last 20% of the epochs
*and* those epochs raised its best validation weighted F1 by more than one point. A late best epoch
on a flat tail (the cosine schedule's last epochs, where the learning rate is near zero) is a
plateau, not a climb: the tolerance plays the part of early stopping's min_delta.
"""

from __future__ import annotations

import shlex

LATE_BEST_EPOCH = 0.8  # a best epoch after this share of the epochs: the run may not have converged
LATE_GAIN_TOLERANCE = 0.01  # ... unless the last epochs raised the best validation F1 by at most this


def validation_curve(history: list[dict], modality: str) -> list[float]:
    """A modality's validation weighted F1 at each epoch of a run's history (``history.jsonl`` lines)."""
    return [float(h["val"][modality]["weighted_f1"]) for h in history if modality in h.get("val", {})]


def late_gain(val_curve: list[float], epochs: int) -> float | None:
    """How much the last 20% of the epochs raised the best validation score over the epochs before
    them; None when the curve does not cover the run."""
    cut = int(LATE_BEST_EPOCH * epochs)
    if len(val_curve) != epochs or cut < 1:
        return None
    return max(val_curve[cut:]) - max(val_curve[:cut])


def still_improving(val_curve: list[float], best_epoch: int, epochs: int,
                    tolerance: float = LATE_GAIN_TOLERANCE) -> float | None:
    """The late gain of a run that was still improving at its end, else None."""
    if epochs < 5 or best_epoch <= LATE_BEST_EPOCH * epochs:
        return None
    gain = late_gain(val_curve, epochs)
    return gain if gain is not None and gain > tolerance else None


def gain_tolerance(validation_samples: int) -> float:
    """The late gain that counts as improving on a validation split of this size: a point of F1, or
    two samples' worth where fewer than 200 samples make one point finer than the split can tell."""
    return max(LATE_GAIN_TOLERANCE, 2 / validation_samples) if validation_samples > 0 else LATE_GAIN_TOLERANCE


def train_longer_advice(history: list[dict], best_epochs: dict[str, int], run_folder: str = "RUN_FOLDER",
                        validation_samples: dict[str, int] | None = None) -> str:
    """The sentence a finished run adds when some modality was still improving ('' otherwise).
    ``history`` is the run's per-epoch lines (each with 'val': modality -> metrics)."""
    epochs = len(history)
    improving = {}
    for name, best_epoch in best_epochs.items():
        tolerance = gain_tolerance((validation_samples or {}).get(name, 0))
        gain = still_improving(validation_curve(history, name), best_epoch, epochs, tolerance)
        if gain is not None:
            improving[name] = (best_epoch, gain)
    if not improving:
        return ""
    which = "; ".join(f"{n}: best epoch {e} of {epochs}, +{100 * g:.1f} validation F1 points in the last "
                      f"{100 * (1 - LATE_BEST_EPOCH):.0f}% of the epochs" for n, (e, g) in improving.items())
    return (f"Still improving at the end ({which}): more epochs may give a better model. Continue this run "
            f"(Runs page, \"Continue training…\", or `discomkd continue {shlex.quote(str(run_folder))} --epochs N`).")
