"""Training throughput: samples per second per modality per epoch (after a warm-up epoch), the data
pipeline's share of step time, and the final test accuracy, for one configuration.

    python benchmarks/train_throughput.py --demo                # embedded demo, default CPU config
    python benchmarks/train_throughput.py --modality image=DIR --modality audio=DIR --epochs 12

Prints one line per epoch and a summary; this is a script, not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import torch

from discomkd.cli import add_training_options, config_from_args, parse_modality_arg
from discomkd.config import ModalitySource
from discomkd.storage.paths import demo_modalities
from discomkd.storage.runs import read_history
from discomkd.training.events import EpochEnded
from discomkd.training.trainer import train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", action="store_true", help="use the embedded demo data")
    parser.add_argument("--modality", action="append", type=parse_modality_arg, default=[])
    add_training_options(parser)
    args = parser.parse_args()
    modalities = args.modality or [ModalitySource(n, str(p)) for n, p in demo_modalities().items()]
    config = config_from_args(args, modalities)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__} "
          f"({torch.get_num_threads()} intra-op threads), python {platform.python_version()}")
    print(f"config: epochs {config.epochs}, batch {config.batch_size}/modality, backbone {config.backbone}, "
          f"embed {config.embed_dim}, lr {config.learning_rate} ({config.lr_schedule}), device {config.device}")
    with tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        result = train(config, run_dir=run_dir, on_event=lambda e: isinstance(e, EpochEnded) and print(
            f"  epoch {e.epoch}: {e.epoch_time_s:.1f} s", flush=True))
        wall = time.perf_counter() - t0
        history = read_history(run_dir)
    if result.status != "finished":
        print(f"run {result.status}: {result.reason}", file=sys.stderr)
        return 1
    measured = history[1:] or history  # the first epoch warms up allocators and caches
    rate = sum(h["train_samples_per_s"] for h in measured) / len(measured)
    share = sum(h["data_share"] for h in measured) / len(measured)
    print(f"training throughput: {rate:.0f} samples/s per modality "
          f"({rate * len(modalities):.0f} samples/s over {len(modalities)} modalities), epochs 2-{len(history)}")
    print(f"data pipeline share of step time: {100 * share:.1f}%")
    print(f"mean epoch time (incl. validation): {sum(h['epoch_time_s'] for h in measured) / len(measured):.1f} s")
    print(f"wall time incl. data loading and test: {wall:.1f} s")
    for name, m in result.test_metrics.items():
        print(f"test {name}: accuracy {m['accuracy']:.4f}, weighted F1 {m['weighted_f1']:.4f} (n={m['n']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
