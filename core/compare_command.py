"""The ``discomkd compare`` command: its options (the training ones from options.py) and its console output.

The comparison itself is :func:`discomkd.training.compare.run_comparison`; the GUI's Compare page calls
it directly, so this module is the command line's only.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .config import ModalitySource, TrainingConfig
from .errors import DisComKDError
from .options import add_training_options, config_from_args, output_path, parse_modality_arg, whole_number
from .training.compare import DEFAULT_METHODS, METHODS, CompareProgress, run_comparison
from .training.events import StopToken


def _modality_type(text: str) -> ModalitySource:
    """argparse type: the same NAME=DIR[:bands=...] syntax as ``discomkd train``."""
    return parse_modality_arg(text)


def add_compare_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``compare`` to an argparse sub-parser set; ``run_compare_command`` runs it.

    The training options are the ones ``discomkd train`` takes (``options.add_training_options``),
    so a comparison runs DisCoM-KD exactly as a training would.
    """
    p = subparsers.add_parser(
        "compare", help="compare DisCoM-KD with baselines and ablations over several random splits",
        description="Runs each chosen method on K random splits (seed k = SEED + k, for the split and the "
                    "initialisation) and writes comparison.md, comparison.csv and per_run.json. Methods: "
                    + ", ".join(f"{k} ({v})" for k, v in METHODS.items()),
    )
    p.add_argument("--modality", action="append", required=True, type=_modality_type,
                   metavar="NAME=DIR[:bands=4,3,2]",
                   help="a modality folder (one sub-folder per class); repeat for each modality; "
                        "bands are numbered from 1")
    p.add_argument("--seeds", type=whole_number(1, 1000), default=5, help="number of random splits (default 5; the paired differences need several)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated method ids (default: all)")
    p.add_argument("--out", type=output_path, required=True, help="folder for comparison.md, comparison.csv and per_run.json "
                                              "(checked before any training; existing ones kept unless --force)")
    p.add_argument("--force", action="store_true", help="replace the comparison files in --out if they exist")
    add_training_options(p)
    p.set_defaults(func=run_compare_command)
    return p


def _config_from_args(args: argparse.Namespace) -> TrainingConfig:
    return config_from_args(args, list(args.modality))


def run_compare_command(args: argparse.Namespace) -> int:
    """Run ``discomkd compare``: progress on stderr, the table on stdout. Ctrl-C stops cleanly."""
    stop = StopToken()
    try:
        config = _config_from_args(args)
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        last = {"line": ""}

        def show(p: CompareProgress) -> None:
            line = f"[{100 * p.fraction:5.1f}%] {p.message}"
            if line != last["line"]:
                last["line"] = line
                print("\r" + line[:110].ljust(110), end="", file=sys.stderr, flush=True)

        previous = signal.signal(signal.SIGINT, lambda *_: stop.request())
        try:
            result = run_comparison(config, methods, args.seeds, out_dir=Path(args.out), on_progress=show, stop=stop,
                                    replace=args.force)
        finally:
            signal.signal(signal.SIGINT, previous)
        print(file=sys.stderr)
    except DisComKDError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    if result.measured_nothing:
        print(f"Stopped before any run ended: nothing was written to {Path(args.out).resolve()}.", file=sys.stderr)
        return 130
    print(result.to_markdown())
    print(f"Written to {Path(args.out).resolve()} in {result.wall_time_s:.0f} s.", file=sys.stderr)
    return 130 if result.stopped else 0
