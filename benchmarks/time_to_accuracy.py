"""Time to accuracy: the default `discomkd train` command on the side-by-side input, split by phase.

    python benchmarks/time_to_accuracy.py [--rev GIT_REV] [--device cpu|cuda] [--threads N]

The input is the one the authors' public code is timed on (``../shared/bench/make_side_by_side_inputs.py``:
3,000 MNIST digits and 3,000 spoken digits as 1x32x32 log spectrograms, as modality folders of
``.npy`` arrays), built once into ``build/side-by-side``. The command runs in a fresh process, as a
user runs it, and reports (each from the run's own events and files):

- start-up and imports (process start to the engine's first event), listing and decoding (to the
  first training step), each epoch (training + validation), evaluation and writing (last epoch to
  the end of the run), and exit;
- training samples per second per modality and the share of this machine's measured float32
  matmul peak that the training steps reach (FLOPs per step counted by torch's FlopCounterMode on
  one forward and backward of the default model);
- test weighted F1 per modality against issue 18's goal (97 digits, 95 speech, within 30 s).

``--rev REV`` also times the same command at another git revision (its ``core/`` imported through a
temporary package folder, nothing installed) and prints the ratio of wall times: absolute times
drift between machines, the ratio much less. Give the process the whole machine: a second job on
two cores doubles every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INPUT = REPO / "build" / "side-by-side"
GOAL_S, GOAL_F1 = 30.0, {"image": 0.97, "audio": 0.95}

# Runs inside the timed process: the default train command with a timestamp per event.
CHILD = r"""
import json, sys, time
t_start = time.time()
from discomkd.cli import main
from discomkd.training import trainer
stamps = {"imports": time.time()}
real_train = trainer.train
def timed_train(config, run_dir=None, on_event=None, stop=None, dataset=None, run_name=None):
    def on(e):
        kind = type(e).__name__
        if kind == "BatchEnded" and "first_step" not in stamps:
            stamps["first_step"] = time.time()
        elif kind == "EpochEnded":
            stamps.setdefault("epochs", []).append(time.time())
        elif kind == "RunEnded":
            stamps["run_ended"] = time.time()
        if on_event:
            on_event(e)
    return real_train(config, run_dir=run_dir, on_event=on, stop=stop, dataset=dataset, run_name=run_name)
trainer.train = timed_train
import discomkd.cli as cli
if hasattr(cli, "train"):
    cli.train = timed_train
code = main(sys.argv[2:])
stamps["exit"] = time.time()
stamps["start"] = t_start
with open(sys.argv[1], "w") as fh:
    json.dump(stamps, fh)
getattr(cli, "exit_now", sys.exit)(code)  # as the discomkd command leaves (revisions before it: sys.exit)
"""


def build_input() -> Path:
    if not (INPUT / "npy" / "image").is_dir():
        subprocess.run([sys.executable, str(REPO.parent / "shared" / "bench" / "make_side_by_side_inputs.py"),
                        str(REPO.parent / "shared" / "data"), str(INPUT)], check=True)
    return INPUT / "npy"


def package_root_for(rev: str, work: Path) -> Path:
    """A folder that imports ``discomkd`` from revision ``rev``'s ``core/`` (a git worktree)."""
    tree = work / f"tree-{rev}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev], check=True,
                   capture_output=True)
    root = work / f"packages-{rev}"
    root.mkdir()
    for name, folder in (("discomkd", "core"), ("discomkd_gui", "discomkd_gui"), ("discomkd_resources", "resources")):
        (root / name).symlink_to(tree / folder)
    return root


def time_command(data: Path, out: Path, device: str, threads: int, package_root: Path | None) -> dict:
    stamps_file = out.parent / f"{out.name}-stamps.json"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               DISCOMKD_CACHE_DIR=str(out.parent / f"{out.name}-cache"))  # a cold cache: decoding is timed
    if package_root is not None:  # before the installed (editable) package on the path
        env["PYTHONPATH"] = str(package_root)
    command = [sys.executable, "-c", CHILD, str(stamps_file), "train", "--modality", f"image={data / 'image'}",
               "--modality", f"audio={data / 'audio'}", "--device", device, "--out", str(out)]
    t0 = time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if done.returncode != 0:
        raise SystemExit(f"the command failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    stamps = json.loads(stamps_file.read_text())
    record = json.loads((out / "run.json").read_text())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line.strip()]
    epochs = stamps.get("epochs", [])
    phases = {
        "start-up and imports": stamps["imports"] - t0,
        "listing and decoding": stamps["first_step"] - stamps["imports"],
        "epochs": (epochs[-1] if epochs else stamps["run_ended"]) - stamps["first_step"],
        "evaluation and writing": stamps["run_ended"] - (epochs[-1] if epochs else stamps["first_step"]),
        "exit": t0 + wall - stamps["run_ended"],
    }
    return {"wall": wall, "phases": phases, "epoch_times": [h["epoch_time_s"] for h in history],
            "samples_per_s": [h.get("train_samples_per_s") for h in history],
            "test": {n: m["weighted_f1"] for n, m in record.get("test_metrics", {}).items()},
            "best": {n: b["best_epoch"] for n, b in record.get("best", {}).items()},
            "config": record["config"]}


