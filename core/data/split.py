"""Stratified train / validation / test splits (pairs kept together), optionally holding out whole
groups of files (speakers, subjects, sessions: data/grouping.py), and training-split statistics."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import DataError
from .dataset import MultiModalDataset
from .grouping import describe_groups, file_groups
from .spec import ModalitySpec

PARTS = ("train", "val", "test")
PART_TEXT = {"train": "training", "val": "validation", "test": "test"}


@dataclass
class SplitIndices:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    # Set when the modality's files were split by groups: the pattern, each part's group names and
    # what the user should know (a class no part of which could go to training, ...).
    pattern: str = ""
    groups: dict[str, list[str]] | None = None
    warnings: list[str] = field(default_factory=list)

    def group_record(self) -> dict | None:
        """How the groups were split, for run.json and the model bundle (None: split by class only)."""
        if self.groups is None:
            return None
        return {"pattern": self.pattern, "groups": {p: list(self.groups[p]) for p in PARTS},
                "files": {p: int(len(getattr(self, p))) for p in PARTS}, "warnings": list(self.warnings)}


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
    dataset: MultiModalDataset, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 0,
    group_patterns: dict[str, str] | None = None,
) -> dict[str, SplitIndices]:
    """Each modality is split on its own; paired data is split by sample so pairs stay together.

    ``group_patterns``: modality -> regular expression whose first capture group names the file's
    group (data/grouping.py); '' or absent: that modality is split by class only. Validation and
    test then hold out whole groups: no group has files in two parts (across modalities too: the
    same group name in two modalities is one group, and a pair's files are one sample)."""
    if any(f < 0 for f in fractions) or fractions[0] <= 0:
        raise DataError("Split fractions must be non-negative and the training fraction positive.")
    group_patterns = {m.name: (group_patterns or {}).get(m.name, "") for m in dataset.modalities}
    file_group = {m.name: file_groups(m.files, group_patterns[m.name], m.name)
                  for m in dataset.modalities if group_patterns[m.name]}
    splits: dict[str, SplitIndices] = {}
    if dataset.report.pairing.status == "paired":
        first = dataset.modalities[0]
        keys = [(first.classes[l], s) for l, s in zip(first.labels, first.stems)]
        if file_group:
            units, names = _paired_units(dataset, keys, file_group)
            part_of_unit = assign_groups([(dataset.global_labels(0), units)], len(names), len(dataset.classes),
                                         fractions, seed, [_modality_text(dataset, file_group, group_patterns)])
            part_of = [PARTS[part_of_unit[u]] for u in units]
            base = SplitIndices(**{p: np.flatnonzero(np.asarray(part_of) == p).astype(np.int64) for p in PARTS})
        else:
            base = stratified_split(dataset.global_labels(0), fractions, seed)
        assignment = {}
        for part in PARTS:
            for i in getattr(base, part):
                assignment[keys[i]] = part
        for m in dataset.modalities:
            groups: dict[str, list[int]] = {"train": [], "val": [], "test": []}
            for i, (l, s) in enumerate(zip(m.labels, m.stems)):
                groups[assignment[(m.classes[l], s)]].append(i)
            splits[m.name] = SplitIndices(**{k: np.asarray(v, dtype=np.int64) for k, v in groups.items()})
    else:
        for k, m in enumerate(dataset.modalities):
            if m.name not in file_group:
                splits[m.name] = stratified_split(dataset.global_labels(k), fractions, seed + 1000 * k)
        if file_group:
            splits.update(_grouped_unpaired(dataset, file_group, group_patterns, fractions, seed))
        splits = {m.name: splits[m.name] for m in dataset.modalities}
    for m in dataset.modalities:
        if m.name in file_group:
            splits[m.name] = _with_groups(splits[m.name], m, file_group[m.name], group_patterns[m.name], fractions)
    return splits


def _modality_text(dataset: MultiModalDataset, file_group: dict[str, list[str]], patterns: dict[str, str]) -> str:
    return " and ".join(f"'{n}' (pattern '{patterns[n]}': {describe_groups(sorted(set(g)))})"
                        for n, g in file_group.items())


def _paired_units(dataset: MultiModalDataset, keys: list[tuple[str, str]],
                  file_group: dict[str, list[str]]) -> tuple[np.ndarray, list[str]]:
    """One unit per set of groups that pairs tie together: when two modalities name a pair's group
    differently, both names are one group (so neither reaches two parts)."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    by_key: dict[tuple[str, str], list[str]] = {}
    for m in dataset.modalities:
        if m.name in file_group:
            for l, s, g in zip(m.labels, m.stems, file_group[m.name]):
                by_key.setdefault((m.classes[l], s), []).append(g)
    for names in by_key.values():
        for other in names[1:]:
            ra, rb = find(names[0]), find(other)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    roots = sorted({find(by_key[k][0]) for k in keys})
    index = {r: i for i, r in enumerate(roots)}
    return np.asarray([index[find(by_key[k][0])] for k in keys], dtype=np.int64), roots


def _grouped_unpaired(dataset: MultiModalDataset, file_group: dict[str, list[str]], patterns: dict[str, str],
                      fractions, seed: int) -> dict[str, SplitIndices]:
    """The grouped modalities of unpaired data, split together: a group name found in two
    modalities (the same subject) goes to the same part in both."""
    names = sorted(set().union(*(set(g) for g in file_group.values())))
    index = {n: i for i, n in enumerate(names)}
    tables, order = [], []
    for k, m in enumerate(dataset.modalities):
        if m.name in file_group:
            tables.append((dataset.global_labels(k), np.asarray([index[g] for g in file_group[m.name]], dtype=np.int64)))
            order.append(m.name)
    texts = [f"'{n}' (pattern '{patterns[n]}': {describe_groups(sorted(set(file_group[n])))})" for n in order]
    part_of_unit = assign_groups(tables, len(names), len(dataset.classes), fractions, seed, texts)
    out = {}
    for name, (_, units) in zip(order, tables):
        parts = part_of_unit[units]
        out[name] = SplitIndices(**{p: np.flatnonzero(parts == i).astype(np.int64) for i, p in enumerate(PARTS)})
    return out


def assign_groups(tables: list[tuple[np.ndarray, np.ndarray]], n_units: int, n_classes: int,
                  fractions, seed: int, modality_texts: list[str]) -> np.ndarray:
    """The part (0 train, 1 validation, 2 test) of each group, so that whole groups are held out.

    ``tables``: per modality, (class of each sample, group of each sample). Groups are taken in a
    seeded random order; each goes to the part where it brings the per-class file counts closest to
    the fractions (summed over modalities, each relative to its size), which keeps the split as
    stratified and as near the fractions as whole groups allow (like scikit-learn's
    StratifiedGroupKFold). Every part with a share gets a group of every modality: a group is
    placed where one is missing as soon as no other group could fill it later."""
    share = np.asarray(fractions, dtype=np.float64) / float(sum(fractions))
    parts = [p for p in range(3) if share[p] > 0]
    n_mod = len(tables)
    counts = np.zeros((n_units, n_mod, n_classes))
    for m, (labels, units) in enumerate(tables):
        np.add.at(counts, (units, m, labels), 1.0)
    has = counts.sum(axis=2) > 0  # (unit, modality)
    for m in range(n_mod):
        if has[:, m].sum() < len(parts):
            wanted = " and ".join(PART_TEXT[PARTS[p]] for p in parts)
            raise DataError(
                f"The modality {modality_texts[m]} has {int(has[:, m].sum())} group(s), but {wanted} must each hold "
                f"whole groups, so at least {len(parts)} are needed. Add files of more groups; or give the test "
                "share 0 (for example --split 0.8,0.2,0) and measure the model afterwards with 'discomkd evaluate' "
                "on files of groups it has not seen; or split this modality by class only (no group pattern)."
            )
    totals = counts.sum(axis=0)  # (modality, class)
    scale = 1.0 / np.maximum(totals.sum(axis=1), 1.0)[:, None]
    target = share[:, None, None] * totals[None]
    current = np.zeros((3, n_mod, n_classes))
    assigned = np.full(n_units, -1, dtype=np.int64)
    remaining = has.sum(axis=0)  # per modality: unassigned groups holding some of its files
    for u in np.random.default_rng(seed).permutation(n_units):
        lacking = [[p for p in parts if current[p, m].sum() == 0] for m in range(n_mod)]
        needy = {p for m in range(n_mod) if has[u, m] and 0 < len(lacking[m]) >= remaining[m] for p in lacking[m]}
        choices = [p for p in parts if p in needy] or parts
        cost = [float((((current[p] + counts[u] - target[p]) * scale) ** 2).sum()
                      - (((current[p] - target[p]) * scale) ** 2).sum()) for p in choices]
        best = choices[int(np.argmin(cost))]
        assigned[u] = best
        current[best] += counts[u]
        remaining -= has[u]
    for m in range(n_mod):
        empty = [PART_TEXT[PARTS[p]] for p in parts if current[p, m].sum() == 0]
        if empty:  # only when groups span modalities in a way no order can satisfy
            raise DataError(f"The {' and '.join(empty)} split got no group of the modality {modality_texts[m]}. "
                            "Add files of more groups or split this modality by class only (no group pattern).")
    return assigned


def _with_groups(split: SplitIndices, modality, groups: list[str], pattern: str, fractions) -> SplitIndices:
    """``split`` with its group names per part and what the user should know about it."""
    names = {p: sorted({groups[i] for i in getattr(split, p)}) for p in PARTS}
    warnings = []
    for p in PARTS:
        if fractions[PARTS.index(p)] > 0:
            present = set(modality.labels[getattr(split, p)].tolist())
            absent = [c for i, c in enumerate(modality.classes) if i not in present]
            if absent:
                hint = (" Its classifier never learns them." if p == "train"
                        else " They are not measured there.")
                warnings.append(f"{modality.name}: the {PART_TEXT[p]} split has no file of class(es) "
                                f"{', '.join(absent)}, because their files are all in groups of other parts.{hint}")
    total = sum(len(getattr(split, p)) for p in PARTS) or 1
    wanted = np.asarray(fractions, dtype=np.float64) / float(sum(fractions))
    got = np.asarray([len(getattr(split, p)) / total for p in PARTS])
    if np.abs(got - wanted).max() > 0.1:
        warnings.append(f"{modality.name}: whole groups give a split of "
                        + ",".join(f"{g:.2f}" for g in got) + " instead of " + ",".join(f"{w:g}" for w in wanted)
                        + f" ({len(set(groups))} groups).")
    return replace(split, pattern=pattern, groups=names, warnings=warnings)


def split_group_lines(split_groups: dict[str, dict]) -> list[str]:
    """What the run's start says (CLI, log) about modalities split by groups of files, from run.json's
    ``data.split_groups`` (SplitIndices.group_record per modality)."""
    lines = []
    for name, record in (split_groups or {}).items():
        parts = "; ".join(f"{PART_TEXT[p]} {describe_groups(record['groups'][p])} ({record['files'][p]} files)"
                          for p in PARTS if record["files"][p] or record["groups"][p])
        lines.append(f"{name}: whole groups held out (pattern '{record['pattern']}'): {parts}")
        lines.extend(record.get("warnings") or [])
    return lines


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
