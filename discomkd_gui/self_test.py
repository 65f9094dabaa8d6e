"""``--self-test``: check an installation (source, wheel or frozen app) end to end, with no display.

It checks that Qt and pyqtgraph load (a frozen build that lost its Qt plugins fails here), that the
shipped resources are found, trains a tiny DisCoM-KD model on the embedded demo for one epoch,
predicts one file of each modality, prints a short report and returns 0. Any failure returns 1
with the reason. Everything it writes goes to a temporary folder that is removed afterwards, never
into the application folder or the user's runs.

Run it as ``discomkd-gui --self-test``, ``"DisCoM-KD Studio" --self-test`` (frozen) or
``python -m discomkd_gui.self_test``.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TextIO

PASS_LINE = "SELF-TEST PASSED"
FAIL_LINE = "SELF-TEST FAILED"
REPORT_FILE = "discomkd-self-test.txt"  # written to the temp folder when there is no stdout


class SelfTestFailure(Exception):
    """A check failed; the message says which and why."""


def _needs_offscreen() -> bool:
    if os.environ.get("QT_QPA_PLATFORM"):
        return False
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return False  # Windows and macOS always have a window system; the test shows no window


def _open_output() -> tuple[TextIO, Path | None]:
    """stdout when there is one; a windowed frozen app on Windows has none, so write a file instead."""
    if sys.stdout is not None:
        return sys.stdout, None
    if sys.platform == "win32":  # started from a console: print there
        try:
            import ctypes

            if ctypes.windll.kernel32.AttachConsole(-1):
                return open("CONOUT$", "w", encoding="utf-8", errors="replace"), None
        except (OSError, AttributeError):
            pass
    path = Path(tempfile.gettempdir()) / REPORT_FILE
    return open(path, "w", encoding="utf-8"), path


def _app_folder() -> Path | None:
    """The folder a frozen app runs from (None from source): nothing may be written inside it."""
    if getattr(sys, "frozen", False):
        return Path(sys.executable).resolve().parent
    return None


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


class _Report:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.perf_counter()

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, title: str, action: Callable[[], str | None]) -> None:
        t = time.perf_counter()
        try:
            detail = action()
        except SelfTestFailure:
            raise
        except Exception as exc:
            raise SelfTestFailure(f"{title}: {type(exc).__name__}: {exc}") from exc
        elapsed = time.perf_counter() - t
        self.line(f"  [ok] {title:<28} {elapsed:6.1f} s" + (f"  {detail}" if detail else ""))


def _check_qt() -> str:
    from PySide6 import QtCore, QtGui, QtWidgets
    import PySide6
    import pyqtgraph as pg

    from discomkd.storage.paths import resources_dir

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["discomkd-self-test"])
    icon = QtGui.QIcon(str(resources_dir() / "icons" / "app.png"))
    if icon.isNull():
        raise SelfTestFailure("Qt could not load the application icon (image format plugins missing?).")
    plot = pg.PlotWidget()
    curve = plot.plot([0.0, 1.0, 2.0], [1.0, 0.0, 1.0])
    plot.resize(200, 120)
    pixmap = plot.grab()  # renders the plot offscreen: proves widgets, fonts and painting work
    if pixmap.isNull() or not curve.getData()[0].size:
        raise SelfTestFailure("pyqtgraph could not render a plot.")
    plot.deleteLater()
    app.processEvents()
    return f"PySide6 {PySide6.__version__} (Qt {QtCore.qVersion()}), pyqtgraph {pg.__version__}, platform '{app.platformName()}'"


def _check_gui_modules() -> str:
    """Import every module of the application, so a frozen build missing one fails here, not on a click."""
    import importlib
    import pkgutil

    import discomkd_gui

    names = sorted(
        m.name for m in pkgutil.walk_packages(discomkd_gui.__path__, "discomkd_gui.")
        if m.name != __name__ and not m.name.endswith(".__main__")
    )
    if "discomkd_gui.app" not in names:
        raise SelfTestFailure("The application module discomkd_gui.app is missing.")
    for name in names:
        importlib.import_module(name)
    return f"{len(names)} modules"


def _check_main_window() -> str:
    """Build the real window once (its settings go to the scratch folder), then close it."""
    from PySide6.QtWidgets import QApplication

    from discomkd_gui.startup import create_application, create_main_window
    from discomkd_gui.resources import style_sheet

    if not style_sheet():
        raise SelfTestFailure("The application style sheet (discomkd_gui/style.qss) is missing.")
    app = create_application(["discomkd-self-test"])
    window = create_main_window(restore_session=False)
    app.processEvents()  # not shown: the offscreen platform warns about window hints, and we only need it built
    title = window.windowTitle()
    window.close()
    window.deleteLater()
    QApplication.processEvents()
    return f"'{title}'"


def _check_resources(app_folder: Path | None) -> str:
    from discomkd.storage.paths import demo_data_dir, demo_modalities, resources_dir

    root = resources_dir()
    needed = [root / "icons" / "app.png", demo_data_dir() / "LICENSES.md", *demo_modalities().values()]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise SelfTestFailure(f"Shipped resources are missing: {', '.join(missing)}")
    if app_folder is not None and not _is_within(root, app_folder):
        raise SelfTestFailure(f"The frozen app reads resources from outside its folder: {root}")
    return str(root)


def run_self_test(report: _Report, keep: bool = False) -> None:
    """All checks in order; raises SelfTestFailure with the reason on the first that fails."""
    import discomkd

    app_folder = _app_folder()
    report.line(f"DisCoM-KD Studio self-test (discomkd {discomkd.__version__})")
    report.line(f"  python {platform.python_version()} on {platform.platform()}; "
                f"{'frozen app in ' + str(app_folder) if app_folder else 'running from source/site-packages'}")

    from discomkd.storage.paths import user_data_dir

    # Where the app would write for this user: must never be the app's own folder.
    real_data_dir = user_data_dir()
    if app_folder is not None and _is_within(real_data_dir, app_folder):
        raise SelfTestFailure(f"The per-user data directory {real_data_dir} is inside the application folder.")
    report.line(f"  per-user data directory: {real_data_dir} (runs go to {real_data_dir / 'runs'})")

    report.step("Qt and pyqtgraph (offscreen)", _check_qt)
    report.step("application modules", _check_gui_modules)
    report.step("shipped resources", lambda: _check_resources(app_folder))

    def torch_info() -> str:
        import numpy as np
        import torch

        return f"torch {torch.__version__}, numpy {np.__version__}, CUDA {'yes' if torch.cuda.is_available() else 'no'}"

    report.step("PyTorch", torch_info)

    with _scratch_data_dirs(report, keep) as scratch:
        report.step("main window (offscreen)", _check_main_window)
        _train_and_predict(report, scratch)


@contextmanager
def _scratch_data_dirs(report: _Report, keep: bool) -> Iterator[Path]:
    """Runs, settings and caches go to a temporary folder meanwhile; it is removed afterwards unless ``keep``."""
    scratch = Path(tempfile.mkdtemp(prefix="discomkd-self-test-"))
    saved_env = {k: os.environ.get(k) for k in ("DISCOMKD_DATA_DIR", "DISCOMKD_CACHE_DIR")}
    os.environ["DISCOMKD_DATA_DIR"] = str(scratch / "data")
    os.environ["DISCOMKD_CACHE_DIR"] = str(scratch / "cache")
    try:
        yield scratch
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if keep:
            report.line(f"  kept the scratch folder {scratch}")
        else:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
            report.line(f"  wrote only to {scratch} (removed)")


SAMPLES_PER_CLASS = 24  # per modality: a few training steps, enough to exercise every stage


def _small_demo_dataset(modalities: dict[str, Path]):
    """The demo, decoded in full (that is part of the check), then cut to a few files per class."""
    from dataclasses import replace

    import numpy as np

    from discomkd.data.dataset import combine_modalities
    from discomkd.data.load import load_modality

    parts = []
    for name, folder in modalities.items():
        data = load_modality(folder, name)
        keep = np.concatenate([np.flatnonzero(data.labels == c)[:SAMPLES_PER_CLASS] for c in range(len(data.classes))])
        parts.append(replace(data, x=data.x[keep], labels=data.labels[keep], files=[data.files[i] for i in keep]))
    return combine_modalities(parts)


def _train_and_predict(report: _Report, scratch: Path) -> None:
    """Read the demo, train one epoch, then load, use and export the model it saved."""
    from discomkd.storage.paths import demo_modalities

    modalities = demo_modalities()
    bundle_path = _train_one_epoch(report, scratch, modalities)
    _predict_one_file_each(report, bundle_path, modalities)

    def do_export() -> str:
        from discomkd.inference.export import export_modality

        # TorchScript needs nothing beyond torch; the export checks itself against the model on real files.
        result = export_modality(bundle_path, "audio", "torchscript", scratch / "export" / "audio.pt")
        return f"audio -> {result.model_path.name} + {result.sidecar_path.name}, max diff {result.max_abs_diff:.0e}"

    report.step("export the audio classifier", do_export)


def _train_one_epoch(report: _Report, scratch: Path, modalities: dict[str, Path]) -> Path:
    """Read the demo and train a tiny model on it for one epoch, in the scratch folder; the model bundle's path."""
    from discomkd.config import ModalitySource, TrainingConfig
    from discomkd.storage.runs import new_run_dir, runs_dir
    from discomkd.training.trainer import train

    config = TrainingConfig(
        modalities=[ModalitySource(name, str(folder)) for name, folder in modalities.items()],
        embed_dim=16,
        batch_size=32,
        epochs=1,
        device="cpu",
        mixed_precision=False,
    )
    run_dir = new_run_dir(label="self-test")
    if not _is_within(run_dir, scratch) or not _is_within(runs_dir(), scratch):
        raise SelfTestFailure(f"The run folder {run_dir} is not in the scratch folder {scratch}.")
    outcome: dict = {}

    def do_read() -> str:
        outcome["dataset"] = dataset = _small_demo_dataset(modalities)
        sizes = ", ".join(f"{m.name}: {len(m.labels)} {m.spec.kind} files" for m in dataset.modalities)
        return f"{len(dataset.classes)} classes; kept {SAMPLES_PER_CLASS} files per class: {sizes}"

    report.step("read the demo data", do_read)

    def do_train() -> str:
        ended = train(config, run_dir=run_dir, dataset=outcome["dataset"])
        outcome["ended"] = ended
        if ended.status != "finished" or not ended.bundle_path:
            raise SelfTestFailure(f"Training did not finish: {ended.status}: {ended.reason}")
        accs = ", ".join(f"{n} test acc {m['accuracy']:.2f}" for n, m in ended.test_metrics.items())
        return f"1 epoch; {accs}"

    report.step("train one epoch", do_train)
    return Path(outcome["ended"].bundle_path)


