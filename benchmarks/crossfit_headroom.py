"""Can labelled pairs alone teach the weak sensor? Cross-fitted soft targets, a measurement first.

    python benchmarks/crossfit_headroom.py [--seeds 5] [--first-seed 500] [--folds 5] [--temperature 4]

On labelled pairs a strong classifier's prediction on its own training samples repeats their
labels (it has memorised them), so distilling it adds nothing: what every method measured so far.
Cross-fitting gives soft targets that no model has memorised: the strong sensor's labelled
training pairs are cut into K folds, K strong classifiers each learn on K-1 folds, and each pair's
target is the prediction of the classifier that never saw it (out of fold). On the paired digits
of ``distillation.py`` (noise 40: 750 labelled training pairs, 250 validation, 4,000 test), with
the app's branch network and schedule (compact CNN, 30 epochs, Adam 1e-3 cosine, batch 64, best
validation weighted F1), per seed:

- weak alone: cross-entropy on the 750 labelled weak samples (the student alone);
- weak + in-sample KD: plus Hinton's distillation from one strong classifier trained on all 750
  (its predictions on its own training samples: the usual KD on labelled pairs);
- weak + cross-fitted KD: plus distillation towards the out-of-fold strong predictions.

Each weak variant minimises CE + w * T^2 KL(teacher_T || weak_T) on the same labelled batches.
Differences are paired by seed (95% t-interval, Wilcoxon p).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from distillation import data_root, make_config  # noqa: E402 (the benchmark's data and settings)
from unlabelled_pairs_headroom import weighted_f1  # noqa: E402

from discomkd.data.augment import augment_batch  # noqa: E402
from discomkd.model.baselines import kd_divergence  # noqa: E402
from discomkd.model.networks import ModalityBranch  # noqa: E402
from discomkd.training.events import StopToken  # noqa: E402
from discomkd.training.preparation import load_dataset, prepare_modalities  # noqa: E402
from discomkd.training.schedule import learning_rate_at  # noqa: E402
from discomkd.training.significance import paired_difference  # noqa: E402


def train_branch(config, spec, x, y, x_val, y_val, classes, seed, soft=None, temperature=4.0, weight=1.0):
    """One branch by cross-entropy on (x, y), plus, with ``soft`` (teacher logits row-aligned with x),
    temperature-scaled distillation towards them; the weights of the best validation epoch."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = ModalityBranch("compact", spec.input_shape, config.embed_dim, len(classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    steps = math.ceil(len(x) / config.batch_size)
    best, best_state = -1.0, None
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(config, (epoch + step / steps) / config.epochs)
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            logits = model(augment_batch(x[idx], spec.augmentation, generator))["logits"]
            loss = F.cross_entropy(logits, y[idx])
            if soft is not None:
                loss = loss + weight * kd_divergence(logits, soft[idx], temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if x_val is not None:
            score = weighted_f1(model, x_val, y_val, classes)
            if score > best:
                best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model


@torch.no_grad()
def logits_of(model: ModalityBranch, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(x[i : i + 512])["logits"] for i in range(0, len(x), 512)])


def one_seed(seed: int, folds: int, temperature: float, epochs: int, data: Path) -> dict[str, float]:
    config = make_config("paired-digits", data_root(data, "paired-digits", 40.0), epochs, seed)
    dataset = load_dataset(config, lambda event: None, StopToken())
    prepared = prepare_modalities(config, dataset)  # paired: row i is the same digit in both
    strong, weak = prepared["strong"], prepared["weak"]
    classes = dataset.classes
    xs, ys = strong.x["train"], strong.y["train"]
    # In-sample teacher: one strong classifier on all labelled pairs, selected on validation.
    teacher = train_branch(config, strong.spec, xs, ys, strong.x["val"], strong.y["val"], classes, seed)
    in_sample = logits_of(teacher, xs)
    # Cross-fitted teacher: each fold's targets from a classifier trained on the other folds
    # (selected on the validation split too; it never sees the fold it labels).
    fold_of = torch.randperm(len(ys), generator=torch.Generator().manual_seed(seed)) % folds
    out_of_fold = torch.zeros_like(in_sample)
    for k in range(folds):
        keep, held = fold_of != k, fold_of == k
        model = train_branch(config, strong.spec, xs[keep], ys[keep], strong.x["val"], strong.y["val"], classes,
                             seed + 1000 * (k + 1))
        out_of_fold[held] = logits_of(model, xs[held])
    args = (config, weak.spec, weak.x["train"], weak.y["train"], weak.x["val"], weak.y["val"], classes, seed)
    variants = {
        "weak alone": train_branch(*args),
        "weak + in-sample KD": train_branch(*args, soft=in_sample, temperature=temperature),
        "weak + cross-fitted KD": train_branch(*args, soft=out_of_fold, temperature=temperature),
    }
    row = {name: weighted_f1(model, weak.x["test"], weak.y["test"], classes) for name, model in variants.items()}
    row["strong teacher"] = weighted_f1(teacher, strong.x["test"], strong.y["test"], classes)
    row["out-of-fold accuracy"] = float((out_of_fold.argmax(1) == ys).float().mean())
    row["in-sample accuracy"] = float((in_sample.argmax(1) == ys).float().mean())
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=500)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--data", type=Path, default=REPO / "build" / "benchmark-data")
    parser.add_argument("--jobs", type=int, default=2, help="processes, one torch thread each (default 2)")
    args = parser.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    data_root(args.data, "paired-digits", 40.0)  # build once, before the workers
    with multiprocessing.get_context("spawn").Pool(args.jobs, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        rows = pool.starmap(one_seed, [(seed, args.folds, args.temperature, args.epochs, args.data) for seed in seeds])
    for seed, row in zip(seeds, rows):
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    for method, reference in (("weak + cross-fitted KD", "weak alone"), ("weak + in-sample KD", "weak alone"),
                              ("weak + cross-fitted KD", "weak + in-sample KD")):
        diff = paired_difference([r[method] for r in rows], [r[reference] for r in rows])
        print(f"{method} minus {reference}: {diff.describe()}")
    print("Reproduce: python benchmarks/crossfit_headroom.py " + " ".join(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
