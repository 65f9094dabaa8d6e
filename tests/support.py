"""Helpers shared by the engine tests (a plain module: pytest's conftest names collide across folders)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEMO = REPO / "resources" / "demo"


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


def copy_subset(source: Path, destination: Path, per_class: int, classes: list[str] | None = None) -> Path:
    """Copy the first ``per_class`` files of each class folder (real data, small)."""
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        if classes is not None and class_dir.name not in classes:
            continue
        target = destination / class_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted(class_dir.iterdir())[:per_class]:
            shutil.copyfile(f, target / f.name)
    return destination


def tiny_config(folders: dict[str, Path], **changes):
    from discomkd.config import ModalitySource, TrainingConfig

    settings = dict(embed_dim=16, batch_size=32, epochs=3, learning_rate=3e-3, device="cpu", seed=0)
    settings.update(changes)
    return TrainingConfig(modalities=[ModalitySource(n, str(f)) for n, f in folders.items()], **settings)


def one_event_of_each_kind() -> list:
    """One training event of every kind, with plausible values (tests of the handlers)."""
    from discomkd.training.events import (BatchEnded, BestModelSaved, DataProgress, EpochEnded, RunEnded, RunStarted,
                                          StageProgress, TeachingChanged)

    return [
        DataProgress("Reading image", 3, 10),
        RunStarted("/tmp/run", ["image", "audio"], ["0", "1"], {"image": 50, "audio": 40}, 0, 2, 4, "cpu",
                   {"image": "compact", "audio": "compact"}, "unpaired", 0, ["cl", "aux"], 0.0),
        BatchEnded(1, 2, 4, 2, {"cl": 0.7, "aux": 0.6, "total": 1.3}, 0.25, 3.0, 120.0),
        EpochEnded(1, 2, {"cl": 0.6, "aux": 0.5, "total": 1.1},
                   {"image": {"accuracy": 0.6, "weighted_f1": 0.55, "macro_f1": 0.55, "loss": 0.9}}, 0.5, 2.0, 2.0, 2.0),
        TeachingChanged(2, {"audio": ["image"], "image": []}, "audio now learns from image on unlabelled recordings"),
        StageProgress("Self-training image", 0.5, "Self-training image: epoch 1/2"),
        BestModelSaved(1, ["image"], "/tmp/run/model.discomkd"),
        RunEnded("finished", "Finished 2 epochs.", "/tmp/run", "/tmp/run/model.discomkd", 2),
    ]
