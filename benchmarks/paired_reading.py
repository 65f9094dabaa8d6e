"""Paired differences between two methods' runs kept in different comparison folders.

A comparison folder (``benchmarks/distillation.py --out``, ``discomkd compare --out``) pairs the
methods it ran itself. This reads one method from each of two or more folders, say the default of a
new engine and the baselines of an earlier run on the same seeds, and prints, per modality, the
first minus each of the others: mean over the seeds both hold, 95% t-interval, Wilcoxon p and how
many seeds were higher; then the runs still improving at their end (the comparison's rule).

    python benchmarks/paired_reading.py NEW:discomkd docs/comparison/X:self_training docs/comparison/X:distill

FOLDER:METHOD names a method in FOLDER's per_run.json; FOLDER alone works when it holds one method;
FOLDER,FOLDER:METHOD pools the runs of several folders (other seeds of the same method).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def finished_runs(spec: str) -> tuple[str, dict[tuple[int, str], dict]]:
    """'FOLDER[,FOLDER...][:METHOD]' -> (a label, {(seed, modality): that run's metrics}) of their finished runs."""
    folders, _, method = spec.partition(":")
    runs = [r for folder in folders.split(",")
            for r in json.loads((Path(folder) / "per_run.json").read_text(encoding="utf-8"))["runs"]]
    methods = sorted({r["method"] for r in runs})
    if not method:
        if len(methods) != 1:
            raise SystemExit(f"{folders} holds the methods {', '.join(methods)}: name one as {folders}:METHOD")
        method = methods[0]
    elif method not in methods:
        raise SystemExit(f"{folders} has no runs of '{method}' (it has {', '.join(methods)})")
    scores = {}
    for r in runs:
        if r["method"] != method:
            continue
        if r["status"] != "finished":
            print(f"  left out: {folders} {method} seed {r['seed']} {r['status']}: {r.get('reason', '')[:100]}")
            continue
        for modality, metrics in r["metrics"].items():
            scores[(r["seed"], modality)] = metrics
    return f"{'+'.join(Path(f).name for f in folders.split(','))}:{method}", scores


def main(argv: list[str] | None = None) -> None:
    from discomkd.training.convergence import late_gain, still_improving
    from discomkd.training.significance import paired_difference

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", help="FOLDER[:METHOD] whose runs come first in each difference")
    parser.add_argument("others", nargs="+", help="FOLDER[:METHOD] to subtract, each in turn")
    parser.add_argument("--epochs", type=int, default=None, help="the runs' epochs (default: their curves' length)")
    args = parser.parse_args(argv)
    label, reference = finished_runs(args.reference)
    read = [finished_runs(spec) for spec in args.others]
    modalities = sorted({m for _, m in reference})
    for other_label, other in read:
        for modality in modalities:
            seeds = sorted(s for s, m in reference if m == modality and (s, modality) in other)
            if len(seeds) < 2:
                print(f"{label} - {other_label} {modality}: fewer than two seeds in common")
                continue
            x = [reference[(s, modality)]["weighted_f1"] for s in seeds]
            y = [other[(s, modality)]["weighted_f1"] for s in seeds]
            d = paired_difference(x, y)
            higher = sum(a > b for a, b in zip(x, y))
            print(f"{label} - {other_label} {modality}: n={len(seeds)} {statistics.mean(x):.4f} vs "
                  f"{statistics.mean(y):.4f}: {100 * d.mean:+.1f} ({100 * d.ci_low:+.1f} to {100 * d.ci_high:+.1f}; "
                  f"Wilcoxon p {'n/a' if d.wilcoxon_p is None else format(d.wilcoxon_p, '.2g')}), "
                  f"{higher} of {len(seeds)} seeds higher")  # no p when every seed gives the same score
    for run_label, scores in [(label, reference), *read]:
        for (seed, modality), m in sorted(scores.items()):
            curve = m.get("val_curve") or []
            epochs = args.epochs or len(curve)
            if curve and still_improving(curve, m["best_epoch"], epochs):
                print(f"  still improving: {run_label} {modality} seed {seed}, best epoch {m['best_epoch']} of "
                      f"{epochs}, last fifth +{100 * late_gain(curve, epochs):.1f} points")


if __name__ == "__main__":
    main()
