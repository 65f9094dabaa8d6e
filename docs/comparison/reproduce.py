"""Re-run the committed comparisons (docs/comparison/README.md gives the settings and the machine).

    python docs/comparison/reproduce.py eurosat   # -> docs/comparison/eurosat-ms/
    python docs/comparison/reproduce.py av-digits # -> docs/comparison/av-digits/

Each is the same call as `discomkd compare ...` (the arguments are printed first). The av-digits
run uses a fixed random subset of the folders (symbolic links in a temporary folder) to fit the
CPU budget. Torch runs on one thread: on a shared 2-core machine intra-op threads oversubscribe.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import torch

from discomkd.compare import add_compare_parser, run_compare_command

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
HERE = Path(__file__).resolve().parent
AV_PER_CLASS = 80  # files per class and modality drawn from av-digits (seed 0)


def av_subset(root: Path, target: Path, per_class: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for modality in ("image", "audio"):
        for class_dir in sorted((root / modality).iterdir()):
            files = sorted(p for p in class_dir.iterdir() if p.is_file())
            out = target / modality / class_dir.name
            out.mkdir(parents=True)
            for f in rng.sample(files, min(per_class, len(files))):
                (out / f.name).symlink_to(f)


def main() -> int:
    which = sys.argv[1]
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(prog="discomkd")
    add_compare_parser(parser.add_subparsers())
    with tempfile.TemporaryDirectory() as tmp:
        if which == "eurosat":
            eurosat = DATA / "eurosat-ms"
            argv = ["compare", "--modality", f"rgb={eurosat}:bands=4,3,2:augmentation=flips_rot90",
                    "--modality", f"ir={eurosat}:bands=8,9,12,13:augmentation=flips_rot90",
                    "--seeds", "3", "--epochs", "15", "--batch-size", "16", "--device", "cpu",
                    "--backbone", "compact", "--out", str(HERE / "eurosat-ms")]
        else:
            av_subset(DATA / "av-digits", Path(tmp), AV_PER_CLASS)
            argv = ["compare", "--modality", f"image={tmp}/image", "--modality", f"audio={tmp}/audio",
                    "--seeds", "3", "--epochs", "5", "--batch-size", "32", "--device", "cpu",
                    "--backbone", "compact", "--methods",
                    "discomkd,student,kd,dkd,dml,discomkd_no_aux,discomkd_no_adv,discomkd_no_mod,discomkd_no_perp",
                    "--out", str(HERE / "av-digits")]
        print("discomkd " + " ".join(argv), flush=True)
        return run_compare_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