def _predict_one_file_each(report: _Report, bundle_path: Path, modalities: dict[str, Path]) -> None:
    """Load the bundle, then predict one demo file of each modality without naming the modality."""
    from discomkd.inference.predict import Predictor

    predictor_box: dict = {}

    def do_load() -> str:
        predictor_box["p"] = Predictor.from_path(bundle_path)
        return f"{bundle_path.name}, classes {', '.join(predictor_box['p'].classes)}"

    report.step("load the model bundle", do_load)
    predictor = predictor_box["p"]
    for name, folder in modalities.items():
        sample = _first_file(folder)

        def do_predict(sample: Path = sample, name: str = name) -> str:
            prediction = predictor.predict_file(sample)  # no modality given: the routing is tested too
            if prediction.modality != name:
                raise SelfTestFailure(f"{sample.name} was routed to '{prediction.modality}', expected '{name}'.")
            return (f"{sample.parent.name}/{sample.name} (class {sample.parent.name}) -> "
                    f"'{prediction.label}' ({prediction.confidence:.0%})")

        report.step(f"predict one {name} file", do_predict)


def _first_file(folder: Path) -> Path:
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(f for f in class_dir.iterdir() if f.is_file() and not f.name.startswith("."))
        if files:
            return files[0]
    raise SelfTestFailure(f"The demo folder {folder} has no file.")


def main(argv: list[str] | None = None) -> int:
    """Run the self-test; 0 when every check passed, 1 otherwise (the reason is printed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if _needs_offscreen():
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # must be set before Qt is imported
    out, report_file = _open_output()
    report = _Report(out)
    try:
        run_self_test(report, keep="--keep" in argv)
        report.line(f"{PASS_LINE} in {time.perf_counter() - report.t0:.1f} s")
        return 0
    except SelfTestFailure as exc:
        report.line(f"{FAIL_LINE}: {exc}")
        return 1
    except Exception as exc:  # a bug or a broken install: show everything
        report.line(traceback.format_exc().rstrip())
        report.line(f"{FAIL_LINE}: {type(exc).__name__}: {exc}")
        return 1
    finally:
        if report_file is not None:
            out.close()

if __name__ == "__main__":
    sys.exit(main())
