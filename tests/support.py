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
