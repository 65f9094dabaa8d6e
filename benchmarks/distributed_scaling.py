"""One process against torchrun with N processes (DDP, gloo on CPU) on the same training.

    python benchmarks/distributed_scaling.py --demo --epochs 4 --batch-size 64 --nproc 2

Both runs train the same way: --batch-size samples per modality per step, which one process takes
whole and each of the N processes takes 1/N of, so the runs do the same steps over the same data. One process uses all --threads intra-op threads (and, for scale, threads / N), each of the N
uses threads / N.
Prints wall time, mean epoch time (epochs after the first) and test accuracy for each; a script,
not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from discomkd.storage.paths import demo_modalities


def run(nproc: int, modalities: list[str], args, threads: int, out: Path) -> dict:
    train = ["-m", "discomkd", "train", *sum((["--modality", m] for m in modalities), []), "--out", str(out),
             "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--device", "cpu",
             "--seed", "0"]
    command = [sys.executable, *train] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *train]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{nproc} process(es) failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    record = json.loads((out / "run.json").read_text())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    measured = history[1:] or history
    return {
        "processes": nproc, "threads_each": threads, "wall_s": wall,
        "epoch_s": sum(h["epoch_time_s"] for h in measured) / len(measured),
        "world_size": record.get("world_size", 1),
        "test_accuracy": {n: m["accuracy"] for n, m in record["test_metrics"].items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", action="store_true", help="use the embedded demo data (default)")
    parser.add_argument("--modality", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch per modality per step")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads in all")
    args = parser.parse_args()
    modalities = args.modality or [f"{n}={p}" for n, p in demo_modalities().items()]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU threads, python {platform.python_version()}, "
          f"load average before {os.getloadavg()[0]:.2f}")
    print(f"config: {args.epochs} epochs, global batch {args.batch_size}/modality, {args.threads} threads in all")
    with tempfile.TemporaryDirectory() as tmp:
        # Decode and cache the data first so that neither timed run pays for it.
        run(1, modalities, argparse.Namespace(epochs=1, batch_size=args.batch_size), args.threads, Path(tmp) / "warm")
        each = max(1, args.threads // args.nproc)
        rows = [run(1, modalities, args, args.threads, Path(tmp) / "one")]
        if each != args.threads:  # one process with a single process's share of the threads, for scale
            rows.append(run(1, modalities, args, each, Path(tmp) / "one-share"))
        rows.append(run(args.nproc, modalities, args, each, Path(tmp) / "many"))
    print("| processes | threads each | world_size in run.json | wall time | epoch (after the first) | test accuracy |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        acc = ", ".join(f"{n} {a:.3f}" for n, a in r["test_accuracy"].items())
        print(f"| {r['processes']} | {r['threads_each']} | {r['world_size']} | {r['wall_s']:.1f} s | {r['epoch_s']:.2f} s | {acc} |")
    print(f"speed-up of {args.nproc} processes (epoch time): {rows[0]['epoch_s'] / rows[-1]['epoch_s']:.2f}x; "
          f"load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
