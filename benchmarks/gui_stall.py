"""Largest stall of the Qt event loop while the app trains on the embedded demo.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_stall.py [--epochs 3] [--tiny] [--repeats 1]

Builds the real main window, loads the demo modalities, shows the Train page and starts a
training as a user would. A precise QTimer ticks every 5 ms on the GUI thread; each interval
between two ticks is a gap in which the window could not react. Gaps are sorted into
"epoch ends" (the 0.5 s after an epoch's results reached the page: both plots, the log and the
progress repaint then) and "during epochs" (per-batch updates), counted from the first batch on,
so the one-off first paint and the data reading are reported apart. Prints milliseconds; this is a
script, not a test: a duration bound fails on a busy machine, so the tests assert what keeps the
window responsive instead (tests/gui/test_train_page_on_fake_engine.py: one plot repainted per
tick, none while the page is hidden; tests/gui/test_main_window.py: the GUI's timer fires between
batches all along a real run).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TICK_MS = 5
EPOCH_END_WINDOW_S = 0.5  # the epoch-end repaint follows the event within one or two plot refreshes


def tiny_demo_copy(root: Path, per_class: int = 24, classes: tuple[str, ...] = ("0", "1", "2")) -> dict[str, Path]:
    """A few files per class of the demo (the GUI test's data set), for a quick run."""
    from discomkd.storage.paths import demo_modalities

    out = {}
    for modality, source in demo_modalities().items():
        for cls in classes:
            target = root / modality / cls
            target.mkdir(parents=True)
            for f in sorted((source / cls).iterdir())[:per_class]:
                shutil.copy2(f, target / f.name)
        out[modality] = root / modality
    return out


def measure_once(window, epochs: int) -> dict[str, float]:
    """Train once with the window's settings; the gaps (in seconds) by phase."""
    from PySide6.QtCore import QCoreApplication, QElapsedTimer, QEventLoop, Qt, QTimer

    page = window.train_page
    window.configure_page.epochs.setValue(epochs)
    clock = QElapsedTimer()
    ticks: list[tuple[float, int, int]] = []  # (time s, batch events, epoch events) at each tick

    def tick() -> None:
        ticks.append((clock.nsecsElapsed() / 1e9, page.batch_events, page.epoch_events))

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    done: list = []
    loop = QEventLoop()  # the application's own event loop, as under app.exec()

    def finished(result) -> None:
        done.append(result)
        loop.quit()

    page.run_finished.connect(finished)
    clock.start()
    if window.start_training() is None:
        raise SystemExit("the window refused to start a training (see its error message)")
    timer.start()
    loop.exec()
    timer.stop()
    page.run_finished.disconnect(finished)
    while page.is_training():  # run_finished comes just before the job's thread ends
        QCoreApplication.processEvents()
        time.sleep(0.01)
    result = done[0]
    if result.status != "finished":
        raise SystemExit(f"training did not finish: {result.reason}")

    epoch_end_times = [t for (t, _, e), (_, _, e_prev) in zip(ticks[1:], ticks) if e != e_prev]
    first_batch = next((t for t, b, _ in ticks if b > 0), ticks[-1][0])
    phases = {"start (data reading, first paint)": [], "during epochs": [], "epoch ends": []}
    for (t0, _, _), (t1, _, _) in zip(ticks, ticks[1:]):
        gap = t1 - t0
        if t1 <= first_batch:
            phases["start (data reading, first paint)"].append(gap)
        elif any(end - TICK_MS / 1000 <= t1 <= end + EPOCH_END_WINDOW_S for end in epoch_end_times):
            phases["epoch ends"].append(gap)
        else:
            phases["during epochs"].append(gap)
    return {name: max(gaps, default=0.0) for name, gaps in phases.items()} | {
        "epochs": float(len(epoch_end_times)), "batches": float(page.batch_events),
        "p99 after start": sorted(phases["during epochs"] + phases["epoch ends"])[
            int(0.99 * (len(phases["during epochs"]) + len(phases["epoch ends"]) - 1))],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1, help="trainings in a row (the window stays open)")
    parser.add_argument("--tiny", action="store_true", help="24 files per class of 3 classes (the GUI test's data)")
    parser.add_argument("--size", default="1280x800", help="window size WxH")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="discomkd-gui-stall-"))
    os.environ["DISCOMKD_DATA_DIR"] = str(scratch / "user-data")  # runs and settings stay out of the user's folder
    os.environ.setdefault("DISCOMKD_CACHE_DIR", str(scratch / "cache"))
    try:
        from discomkd_gui.startup import create_application, create_main_window

        app = create_application([sys.argv[0]])
        window = create_main_window(restore_session=False)
        width, height = (int(v) for v in args.size.lower().split("x"))
        window.resize(width, height)
        window.show()
        devices: list = []
        window.devices_ready.connect(devices.append)
        window.start_background_setup()  # PyTorch loads in the background, as after start-up
        if args.tiny:
            folders = tiny_demo_copy(scratch / "tiny-demo")
            for name, folder in folders.items():
                window.data_page.add_folder(str(folder), name)
        else:
            window.data_page.add_demo()
        while not devices or window.data_page.is_busy() or len(window.data_page.ready_entries()) < 2:
            app.processEvents()
            time.sleep(0.01)
        cfg = window.configure_page
        cfg.device.setCurrentIndex(cfg.device.findData("cpu"))
        window.show_page("Train")
        for _ in range(20):  # the page's first paint is not what this measures
            app.processEvents()
            time.sleep(0.01)

        import pyqtgraph
        import PySide6
        import torch

        print(f"{platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} cores · "
              f"load {os.getloadavg()[0]:.2f} · Python {platform.python_version()} · PySide6 {PySide6.__version__} · "
              f"pyqtgraph {pyqtgraph.__version__} · torch {torch.__version__} · QPA {app.platformName()}")
        data = "tiny demo (3 classes x 24 files)" if args.tiny else "embedded demo"
        print(f"{data}, {args.epochs} epoch(s), window {args.size}, tick {TICK_MS} ms")
        worst: dict[str, float] = {}
        for run in range(1, args.repeats + 1):
            gaps = measure_once(window, args.epochs)
            print(f"run {run}: {int(gaps['batches'])} batches, {int(gaps['epochs'])} epoch ends; largest gap: "
                  + ", ".join(f"{name} {1000 * gaps[name]:.0f} ms" for name in
                              ("epoch ends", "during epochs", "start (data reading, first paint)"))
                  + f"; p99 after start {1000 * gaps['p99 after start']:.0f} ms")
            for name, value in gaps.items():
                worst[name] = max(worst.get(name, 0.0), value)
        if args.repeats > 1:
            print(f"worst of {args.repeats}: epoch ends {1000 * worst['epoch ends']:.0f} ms, "
                  f"during epochs {1000 * worst['during epochs']:.0f} ms")
        window.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
