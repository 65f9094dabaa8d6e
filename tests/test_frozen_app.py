"""The frozen application: build.spec builds it and its --self-test passes with no display.

Slow (a PyInstaller build of torch + Qt takes minutes): run with ``pytest -m slow``.
Build outputs go to build/frozen-test/ (ignored by git) so a rerun reuses PyInstaller's cache.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "frozen-test"
APP_FOLDER = "DisCoM-KD Studio"

pytestmark = pytest.mark.slow


def _executable(dist: Path) -> Path:
    if sys.platform == "darwin":
        return dist / f"{APP_FOLDER}.app" / "Contents" / "MacOS" / APP_FOLDER
    if sys.platform == "win32":
        return dist / APP_FOLDER / f"{APP_FOLDER}.exe"
    return dist / APP_FOLDER / "discomkd-studio"


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def frozen_app() -> Path:
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("PyInstaller is not installed; install the build extra: pip install -e '.[build]'")
    dist = WORK / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
         "--workpath", str(WORK / "work"), "--distpath", str(dist), str(ROOT / "build.spec")],
        cwd=ROOT, capture_output=True, text=True, timeout=3600,
    )
    assert build.returncode == 0, f"PyInstaller failed:\n{build.stdout[-4000:]}\n{build.stderr[-8000:]}"
    exe = _executable(dist)
    assert exe.is_file(), f"no executable at {exe}"
    return exe


def test_frozen_self_test_passes_without_display_and_writes_nothing_in_app_folder(frozen_app: Path, tmp_path: Path) -> None:
    app_folder = frozen_app.parent
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "DISCOMKD_DATA_DIR", "DISCOMKD_CACHE_DIR")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")  # where appdirs puts per-user data on Linux
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg-cache")
    before = _snapshot(app_folder)

    result = subprocess.run([str(frozen_app), "--self-test"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)

    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "SELF-TEST PASSED" in result.stdout, report
    assert "frozen app in" in report
    assert re.search(r"\[ok\] predict one image file .*-> '\d'", report), report
    assert re.search(r"\[ok\] predict one audio file .*-> '\d'", report), report
    resources = re.search(r"\[ok\] shipped resources\s+[\d.]+ s\s+(.+)", report).group(1).strip()
    assert Path(resources).resolve().is_relative_to(app_folder.resolve()), report
    if sys.platform.startswith("linux"):
        assert f"per-user data directory: {tmp_path / 'xdg-data'}" in report, report
    assert _snapshot(app_folder) == before, "the self-test wrote into the application folder"
    assert not (tmp_path / "xdg-data").exists(), "the self-test wrote into the user's data directory"


def test_frozen_self_test_fails_with_a_reason_when_resources_are_missing(frozen_app: Path, tmp_path: Path) -> None:
    if sys.platform == "darwin":
        pytest.skip("the bundle layout is signed; moving files inside it is not meaningful")
    licences = frozen_app.parent / "_internal" / "resources" / "demo" / "LICENSES.md"
    hidden = licences.with_name("LICENSES.md.hidden")
    licences.rename(hidden)
    try:
        result = subprocess.run([str(frozen_app), "--self-test"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=300)
    finally:
        hidden.rename(licences)
    assert result.returncode != 0
    assert "SELF-TEST FAILED: Shipped resources are missing" in result.stdout
    assert "LICENSES.md" in result.stdout


def test_frozen_app_leaves_out_cuda_tkinter_and_unused_qt(frozen_app: Path) -> None:
    import torch

    names = [p.name for p in frozen_app.parent.rglob("*") if p.is_file()]
    if torch.version.cuda is None:
        cuda = [n for n in names if re.match(
            r"(lib)?(cuda|cudart|cublas|cufft|curand|cusolver|cusparse|cudnn|cupti|nvrtc|nvJitLink|nccl|torch_cuda|c10_cuda)"
            r"[-_.\w]*\.(so|dll|dylib)", n, re.I)]
        assert not cuda, f"CUDA libraries in a CPU-only build: {cuda[:10]}"
    assert not [n for n in names if n.startswith(("_tkinter", "libtk", "libtcl"))]
    assert not [n for n in names if re.match(r"(lib)?Qt6(Quick|Qml|WebEngine|3D|Multimedia|Charts|Designer)", n)]


def test_frozen_cpu_app_is_at_most_700_mb_and_torch_libraries_have_no_symbol_tables(frozen_app: Path) -> None:
    import shutil

    import torch

    if not sys.platform.startswith("linux") or torch.version.cuda is not None or shutil.which("strip") is None:
        pytest.skip("the 700 MB target is for a CPU-only Linux build (stripping needs binutils' strip)")
    app_folder = frozen_app.parent
    total = sum(p.stat().st_size for p in app_folder.rglob("*") if p.is_file() and not p.is_symlink())
    assert total <= 700e6, f"the application folder is {total / 1e6:.0f} MB"
    libtorch = next(app_folder.rglob("libtorch_cpu.so"))
    sections = subprocess.run(["readelf", "-S", "-W", str(libtorch)], capture_output=True, text=True).stdout
    if sections:  # readelf comes with strip (binutils)
        assert ".symtab" not in sections and ".dynsym" in sections
    assert not list(app_folder.rglob("translations/qt*.qm"))
