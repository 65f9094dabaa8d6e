"""How much could unlabelled paired recordings give the weak sensor? A measurement, not a feature.

    python benchmarks/unlabelled_pairs_headroom.py [--seeds 3] [--first-seed 300] [--unlabelled 3000]

On the paired digits of ``distillation.py`` (noise 40), each seed takes the same labelled split
as the benchmark (750 training pairs, 250 validation) and cuts its 4,000 test pairs into an
unlabelled pool (``--unlabelled`` pairs, labels never read) and a test set (the rest). Two ways
of training the weak sensor's classifier (the app's branch network, compact CNN, 30 epochs, Adam
1e-3 with cosine decay, batch 64, random shifts, best validation weighted F1):

- alone: cross-entropy on the 750 labelled weak samples, as the student alone;
- with the strong sensor on unlabelled pairs: the same, plus, at every step, a batch of unlabelled
  pairs on which the weak classifier mimics the prediction of a strong classifier trained first
  on the 750 labelled strong samples (Hinton's distillation at temperature 1, weight 1);
- the control, self-training: the same unlabelled weak recordings, taught by the weak classifier
  trained alone instead of the strong one. What it gains comes from unlabelled data as such; what
  the strong teacher gains beyond it comes from the other sensor.

Both see the same test pairs; the difference is paired by seed. The application cannot use
unlabelled recordings yet: this script says whether building that is worth it.
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

from discomkd.data.augment import augment_batch  # noqa: E402
from discomkd.model.networks import ModalityBranch  # noqa: E402
from discomkd.training.events import StopToken  # noqa: E402
from discomkd.training.metrics import classification_metrics  # noqa: E402
from discomkd.training.preparation import load_dataset, prepare_modalities  # noqa: E402
from discomkd.training.schedule import learning_rate_at  # noqa: E402
from discomkd.training.significance import paired_difference  # noqa: E402


def weighted_f1(model: ModalityBranch, x: torch.Tensor, y: torch.Tensor, classes: list[str]) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 512])["logits"].argmax(1) for i in range(0, len(x), 512)])
    model.train()
    return classification_metrics(y.numpy(), pred.numpy(), classes)["weighted_f1"]


def train_branch(config, spec, x, y, x_val, y_val, classes, seed, teacher=None, x_pool=None, pool_teacher=None):
    """One branch by cross-entropy on (x, y); with ``teacher`` also KD on batches of ``x_pool``
    (the weak inputs of unlabelled recordings) towards the teacher's prediction on ``pool_teacher``
    (its own inputs of the same recordings)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = ModalityBranch("compact", spec.input_shape, config.embed_dim, len(classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    steps = math.ceil(len(x) / config.batch_size)
    best, best_state = -1.0, None
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        for step in range(steps):
            progress = (epoch + step / steps) / config.epochs
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(config, progress)
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            loss = F.cross_entropy(model(augment_batch(x[idx], spec.augmentation, generator))["logits"], y[idx])
            if teacher is not None:
                pool_idx = torch.randint(len(x_pool), (config.batch_size,), generator=generator)
                with torch.no_grad():
                    target = F.softmax(teacher(pool_teacher[pool_idx])["logits"], dim=1)
                log_p = F.log_softmax(model(augment_batch(x_pool[pool_idx], spec.augmentation, generator))["logits"], 1)
                loss = loss + F.kl_div(log_p, target, reduction="batchmean")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        score = weighted_f1(model, x_val, y_val, classes)
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return model


def one_seed(seed: int, unlabelled: int, epochs: int, data: Path) -> dict[str, float]:
    config = make_config("paired-digits", data_root(data, "paired-digits", 40.0), epochs, seed)
    dataset = load_dataset(config, lambda event: None, StopToken())
    prepared = prepare_modalities(config, dataset)  # paired: row i is the same digit in both
    strong, weak = prepared["strong"], prepared["weak"]
    classes = dataset.classes
    pool = torch.randperm(len(weak.y["test"]), generator=torch.Generator().manual_seed(seed))
    pool_rows, test_rows = pool[:unlabelled], pool[unlabelled:]
    teacher = train_branch(config, strong.spec, strong.x["train"], strong.y["train"], strong.x["val"],
                           strong.y["val"], classes, seed)
    alone = train_branch(config, weak.spec, weak.x["train"], weak.y["train"], weak.x["val"], weak.y["val"],
                         classes, seed)
    with_pairs = train_branch(config, weak.spec, weak.x["train"], weak.y["train"], weak.x["val"], weak.y["val"],
                              classes, seed, teacher, weak.x["test"][pool_rows], strong.x["test"][pool_rows])
    self_trained = train_branch(config, weak.spec, weak.x["train"], weak.y["train"], weak.x["val"], weak.y["val"],
                                classes, seed, alone, weak.x["test"][pool_rows], weak.x["test"][pool_rows])
    x_test, y_test = weak.x["test"][test_rows], weak.y["test"][test_rows]
    return {
        "strong teacher": weighted_f1(teacher, strong.x["test"][test_rows], y_test, classes),
        "weak alone": weighted_f1(alone, x_test, y_test, classes),
        "weak + unlabelled pairs": weighted_f1(with_pairs, x_test, y_test, classes),
        "weak self-trained": weighted_f1(self_trained, x_test, y_test, classes),
        "test pairs": len(test_rows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=300)
    parser.add_argument("--unlabelled", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--data", type=Path, default=REPO / "build" / "benchmark-data")
    parser.add_argument("--jobs", type=int, default=2, help="processes, one torch thread each (default 2)")
    args = parser.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    with multiprocessing.get_context("spawn").Pool(args.jobs, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        rows = pool.starmap(one_seed, [(seed, args.unlabelled, args.epochs, args.data) for seed in seeds])
    for seed, row in zip(seeds, rows):
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    for method, reference in (("weak + unlabelled pairs", "weak alone"), ("weak self-trained", "weak alone"),
                              ("weak + unlabelled pairs", "weak self-trained")):
        diff = paired_difference([r[method] for r in rows], [r[reference] for r in rows])
        interval = (f"95% CI {100 * diff.ci_low:+.1f} to {100 * diff.ci_high:+.1f}; Wilcoxon p {diff.wilcoxon_p:.3g}; "
                    if diff.ci_low is not None else "no interval; ")
        print(f"{method} minus {reference}: {100 * diff.mean:+.1f} F1 points ({interval}{diff.n} seeds): {diff.verdict}")
    print("Reproduce: python benchmarks/unlabelled_pairs_headroom.py " + " ".join(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
