"""Stratified train / validation / test splits (pairs kept together) and training-split statistics."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import DataError
from .dataset import MultiModalDataset
from .spec import ModalitySpec


@dataclass
class SplitIndices:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def stratified_split(labels: np.ndarray, fractions: tuple[float, float, float], seed: int) -> SplitIndices:
    """Per class: shuffle, then cut train/val/test by the fractions (each class keeps >= 1 train sample)."""
    train_f, val_f, test_f = fractions
    total_f = train_f + val_f + test_f
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n = idx.size
        n_test = int(round(n * test_f / total_f))
        n_val = int(round(n * val_f / total_f))
        if n - n_test - n_val < 1:  # tiny classes: training comes first
            n_test = max(0, min(n_test, n - 1))
            n_val = max(0, n - 1 - n_test) if n - n_test - n_val < 1 else n_val
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    return SplitIndices(**{k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in parts.items()})


def split_dataset(
    dataset: MultiModalDataset, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 0
) -> dict[str, SplitIndices]:
    """Each modality is split on its own; paired data is split by sample so pairs stay together."""
    if any(f < 0 for f in fractions) or fractions[0] <= 0:
        raise DataError("Split fractions must be non-negative and the training fraction positive.")
    splits: dict[str, SplitIndices] = {}
    if dataset.report.pairing.status == "paired":
        first = dataset.modalities[0]
        keys = [(first.classes[l], s) for l, s in zip(first.labels, first.stems)]
        base = stratified_split(dataset.global_labels(0), fractions, seed)
        assignment = {}
        for part in ("train", "val", "test"):
            for i in getattr(base, part):
                assignment[keys[i]] = part
        for m in dataset.modalities:
            groups: dict[str, list[int]] = {"train": [], "val": [], "test": []}
            for i, (l, s) in enumerate(zip(m.labels, m.stems)):
                groups[assignment[(m.classes[l], s)]].append(i)
            splits[m.name] = SplitIndices(**{k: np.asarray(v, dtype=np.int64) for k, v in groups.items()})
        return splits
    for k, m in enumerate(dataset.modalities):
        splits[m.name] = stratified_split(dataset.global_labels(k), fractions, seed + 1000 * k)
    return splits


def channel_statistics(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of (N, C, ...) data, in float64 for stability."""
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, dtype=np.float64)
    std = x.std(axis=axes, dtype=np.float64)
    std = np.where(std < 1e-6, 1.0, std)  # constant channels stay finite
    return mean.tolist(), std.tolist()


def with_statistics(spec: ModalitySpec, x_train: np.ndarray) -> ModalitySpec:
    mean, std = channel_statistics(x_train)
    return replace(spec, mean=mean, std=std)
