"""Re-run the committed comparisons with the exact settings they were measured with.

    python docs/comparison/reproduce.py eurosat   # -> docs/comparison/eurosat-ms/
    python docs/comparison/reproduce.py av-digits # -> docs/comparison/av-digits/

Every method uses the engine's default learning-rate schedule (cosine decay) and, for av-digits,
the default augmentations (see README.md for the one caveat on audio). The av-digits run uses a fixed random subset of the folders
(symbolic links in a temporary folder) to fit the CPU budget. Torch runs on one thread: on a
shared 2-core machine, intra-op threads oversubscribe the CPU and run many times slower.
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

import torch

from discomkd.compare import CompareProgress, run_comparison
from discomkd.config import ModalitySource, TrainingConfig

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"  # ../shared/data beside the repository
HERE = Path(__file__).resolve().parent
AV_PER_CLASS = 80  # files per class and modality drawn from av-digits (seed 0)
METHODS = ["discomkd", "student", "kd", "dkd", "dml",
           "discomkd_no_aux", "discomkd_no_adv", "discomkd_no_mod", "discomkd_no_perp"]


def av_subset(root: Path, target: Path, per_class: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for modality in ("image", "audio"):
        for class_dir in sorted((root / modality).iterdir()):
            files = sorted(p for p in class_dir.iterdir() if p.is_file())
            out = target / modality / class_dir.name
            out.mkdir(parents=True)
            for f in rng.sample(files, min(per_class, len(files))):
                (out / f.name).symlink_to(f)


def show(p: CompareProgress) -> None:
    print(f"\r[{100 * p.fraction:5.1f}%] {p.message}"[:110].ljust(110), end="", file=sys.stderr, flush=True)


def main() -> int:
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    torch.set_num_threads(1)
    common = dict(backbone="compact", device="cpu", lr_schedule="cosine", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        if which == "eurosat":
            eurosat = str(DATA / "eurosat-ms")
            modalities = [ModalitySource("rgb", eurosat, {"bands": [3, 2, 1], "augmentation": "flips_rot90"}),
                          ModalitySource("ir", eurosat, {"bands": [7, 8, 11, 12], "augmentation": "flips_rot90"})]
            config = TrainingConfig(modalities=modalities, epochs=15, batch_size=16, **common)
            out = HERE / "eurosat-ms"
        elif which == "av-digits":
            av_subset(DATA / "av-digits", Path(tmp), AV_PER_CLASS)
            modalities = [ModalitySource("image", f"{tmp}/image"),
                          ModalitySource("audio", f"{tmp}/audio")]
            config = TrainingConfig(modalities=modalities, epochs=5, batch_size=32, **common)
            out = HERE / "av-digits"
        else:
            print(__doc__)
            return 2
        result = run_comparison(config, METHODS, seeds=3, out_dir=out, on_progress=show)
        print(file=sys.stderr)
        print(result.to_markdown())
        return 0


if __name__ == "__main__":
    sys.exit(main())
