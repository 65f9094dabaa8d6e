"""Shared fixtures: isolated user folders, small copies of the real data, one tiny trained model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import DEMO, copy_subset, tiny_config

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_configure(config):
    # One intra-op thread: on a small shared machine torch's thread pool oversubscribes the CPU
    # (measured ~14x slower next to other jobs) and tiny test models gain nothing from it.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Runs, settings and caches go to temporary folders, never to the developer's home."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("DISCOMKD_DATA_DIR", str(base / "user-data"))
    monkeypatch.setenv("DISCOMKD_CACHE_DIR", str(base / "user-cache"))


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> dict[str, Path]:
    """Real digits 0-4: 30 images and 30 spoken digits per class, unpaired."""
    root = tmp_path_factory.mktemp("tiny-demo")
    classes = ["0", "1", "2", "3", "4"]
    return {
        "image": copy_subset(DEMO / "image", root / "image", 30, classes),
        "audio": copy_subset(DEMO / "audio", root / "audio", 30, classes),
    }


@pytest.fixture(scope="session")
def trained_run(tiny_demo, tmp_path_factory):
    """One tiny DisCoM-KD training on real digits, shared by bundle, prediction and CLI tests."""
    from discomkd.training.trainer import train

    run_dir = tmp_path_factory.mktemp("trained-run")
    result = train(tiny_config(tiny_demo, epochs=10, batch_size=16), run_dir=run_dir)
    assert result.status == "finished", result.reason
    return result
