"""Build the benchmark data sets of ``benchmarks/distillation.py`` from ``../shared/data``.

    python scripts/make_benchmark_data.py OUT_DIR [--per-class N] [--shared PATH]

writes, under OUT_DIR:

- ``paired-digits/strong/<class>/<stem>.png``: the MNIST digit as it is (28x28), the strong sensor;
- ``paired-digits/weak/<class>/<stem>.png``: the *same* digit seen by a poor sensor: blurred,
  averaged down to 7x7 and with Gaussian sensor noise. Same file stems, so the two modalities are
  paired sample by sample, and the weak one has room to learn from the strong one (a weak
  classifier trained alone stays well below the strong one).
- ``paired-digits-unlabelled/{strong,weak}``: the same pairs, 200 per class keeping their class
  folder and the other 300 per class moved into the ``_unlabelled`` folder (labels dropped): a
  user who recorded both sensors but labelled only part of the recordings.
- ``eurosat-split/rgb`` and ``eurosat-split/ir``: each 13-band EuroSAT patch split into the
  visible bands (B4, B3, B2) and the infrared bands (B8, B8A, B11, B12), saved as ``.npy``
  (C x 64 x 64, uint16), paired by stem. Only 20 patches per class: a smoke test, not evidence.

The unpaired av-digits folders are used as they are. Everything is deterministic: the noise of
each weak file is seeded by its class and stem.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WEAK_SIZE = 7  # pixels per side of the weak sensor (the strong one sees 28)
WEAK_BLUR = 1.5  # Gaussian blur radius before averaging down, in strong-sensor pixels
WEAK_NOISE = 40.0  # standard deviation of the sensor noise, in 8-bit grey levels
RGB_BANDS = (3, 2, 1)  # B4, B3, B2 (0-based indices into the 13 Sentinel-2 bands)
IR_BANDS = (7, 8, 11, 12)  # B8, B8A, B11, B12


def weak_view(image: Image.Image, seed: int, noise_std: float = WEAK_NOISE) -> Image.Image:
    """The digit as a blurred, low-resolution, noisy sensor would record it."""
    small = image.convert("L").filter(ImageFilter.GaussianBlur(WEAK_BLUR)).resize((WEAK_SIZE, WEAK_SIZE), Image.BOX)
    noise = np.random.default_rng(seed).normal(0.0, noise_std, (WEAK_SIZE, WEAK_SIZE))
    return Image.fromarray(np.clip(np.asarray(small, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def make_paired_digits(source: Path, out: Path, per_class: int | None, noise_std: float = WEAK_NOISE) -> int:
    count = 0
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        files = sorted(class_dir.glob("*.png"))[:per_class]
        for modality in ("strong", "weak"):
            (out / modality / class_dir.name).mkdir(parents=True, exist_ok=True)
        for f in files:
            with Image.open(f) as image:
                image.load()
                image.save(out / "strong" / class_dir.name / f.name)
                seed = zlib.crc32(f"{class_dir.name}/{f.stem}".encode())
                weak_view(image, seed, noise_std).save(out / "weak" / class_dir.name / f.name)
            count += 1
    return count


LABELLED_PER_CLASS = 200


def make_unlabelled_digits(paired: Path, out: Path, labelled_per_class: int = LABELLED_PER_CLASS) -> int:
    """The built paired digits again (hard links where possible), all but ``labelled_per_class`` of
    each class moved into ``_unlabelled``; returns the number of unlabelled pairs."""
    count = 0
    for modality in ("strong", "weak"):
        for class_dir in sorted(p for p in (paired / modality).iterdir() if p.is_dir()):
            for k, f in enumerate(sorted(class_dir.glob("*.png"))):
                target = out / modality / (class_dir.name if k < labelled_per_class else "_unlabelled") / f.name
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(f, target)
                except OSError:
                    shutil.copyfile(f, target)
                count += modality == "weak" and k >= labelled_per_class
    return count


def make_eurosat_split(source: Path, out: Path) -> int:
    import tifffile

    count = 0
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        for f in sorted(class_dir.glob("*.tif")):
            bands = tifffile.imread(f)  # (64, 64, 13)
            if bands.ndim == 3 and bands.shape[-1] == 13:
                bands = np.moveaxis(bands, -1, 0)
            for modality, chosen in (("rgb", RGB_BANDS), ("ir", IR_BANDS)):
                target = out / modality / class_dir.name
                target.mkdir(parents=True, exist_ok=True)
                np.save(target / f"{f.stem}.npy", np.ascontiguousarray(bands[list(chosen)]))
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write paired-digits/ and eurosat-split/ into")
    parser.add_argument("--per-class", type=int, default=None, help="digits per class (default: all 500)")
    parser.add_argument("--shared", type=Path, default=SHARED, help=f"the shared data folder (default {SHARED})")
    parser.add_argument("--weak-noise", type=float, default=WEAK_NOISE,
                        help=f"sensor noise of the weak digits, in grey levels (default {WEAK_NOISE:g})")
    args = parser.parse_args(argv)
    n_digits = make_paired_digits(args.shared / "av-digits" / "image", args.out / "paired-digits", args.per_class,
                                  args.weak_noise)
    # 2 of 5 digits keep their label (200 of the 500 per class), as many as --per-class allows.
    labelled = LABELLED_PER_CLASS if args.per_class is None else max(2, args.per_class * 2 // 5)
    n_unlabelled = make_unlabelled_digits(args.out / "paired-digits", args.out / "paired-digits-unlabelled", labelled)
    n_patches = make_eurosat_split(args.shared / "eurosat-ms", args.out / "eurosat-split")
    print(f"paired-digits: {n_digits} pairs (paired-digits-unlabelled: {n_unlabelled} of them unlabelled); "
          f"eurosat-split: {n_patches} pairs; in {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
