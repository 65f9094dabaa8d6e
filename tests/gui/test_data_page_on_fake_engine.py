"""The Data page alone, with a fake folder reader: a folder being read shows its progress and
keeps the page busy; one that cannot be read says why and frees the page. No window, no decoding."""

from __future__ import annotations

import threading

import pytest
from conftest import shown_alone
from discomkd.errors import DataError


@pytest.fixture
def page(qtbot):
    from discomkd_gui.pages.data_page import DataPage

    return shown_alone(qtbot, DataPage)


def test_a_folder_that_cannot_be_read_says_why_and_frees_the_page(page, qtbot, monkeypatch, tmp_path):
    from discomkd_gui.pages import data_page

    go_on = threading.Event()

    def unreadable(state, folder, name, overrides=None):
        state.set_progress(0.5, f"Reading '{name}': 1 of 2 files")
        go_on.wait(10)
        raise DataError(f"'{folder}' holds no class folders.")

    monkeypatch.setattr(data_page, "scan_modality", unreadable)
    busy: list[bool] = []
    page.busy_changed.connect(busy.append)
    entry = page.add_folder(str(tmp_path), "sensor")
    qtbot.waitUntil(lambda: page.progress.value() == 50, timeout=10000)
    assert page.is_busy() and busy == [True] and entry.status == "scanning" and page.progress.isVisible()
    assert page.progress.format() == "Reading 'sensor': 1 of 2 files"
    assert page.list.item(0).text() == "sensor\nreading…"
    with qtbot.waitSignal(page.error, timeout=10000) as error:
        go_on.set()
    assert error.args[0] == f"'{tmp_path}' holds no class folders."
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=10000)
    assert busy == [True, False] and not page.progress.isVisible()
    assert entry.status == "failed" and page.ready_entries() == []
    assert page.list.item(0).text().startswith("sensor\n⚠ ")
    assert page.summary.text() == "0 modality ready. DisCoM-KD needs at least two modalities."


def test_unlabelled_recordings_only_one_modality_has_are_said_to_be_unused(page, qtbot, monkeypatch, tmp_path):
    import numpy as np
    from discomkd.data.dataset import ModalityData
    from discomkd.data.spec import ModalitySpec
    from discomkd_gui.pages import data_page

    def read(state, folder, name, overrides=None):
        recordings = [f"_unlabelled/u{i}.npy" for i in range(3)] if name == "strong" else []
        return data_page.ScanResult(ModalityData(
            name, folder, ModalitySpec(name, "image", 1, size=(4, 4)), ["a", "b"], np.empty((0,), dtype=np.float32),
            np.array([0, 1]), ["a/s0.npy", "b/s1.npy"], unlabelled_files=recordings))

    monkeypatch.setattr(data_page, "scan_modality", read)
    page.add_folder(str(tmp_path / "strong"), "strong")
    page.add_folder(str(tmp_path / "weak"), "weak")
    qtbot.waitUntil(lambda: len(page.ready_entries()) == 2, timeout=10000)
    assert "are not used: weak has no _unlabelled folder" in page.summary.text()
    assert page.summary.property("level") == "warn"