def matmul_peak_gflops(device: str, threads: int, seconds: float = 1.5) -> float:
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(1024, 1024, device=device)
    b = torch.randn(1024, 1024, device=device)
    (a @ b).sum().item()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        (a @ b).sum().item()
        n += 1
    return 2 * 1024 ** 3 * n / (time.perf_counter() - t0) / 1e9


def flops_per_step(data: Path, device: str) -> float:
    """FLOPs of one training step of the default model (forward and backward, both modalities)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from discomkd.config import TrainingConfig
    from discomkd.model.networks import DisCoMKD, resolve_backbone

    config = TrainingConfig()
    shapes = {"image": (1, 28, 28), "audio": (1, 32, 32)}
    backbones = {n: resolve_backbone(config.backbone, "image", device, shape) for n, shape in shapes.items()}
    model = DisCoMKD(list(shapes), shapes, backbones, config.embed_dim, 10).to(device)
    inputs = {n: torch.randn(config.batch_size, *s, device=device) for n, s in shapes.items()}
    with FlopCounterMode(display=False) as counter:
        out = model(inputs, grl_factor=1.0)
        sum(o["logits"].sum() for o in out.values()).backward()
    return float(counter.get_total_flops())


def report(name: str, result: dict, peak: float, step_flops: float, batch: int) -> None:
    print(f"\n{name}: {result['wall']:.1f} s from the command's start to a finished run")
    for phase, seconds in result["phases"].items():
        print(f"  {phase:<24} {seconds:6.1f} s")
    epochs = result["epoch_times"]
    print(f"  {len(epochs)} epochs: " + ", ".join(f"{t:.1f}" for t in epochs) + " s (training + validation)")
    rates = [r for r in result["samples_per_s"][1:] if r] or [r for r in result["samples_per_s"] if r]
    if rates:
        rate = sum(rates) / len(rates)
        achieved = rate / batch * step_flops / 1e9
        print(f"  training: {rate:.0f} samples/s per modality (after epoch 1); {achieved:.1f} GFLOP/s, "
              f"{100 * achieved / peak:.1f}% of the measured matmul peak ({peak:.0f} GFLOP/s)")
    f1 = result["test"]
    verdict = all(f1.get(n, 0) >= goal for n, goal in GOAL_F1.items()) and result["wall"] <= GOAL_S
    print("  test weighted F1: " + ", ".join(f"{n} {100 * v:.1f} (best epoch {result['best'].get(n)})"
                                             for n, v in f1.items())
          + f"; goal {GOAL_S:.0f} s and F1 97/95: {'met' if verdict else 'not met'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="also time this git revision and print the ratio")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all)")
    args = parser.parse_args(argv)
    data = build_input()
    peak = matmul_peak_gflops(args.device, args.threads)
    step_flops = flops_per_step(data, args.device)
    print(f"machine: {os.cpu_count()} CPU threads, {args.threads} used; device {args.device}; "
          f"float32 matmul peak {peak:.0f} GFLOP/s; one default training step {step_flops / 1e9:.2f} GFLOP")
    with tempfile.TemporaryDirectory(prefix="discomkd-tta-") as tmp:
        work = Path(tmp)
        current = time_command(data, work / "run-head", args.device, args.threads, None)
        batch = int(current["config"]["batch_size"])
        report("this working tree", current, peak, step_flops, batch)
        if args.rev:
            try:
                other = time_command(data, work / "run-rev", args.device, args.threads,
                                     package_root_for(args.rev, work))
            finally:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                                str(work / f"tree-{args.rev}")], capture_output=True)
            report(f"revision {args.rev}", other, peak, step_flops, int(other["config"]["batch_size"]))
            print(f"\nratio of wall times, this tree / {args.rev}: {current['wall'] / other['wall']:.2f}")
    print("Reproduce: python benchmarks/time_to_accuracy.py " + " ".join(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
