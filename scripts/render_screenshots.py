"""Render a screenshot of every page of DisCoM-KD Studio into docs/screenshots/ (offscreen).

    QT_QPA_PLATFORM=offscreen python scripts/render_screenshots.py [--epochs 6] [--out docs/screenshots]

It adds the embedded demo data, trains a small real model on it, classifies a few demo files and
grabs each page at the default window size. Runs and caches go to a temporary folder unless
DISCOMKD_DATA_DIR / DISCOMKD_CACHE_DIR are set.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wait_until(app, condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise SystemExit(f"Timed out waiting for {what}.")
        app.processEvents()
        time.sleep(0.01)
    for _ in range(5):
        app.processEvents()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=60, help="demo files per class and modality to train on")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(tempfile.mkdtemp(prefix="discomkd-shots-"))
    os.environ.setdefault("DISCOMKD_DATA_DIR", str(work / "data"))
    os.environ.setdefault("DISCOMKD_CACHE_DIR", str(work / "cache"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from discomkd.storage.paths import demo_modalities

    # A subset of the demo keeps this quick on a laptop CPU; all ten classes are kept.
    demo = work / "demo"
    for modality, source in demo_modalities().items():
        for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
            target = demo / modality / class_dir.name
            target.mkdir(parents=True)
            for f in sorted(class_dir.iterdir())[: args.per_class]:
                shutil.copy2(f, target / f.name)
    (demo / "image" / "3" / ".DS_Store").write_bytes(b"\0")  # shows how stray files are reported

    from discomkd_gui.app import create_application, create_main_window

    app = create_application([sys.argv[0]])
    window = create_main_window(restore_session=False)
    window.show()
    window.start_background_setup()

    def shot(name: str) -> None:
        for _ in range(10):
            app.processEvents()
            time.sleep(0.02)
        window.grab().save(str(out / f"{name}.png"))
        print("wrote", out / f"{name}.png")

    data = window.data_page
    data.add_folder(str(demo / "image"), "image")
    data.add_folder(str(demo / "audio"), "audio")
    wait_until(app, lambda: not data.is_busy() and len(data.ready_entries()) == 2, 300, "the demo data")
    data.list.setCurrentRow(1)
    shot("1-data")

    window.show_page("Configure")
    cfg = window.configure_page
    cfg.epochs.setValue(args.epochs)
    cfg.batch_size.setValue(32)
    cfg.embed_dim.setValue(32)
    wait_until(app, lambda: "Available" in cfg.device_note.text(), 120, "the device list")
    shot("2-configure")

    window.start_training()
    train = window.train_page
    wait_until(app, lambda: train.epoch_events >= max(1, args.epochs // 2), 900, "half of the training")
    shot("3-train-running")
    wait_until(app, lambda: not train.is_training(), 900, "the training")
    shot("3-train")

    window.show_page("Results")
    shot("4-results")
    window.results_page.tabs.setCurrentIndex(1)
    shot("4-results-embeddings")
    window.results_page.tabs.setCurrentIndex(0)

    predict = window.predict_page
    wait_until(app, lambda: predict.predictor is not None, 120, "the model")
    window.show_page("Predict")
    full = demo_modalities()
    note = work / "notes.txt"
    note.write_text("not data")
    files = [full["image"] / "7" / sorted(os.listdir(full["image"] / "7"))[-1],
             full["audio"] / "3" / sorted(os.listdir(full["audio"] / "3"))[-1],
             full["image"] / "2" / sorted(os.listdir(full["image"] / "2"))[-1],
             note]
    predict.predict([str(f) for f in files])
    wait_until(app, lambda: not predict.is_busy() and predict.items, 120, "the predictions")
    shot("5-predict")
    predict.predict([str(full["audio"] / "5"), str(full["image"] / "5")])
    wait_until(app, lambda: not predict.is_busy() and len(predict.items) > 20, 300, "the folder predictions")
    shot("5-predict-table")

    window.show_page("Runs")
    window.runs_page.table.selectRow(0)
    shot("6-runs")

    # The Compare page showing the committed fair comparison (10 seeds at convergence, every method
    # given the unlabelled recordings), opened as a saved comparison: a real result rather than a
    # few-epoch run made here.
    compare = window.compare_page
    window.show_page("Compare")
    compare.show_saved(ROOT / "docs" / "comparison" / "paired-digits-unlabelled-fair")
    shot("7-compare")
    window.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
