"""Calibrated probabilities: temperature scaling, expected calibration error, reliability bins and
the confidence below which an answer is flagged as uncertain.

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017): one
positive number T per classifier, fitted on the validation split by minimising the negative
log-likelihood of ``softmax(logits / T)``. Dividing every logit by the same T > 0 keeps their order,
so the predicted class never changes; only how sure the classifier says it is.

Expected calibration error (ECE): the top-1 confidences are put into ``ECE_BINS`` equal-width bins
on [0, 1] (bin k holds confidences in (k/15, (k+1)/15], a confidence of 0 goes to the first); ECE is
the sum over bins of (share of the samples in the bin) x |accuracy in the bin - mean confidence in
the bin|. 0 means "an answer given with 80% is right 80% of the time".

No Qt, no training code: the trainer fits with these functions, the predictor, ``evaluate`` and
the export apply them, and the Results page draws the bins they return.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

ECE_BINS = 15
# The fitted temperature is kept inside these bounds: a validation split without a single error
# would otherwise push T towards 0 (every answer 100% sure), a degenerate one towards infinity.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
_SEARCH_STEPS = 100  # golden-section steps on log T: the bracket shrinks to ~1e-20 of its width
# An answer is flagged as uncertain where the validation answers of its confidence are right less
# often than this (see default_uncertain_below).
UNCERTAIN_ACCURACY_LEVEL = 0.9


def calibrated_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over the last axis, in float32."""
    return torch.softmax(logits.float() / float(temperature), dim=-1)


