"""The data side of a training: the modality folders read, split, standardised with the training
split's statistics and, for paired files, aligned row by row across modalities."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..config import TrainingConfig
from ..data.dataset import ModalityData, MultiModalDataset, combine_modalities, unlabelled_pairs
from ..data.load import load_modality
from ..data.spec import ModalitySpec
from ..data.grouping import effective_pattern
from ..data.split import SplitIndices, split_dataset, with_statistics
from ..errors import ConfigError
from .events import DataProgress, EventCallback, StopToken


@dataclass
class PreparedModality:
    """One modality ready for the loop: standardised tensors for each split, spec with statistics."""

    data: ModalityData
    spec: ModalitySpec
    x: dict[str, torch.Tensor]  # "train", "val", "test" -> (N, C, ...)
    y: dict[str, torch.Tensor]  # global class indices
    # Unlabelled recordings present in every modality, standardised like the rest; row i is the same
    # recording (file stem) in every modality. Empty when there are none.
    unlabelled: torch.Tensor | None = None
    # Rows of ``data`` (and so of ``data.files``) in each split, in the order of ``x`` and ``y``.
    rows: dict[str, np.ndarray] | None = None
    # How whole groups of files (speakers, subjects...) were held out (SplitIndices.group_record);
    # None when the modality was split by class only.
    grouping: dict | None = None


def prepare_modalities(
    config: TrainingConfig,
    dataset: MultiModalDataset,
) -> dict[str, PreparedModality]:
    """Split, standardise with the training split's statistics, and, when the files are paired,
    order every split so that row i is the same (class, file stem) in every modality."""
    splits = split_dataset(dataset, tuple(config.split), config.seed, group_patterns(config))
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
        rows = {part: getattr(split, part) for part in ("train", "val", "test")}
        prepared[modality.name] = PreparedModality(modality, spec, x, y, rows=rows, grouping=split.group_record())
    stems = unlabelled_pairs(dataset.modalities)
    if stems:
        for modality in dataset.modalities:
            row = {stem: i for i, stem in enumerate(modality.unlabelled_stems)}
            rows = np.asarray([row[s] for s in stems], dtype=np.int64)
            spec = prepared[modality.name].spec
            prepared[modality.name].unlabelled = torch.from_numpy(spec.normalize(modality.unlabelled_x[rows]))
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
    return replace(split, **parts)


def group_patterns(config: TrainingConfig) -> dict[str, str]:
    """Each modality's group pattern: its own (':group='), else the run's (--group-by); '' for none."""
    return {s.name: effective_pattern(getattr(s, "group", ""), config.group_by) for s in config.modalities}


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
