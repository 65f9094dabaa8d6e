"""Decoded modalities and the multimodal dataset: classes matched by folder name, what is
missing, what was skipped, and whether the files are paired across modalities."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import DataError
from .scan import SkippedFile, is_unlabelled_folder, refuse_case_only_differences
from .spec import ModalitySpec


@dataclass
class ModalityData:
    """One modality, decoded: inputs x (N, C, ...), labels into ``classes``, what was skipped."""

    name: str
    folder: str
    spec: ModalitySpec
    classes: list[str]
    x: np.ndarray
    labels: np.ndarray
    files: list[str]  # relative to folder, parallel to x
    skipped: list[SkippedFile] = field(default_factory=list)
    from_cache: bool = False
    kind_guess: str = ""  # the kind inferred from the files (spec.kind differs when the user chose another)
    kind_options: tuple[str, ...] = ()  # the kinds these files can be read as (2-D .npy: image or signal)
    kind_reason: str = ""  # why the kind was guessed, for the user (empty when the file type decides)
    cache_note: str = ""  # set when a damaged cache file was found, removed and rebuilt
    notices: list[str] = field(default_factory=list)  # what the reading decided for the user (merged folders)
    # Files of the "_unlabelled" sub-folder: recordings without a class, used only when paired
    # with the other modalities' unlabelled files (see split_off_unlabelled).
    unlabelled_x: np.ndarray | None = None
    unlabelled_files: list[str] = field(default_factory=list)

    @property
    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    @property
    def stems(self) -> list[str]:
        return [Path(f).stem for f in self.files]

    @property
    def unlabelled_stems(self) -> list[str]:
        return [Path(f).stem for f in self.unlabelled_files]


def split_off_unlabelled(data: ModalityData) -> ModalityData:
    """Move the files of an ``_unlabelled`` sub-folder (read like a class, so that decoding and the
    cache need no special case) out of the labelled data."""
    folder_class = [i for i, c in enumerate(data.classes) if is_unlabelled_folder(c)]
    if not folder_class:
        return data
    unlabelled = np.isin(data.labels, folder_class)
    kept = [i for i in range(len(data.classes)) if i not in folder_class]
    return keep_rows(data, ~unlabelled, kept, unlabelled_x=data.x[unlabelled],
                     unlabelled_files=[f for f, u in zip(data.files, unlabelled) if u])


def keep_rows(data: ModalityData, keep: np.ndarray, kept_classes, **changes) -> ModalityData:
    """``data`` with only the rows of the boolean mask ``keep`` and the classes ``kept_classes``
    (indices, in order), labels renumbered to them; ``changes`` replace further fields."""
    remap = np.full(len(data.classes), -1, dtype=np.int64)
    remap[kept_classes] = np.arange(len(kept_classes))
    return replace(
        data,
        classes=[data.classes[i] for i in kept_classes],
        x=data.x[keep],
        labels=remap[data.labels[keep]],
        files=[f for f, k in zip(data.files, keep) if k],
        **changes,
    )


def unlabelled_pairs(modalities: list[ModalityData]) -> list[str]:
    """The file stems that have an unlabelled file in every modality, sorted, without those that are
    also a labelled file's stem (see :func:`unlabelled_also_labelled`) or name two files of one
    modality (see :func:`unlabelled_name_clashes`)."""
    stems = [set(m.unlabelled_stems) for m in modalities]
    if not all(stems):
        return []
    return sorted(set.intersection(*stems) - set(unlabelled_also_labelled(modalities))
                  - set(unlabelled_name_clashes(modalities)))


def unlabelled_name_clashes(modalities: list[ModalityData]) -> list[str]:
    """Stems that name two or more unlabelled files of one modality (day1/rec1.npy and day2/rec1.npy,
    rec1.npy and rec1.png), sorted. Which of them pairs with the other modalities' file cannot be
    known, so they are left out rather than one of them taken at random."""
    return sorted({s for m in modalities for s, n in Counter(m.unlabelled_stems).items() if n > 1})


def unlabelled_also_labelled(modalities: list[ModalityData]) -> list[str]:
    """Stems of unlabelled files that are also a labelled file's stem in some modality, sorted.

    Such a recording is probably a labelled sample copied twice; it may land in the validation or
    test split, so learning from it would leak the held-out data into training. It is left out.
    """
    labelled = set().union(*(m.stems for m in modalities))
    return sorted(set().union(*(m.unlabelled_stems for m in modalities)) & labelled)


@dataclass
class PairingReport:
    status: str  # "paired", "partial" or "unpaired"
    shared_stems: int
    detail: str


@dataclass
class DatasetReport:
    """What the user needs to see before training: classes, gaps, counts, pairing, skipped files."""

    classes: list[str]
    missing: dict[str, list[str]]  # modality -> classes it lacks
    counts: dict[str, dict[str, int]]  # modality -> class -> files
    skipped: dict[str, list[SkippedFile]]
    pairing: PairingReport
    unlabelled: dict[str, int] = field(default_factory=dict)  # modality -> files in "_unlabelled"
    unlabelled_pairs: int = 0  # stems with an unlabelled file in every modality (and no labelled one)
    unlabelled_dropped: list[str] = field(default_factory=list)  # unlabelled stems that are also labelled files
    # modality -> its unlabelled files whose name is not in every modality's _unlabelled folder (not used)
    unlabelled_unmatched: dict[str, int] = field(default_factory=dict)
    unlabelled_clashes: list[str] = field(default_factory=list)  # stems of two unlabelled files of one modality
    notices: dict[str, list[str]] = field(default_factory=dict)  # modality -> notices (merged class folders)

    def summary_lines(self) -> list[str]:
        lines = [f"{len(self.classes)} classes: {', '.join(self.classes)}"]
        for name, counts in self.counts.items():
            lines.append(f"{name}: {sum(counts.values())} files, {len(self.skipped[name])} skipped")
        for name, gaps in self.missing.items():
            if gaps:
                lines.append(f"{name} has no files for: {', '.join(gaps)}")
        lines.extend(f"{name}: {notice}" for name, notices in self.notices.items() for notice in notices)
        lines.append(f"pairing: {self.pairing.detail}")
        if self.unlabelled_pairs:
            lines.append(f"unlabelled: {self.unlabelled_pairs} recordings in every modality's _unlabelled folder "
                         "(the better-validated modality teaches the others on them)")
        if self.unlabelled_unused_text():
            lines.append(self.unlabelled_unused_text())
        if self.unlabelled_dropped:
            lines.append(unlabelled_dropped_text(self.unlabelled_dropped))
        return lines

    def unlabelled_unused_text(self) -> str:
        """Why unlabelled files go unused, and what to do ('' when every one is used or there is none;
        those named like a labelled file have their own message, unlabelled_dropped_text)."""
        having = {n: c for n, c in self.unlabelled.items() if c}
        if not having:
            return ""
        lacking = [n for n, c in self.unlabelled.items() if not c]
        files = ", ".join(f"{n} {c}" for n, c in having.items())
        if lacking:
            return (f"The unlabelled recordings ({files} file(s)) are not used: {' and '.join(lacking)} "
                    f"{'has' if len(lacking) == 1 else 'have'} no _unlabelled folder with readable files. Put the "
                    "same recordings in an _unlabelled folder of every modality, each named the same in all of them.")
        texts = []
        unmatched = {n: c for n, c in self.unlabelled_unmatched.items() if c}
        if unmatched and not self.unlabelled_pairs and not self.unlabelled_clashes:
            texts.append(f"The _unlabelled folders share no file name across modalities ({files} file(s)), so none "
                         "of their recordings is used. Name a recording's files the same in every modality (for "
                         "example rec001.npy and rec001.wav).")
        elif unmatched:
            texts.append(f"{sum(unmatched.values())} unlabelled file(s) are not used ("
                         + ", ".join(f"{n} {c}" for n, c in unmatched.items())
                         + "): no file of the same name is in every modality's _unlabelled folder. Name a "
                           "recording's files the same in every modality, or remove the extra ones.")
        if self.unlabelled_clashes:
            shown = ", ".join(self.unlabelled_clashes[:5]) + (
                f" and {len(self.unlabelled_clashes) - 5} more" if len(self.unlabelled_clashes) > 5 else "")
            texts.append(f"{len(self.unlabelled_clashes)} unlabelled recording name(s) belong to two or more files of "
                         "one modality (in different sub-folders of _unlabelled, or with different endings), so "
                         f"which files pair is unclear and they are not used: {shown}. Give each recording a name of "
                         "its own.")
        return " ".join(texts)


def unlabelled_dropped_text(stems: list[str], limit: int = 5) -> str:
    """The message for unlabelled recordings left out because a labelled file has the same name."""
    shown = ", ".join(stems[:limit]) + (f" and {len(stems) - limit} more" if len(stems) > limit else "")
    return (f"{len(stems)} unlabelled recording(s) left out because a labelled file has the same name "
            f"(they could be validation or test samples): {shown}. Rename or remove them from _unlabelled.")


def pairing_report(modalities: list[ModalityData]) -> PairingReport:
    """Samples are paired when the same file stem (within the same class) exists in every modality."""
    keyed = [{(m.classes[l], s) for l, s in zip(m.labels, m.stems)} for m in modalities]
    shared = set.intersection(*keyed)
    union = set.union(*keyed)
    if shared and len(shared) == len(union):
        return PairingReport("paired", len(shared), f"paired: all {len(shared)} samples have a file in every modality")
    if shared:
        return PairingReport(
            "partial", len(shared), f"partly paired: {len(shared)} of {len(union)} samples exist in every modality"
        )
    return PairingReport("unpaired", 0, "unpaired: no file name is shared across modalities (DisCoM-KD does not need pairing)")


@dataclass
class MultiModalDataset:
    """Several decoded modalities on one shared label set (labels are indices into ``classes``)."""

    modalities: list[ModalityData]
    classes: list[str]
    report: DatasetReport

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.modalities]

    def global_labels(self, m: int) -> np.ndarray:
        modality = self.modalities[m]
        lookup = np.asarray([self.classes.index(c) for c in modality.classes], dtype=np.int64)
        return lookup[modality.labels]


def combine_modalities(modalities: list[ModalityData]) -> MultiModalDataset:
    """Match classes by folder name; a class missing somewhere is reported, a modality sharing none is an error."""
    if len(modalities) < 2:
        raise DataError("DisCoM-KD needs at least two modalities. Add another modality folder.")
    names = [m.name for m in modalities]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"Two modalities are named '{duplicates[0]}'. Give each modality its own name.")
    classes = natural_class_order(set().union(*(m.classes for m in modalities)))
    refuse_case_only_differences(classes, "the modalities (" + ", ".join(names) + ")")
    for m in modalities:
        others = set().union(*(o.classes for o in modalities if o is not m))
        if not others & set(m.classes):
            raise DataError(
                f"The modality '{m.name}' shares no class with the others (its classes: "
                f"{', '.join(m.classes[:8])}). Class sub-folders must have the same names in every modality."
            )
    pairs = unlabelled_pairs(modalities)
    dropped = unlabelled_also_labelled(modalities)
    clashes = unlabelled_name_clashes(modalities)
    used = set(pairs) | set(dropped) | set(clashes)  # dropped and clashing ones have messages of their own
    report = DatasetReport(
        classes=classes,
        missing={m.name: [c for c in classes if c not in m.classes] for m in modalities},
        counts={m.name: m.class_counts for m in modalities},
        skipped={m.name: m.skipped for m in modalities},
        pairing=pairing_report(modalities),
        unlabelled={m.name: len(m.unlabelled_files) for m in modalities},
        unlabelled_pairs=len(pairs),
        unlabelled_dropped=dropped,
        unlabelled_unmatched={m.name: sum(s not in used for s in m.unlabelled_stems) for m in modalities},
        unlabelled_clashes=clashes,
        notices={m.name: list(m.notices) for m in modalities if m.notices},
    )
    return MultiModalDataset(list(modalities), classes, report)


def natural_class_order(names: Iterable[str]) -> list[str]:
    """Class names sorted as people expect: '2' before '10', 'cat' before 'dog'."""
    return sorted(names, key=_natural_key)


def _natural_key(name: str):
    """'2' before '10'; class folders are often numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in _split_digits(name)]


def _split_digits(text: str) -> Iterable[str]:
    token = ""
    for ch in text:
        if token and ch.isdigit() != token[-1].isdigit():
            yield token
            token = ""
        token += ch
    if token:
        yield token
