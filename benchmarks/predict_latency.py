"""Latency of predicting one dropped file with a loaded model (decode + preprocess + forward).

    python benchmarks/predict_latency.py BUNDLE FILE [FILE ...] [--repeats 50]

Prints the median and 90th percentile per file; this is a script, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from discomkd.inference.predict import Predictor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    t0 = time.perf_counter()
    predictor = Predictor.from_path(args.bundle)
    print(f"load bundle: {1000 * (time.perf_counter() - t0):.1f} ms; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for path in args.files:
        first = time.perf_counter()
        prediction = predictor.predict_file(path)  # builds the branch once (not counted below)
        first_ms = 1000 * (time.perf_counter() - first)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            predictor.predict_file(path)
            times.append(1000 * (time.perf_counter() - t))
        times.sort()
        print(f"{path}: {prediction.modality} -> {prediction.label} ({prediction.confidence:.3f}); "
              f"first call {first_ms:.1f} ms, median {statistics.median(times):.2f} ms, "
              f"p90 {times[int(0.9 * (len(times) - 1))]:.2f} ms over {args.repeats} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
