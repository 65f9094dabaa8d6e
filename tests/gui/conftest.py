"""GUI tests drive the real main window offscreen, with runs and caches in temporary folders."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# One decoded-data cache for the whole session (decoding is the same in every test).
os.environ.setdefault("DISCOMKD_CACHE_DIR", tempfile.mkdtemp(prefix="discomkd-gui-cache-"))

import pytest  # noqa: E402

CLASSES = ("0", "1", "2")
PER_CLASS = 24


@pytest.fixture(autouse=True)
def private_data_dir(tmp_path, monkeypatch):
    """Runs and settings of each test go to its own folder."""
    monkeypatch.setenv("DISCOMKD_DATA_DIR", str(tmp_path / "user-data"))
    return tmp_path / "user-data"


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> dict[str, Path]:
    """A few files per class of the embedded demo (three digits, both modalities)."""
    from discomkd.storage.paths import demo_modalities

    root = tmp_path_factory.mktemp("tiny-demo")
    out = {}
    for modality, source in demo_modalities().items():
        for cls in CLASSES:
            target = root / modality / cls
            target.mkdir(parents=True)
            for f in sorted((source / cls).iterdir())[:PER_CLASS]:
                shutil.copy2(f, target / f.name)
        out[modality] = root / modality
    return out


@pytest.fixture(scope="session")
def held_out_files() -> dict[str, Path]:
    """Demo files that are not in the tiny training copy (one image and one recording of digit 1)."""
    from discomkd.storage.paths import demo_modalities

    demo = demo_modalities()
    return {m: sorted((demo[m] / "1").iterdir())[-1] for m in demo}


@pytest.fixture(scope="session")
def trained_bundle(tiny_demo, tmp_path_factory) -> Path:
    """A small model trained on the tiny demo with the engine (a few epochs; well above chance)."""
    from discomkd.config import ModalitySource, TrainingConfig
    from discomkd.training.trainer import train

    config = TrainingConfig(
        modalities=[ModalitySource(m, str(folder)) for m, folder in tiny_demo.items()],
        embed_dim=16, epochs=6, batch_size=16, learning_rate=3e-3, device="cpu", seed=1,
    )
    result = train(config, run_dir=tmp_path_factory.mktemp("trained-run"))
    assert result.status == "finished", result.reason
    return Path(result.bundle_path)


@pytest.fixture
def window(qtbot):
    """The real main window, shown offscreen; any training is stopped before it closes."""
    from discomkd_gui.app import create_application, create_main_window

    create_application([])
    win = create_main_window(restore_session=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    if win.train_page.is_training():
        win.train_page.stop()
        qtbot.waitUntil(lambda: not win.train_page.is_training(), timeout=60000)
    for box in list(win.error_boxes):
        box.close()


def shown_alone(qtbot, page_class):
    """A page on its own, shown offscreen without the main window (a test of the page, not the app)."""
    from discomkd_gui.app import create_application

    create_application([])
    page = page_class()
    qtbot.addWidget(page)
    page.resize(1024, 600)
    page.show()
    return page


def add_modalities(qtbot, win, folders: dict[str, Path]) -> None:
    for name, folder in folders.items():
        win.data_page.add_folder(str(folder), name)
    qtbot.waitUntil(lambda: not win.data_page.is_busy() and len(win.data_page.ready_entries()) == len(folders),
                    timeout=60000)


def tiny_settings(win, epochs: int = 1) -> None:
    cfg = win.configure_page
    cfg.epochs.setValue(epochs)
    cfg.batch_size.setValue(16)
    cfg.embed_dim.setValue(8)
    cfg.device.setCurrentIndex(cfg.device.findData("cpu"))