def _validation_nll(logits: torch.Tensor, labels: torch.Tensor, log_temperature: float) -> float:
    return float(F.cross_entropy(logits / math.exp(log_temperature), labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T in [MIN_TEMPERATURE, MAX_TEMPERATURE] that minimises the NLL of softmax(logits / T) on
    (logits, labels); 1.0 without samples.

    The NLL is convex in 1/T, so it has one minimum along log T too: a golden-section search over
    log T finds it without step sizes or a starting point to tune (unlike LBFGS), deterministically.
    """
    if logits.ndim != 2 or logits.shape[0] == 0:
        return 1.0
    logits = logits.detach().double().cpu()
    labels = labels.detach().long().cpu()
    low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = _validation_nll(logits, labels, a), _validation_nll(logits, labels, b)
    for _ in range(_SEARCH_STEPS):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = _validation_nll(logits, labels, a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = _validation_nll(logits, labels, b)
    return float(math.exp((low + high) / 2))


def mean_confidence(logits: torch.Tensor, temperature: float) -> float:
    return float(calibrated_probabilities(logits, temperature).max(dim=1).values.double().mean())


def temperature_for_mean_confidence(logits: torch.Tensor, target: float) -> float:
    """The T in [MIN_TEMPERATURE, MAX_TEMPERATURE] at which the mean top-1 confidence is ``target``
    (bisection on log T: each top-1 probability falls as T grows); a bound when none reaches it."""
    logits = logits.detach().double().cpu()
    low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    if mean_confidence(logits, math.exp(low)) <= target:
        return MIN_TEMPERATURE
    if mean_confidence(logits, math.exp(high)) >= target:
        return MAX_TEMPERATURE
    for _ in range(_SEARCH_STEPS):
        middle = (low + high) / 2
        if mean_confidence(logits, math.exp(middle)) > target:
            low = middle
        else:
            high = middle
    return float(math.exp(high))


def _bin_index(confidences: np.ndarray, n_bins: int) -> np.ndarray:
    return np.clip(np.ceil(confidences * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability_bins(confidences, correct, n_bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width confidence bin: its bounds, how many answers fell in it, their mean
    confidence and their accuracy (None for an empty bin). JSON-ready; the Results page draws it."""
    confidences = np.asarray(confidences, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    index = _bin_index(confidences, n_bins)
    bins = []
    for k in range(n_bins):
        in_bin = index == k
        count = int(in_bin.sum())
        bins.append({
            "lower": k / n_bins,
            "upper": (k + 1) / n_bins,
            "count": count,
            "confidence": float(confidences[in_bin].mean()) if count else None,
            "accuracy": float(correct[in_bin].mean()) if count else None,
        })
    return bins


def expected_calibration_error(confidences, correct, n_bins: int = ECE_BINS) -> float:
    """ECE of top-1 confidences against whether the answer was right (module docstring); 0.0 without samples."""
    bins = reliability_bins(confidences, correct, n_bins)
    total = sum(b["count"] for b in bins)
    if total == 0:
        return 0.0
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def _increasing_fit(values: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``values`` in least squares (pool adjacent violators)."""
    sums: list[float] = []
    counts: list[int] = []
    for v in values:
        sums.append(float(v))
        counts.append(1)
        while len(sums) > 1 and sums[-2] / counts[-2] > sums[-1] / counts[-1]:
            s, c = sums.pop(), counts.pop()
            sums[-1] += s
            counts[-1] += c
    return np.repeat([s / c for s, c in zip(sums, counts)], counts)


def default_uncertain_below(confidences, correct, level: float = UNCERTAIN_ACCURACY_LEVEL) -> float:
    """The confidence below which validation answers are right less than ``level`` of the time.

    Accuracy as a function of (calibrated) confidence is estimated on the validation answers by the
    closest non-decreasing curve (isotonic regression, so a few unlucky answers do not make it
    jump around); the threshold is the lowest validation confidence at which that curve reaches
    ``level``. When it never does (a weak classifier), every answer below 100% is flagged (1.0);
    without validation answers, ``level`` itself (what a calibrated confidence of ``level`` means).
    """
    confidences = np.asarray(confidences, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    if confidences.size == 0:
        return float(level)
    order = np.argsort(confidences, kind="stable")
    accuracy_curve = _increasing_fit(correct[order])
    reached = np.nonzero(accuracy_curve >= level)[0]
    if reached.size == 0:
        return 1.0
    return float(confidences[order][reached[0]])


def top1(probabilities: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 confidences and whether each top-1 answer is the label, as NumPy arrays."""
    confidence, predicted = probabilities.max(dim=1)
    return confidence.double().cpu().numpy(), (predicted.cpu() == labels.cpu()).numpy()


def fit_calibration(val_logits: torch.Tensor, val_labels: torch.Tensor) -> dict:
    """One classifier's calibration from its validation outputs: the temperature and the default
    confidence threshold for uncertain answers (JSON-ready, stored in the model bundle)."""
    samples = int(val_logits.shape[0]) if val_logits.ndim == 2 else 0
    if samples == 0:
        return uncalibrated()
    # When (almost) every validation answer is right, the NLL keeps falling as T -> 0 and would claim
    # 100% everywhere. So the validation answers may not be surer on average than k right out of n
    # supports: (k + 1) / (n + 2) (Laplace's rule of succession); this binds only near-perfect splits.
    right = int((val_logits.argmax(1).cpu() == val_labels.cpu()).sum())
    supported = (right + 1) / (samples + 2)
    temperature = max(fit_temperature(val_logits, val_labels), temperature_for_mean_confidence(val_logits, supported))
    confidence, correct = top1(calibrated_probabilities(val_logits, temperature), val_labels)
    return {
        "temperature": temperature,
        "uncertain_below": default_uncertain_below(confidence, correct),
        "fitted_on": "validation",
        "samples": samples,
    }


# Why a model's probabilities may be plain softmax, and how its run gets a calibration after all.
NOT_CALIBRATED_WHY = "a model from before calibration, or no validation split"
CALIBRATE_COMMAND = "`discomkd continue RUN_DIR --epochs 0` on its run fits the calibration"


def is_calibrated(calibration: dict) -> bool:
    """Whether a modality's calibration was fitted (on its validation split), not the temperature-1 default."""
    return calibration.get("fitted_on") == "validation"


def uncalibrated() -> dict:
    """What a classifier without a validation split (or from an older bundle) uses: temperature 1."""
    return {"temperature": 1.0, "uncertain_below": UNCERTAIN_ACCURACY_LEVEL, "fitted_on": None, "samples": 0}


def calibration_report(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> dict:
    """ECE, mean confidence and reliability bins of labelled outputs (the test split, a folder), before
    (T = 1) and after calibration with ``temperature``."""
    before_conf, before_correct = top1(calibrated_probabilities(logits, 1.0), labels)
    after_conf, after_correct = top1(calibrated_probabilities(logits, temperature), labels)
    return {
        "temperature": float(temperature),
        "ece": expected_calibration_error(after_conf, after_correct),
        "ece_uncalibrated": expected_calibration_error(before_conf, before_correct),
        "mean_confidence": float(after_conf.mean()) if after_conf.size else None,
        "mean_confidence_uncalibrated": float(before_conf.mean()) if before_conf.size else None,
        "reliability": {"uncalibrated": reliability_bins(before_conf, before_correct),
                        "calibrated": reliability_bins(after_conf, after_correct)},
    }
