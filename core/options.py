"""Command-line options shared by ``discomkd train`` / ``demo`` (core/cli.py) and ``discomkd compare``
(core/compare.py): the ``NAME=DIR[:options]`` modality syntax and the training settings.

They live here, below both commands, so that neither command module has to import the other.
"""

from __future__ import annotations

import argparse
import re

from .config import (
    BACKBONES,
    DEVICES,
    GRL_SCHEDULES,
    LOSS_EXPLANATIONS,
    LR_SCHEDULES,
    OPTIMIZERS,
    ORTHOGONALITY,
    LossWeights,
    ModalitySource,
    TrainingConfig,
    paper_objective,
)

_MODALITY_RE = re.compile(r"^(?P<name>[^=]+)=(?P<folder>.+?)(?::(?P<options>[a-z_]+=[^:]*(?::[a-z_]+=[^:]*)*))?$")


def parse_modality_arg(text: str) -> ModalitySource:
    """``NAME=DIR`` with optional ``:bands=4,3,2`` (1-based), ``:size=64x64``, ``:length=N``,
    ``:augmentation=none|shift|flips_rot90|flips_rot90_shift``, ``:kind=image|audio|signal``."""
    match = _MODALITY_RE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=DIR (for example image=./data/rgb)")
    overrides: dict = {}
    for option in filter(None, (match.group("options") or "").split(":")):
        key, _, value = option.partition("=")
        try:
            if key == "bands":
                overrides["bands"] = [int(v) - 1 for v in value.split(",") if v.strip()]
                if min(overrides["bands"]) < 0:
                    raise ValueError("bands are numbered from 1")
            elif key == "size":
                h, _, w = value.lower().partition("x")
                overrides["size"] = [int(h), int(w or h)]
            elif key == "length":
                overrides["length"] = int(value)
            elif key == "kind":
                if value not in ("image", "audio", "signal"):
                    raise ValueError(f"kind '{value}' is not image, audio or signal")
                overrides[key] = value
            elif key in ("augmentation", "length_mode"):
                overrides[key] = value
            else:
                raise ValueError(f"unknown option '{key}'")
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"'{text}': {exc}") from exc
    return ModalitySource(match.group("name").strip(), match.group("folder"), overrides)


def _fraction_triple(text: str) -> tuple[float, float, float]:
    parts = [float(v) for v in text.split(",")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("the split is three fractions: train,val,test (e.g. 0.7,0.1,0.2)")
    return tuple(parts)  # type: ignore[return-value]


def add_training_options(parser: argparse.ArgumentParser, defaults: TrainingConfig | None = None) -> None:
    """Add every training setting (epochs, optimiser, loss weights, GRL, ...) with ``defaults``' values."""
    d = defaults or TrainingConfig()
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="samples per modality per step")
    g.add_argument("--lr", type=float, default=d.learning_rate, help="learning rate")
    g.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=d.lr_schedule,
                   help="cosine decay to zero over the run, or constant (the paper's)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    g.add_argument("--backbone", choices=BACKBONES, default=d.backbone,
                   help="auto: compact CNN on CPU, ResNet-18 on GPU; signals always use the 1-D CNN")
    g.add_argument("--embed-dim", type=int, default=d.embed_dim, help="size of z_inv, z_inf, z_irr (paper: 256)")
    g.add_argument("--split", type=_fraction_triple, default=d.split, help="train,val,test fractions")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--device", choices=DEVICES, default=d.device)
    g.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    g.add_argument("--no-distill-stage", action="store_true",
                   help="end with the epochs: no distillation stage after them (it runs only with unlabelled recordings)")
    w = parser.add_argument_group("loss weights (paper: the five DisCoM-KD terms 1, no agreement)")
    for term in LossWeights.TERMS:
        w.add_argument(f"--w-{term}", type=float, default=getattr(d.weights, term), help=LOSS_EXPLANATIONS[term])
    w.add_argument("--grl", type=float, default=d.grl_lambda, help="gradient reversal factor lambda")
    w.add_argument("--grl-schedule", choices=GRL_SCHEDULES, default=d.grl_schedule)
    w.add_argument("--orthogonality", choices=ORTHOGONALITY, default=d.orthogonality,
                   help="abs |cos| (default), square cos^2, signed cos (authors' code)")
    w.add_argument("--agree-temperature", type=float, default=d.agree_temperature,
                   help="temperature of the agreement term: softens both predictions (Hinton's KD; 1 = none)")
    w.add_argument("--term-ramp", type=float, default=d.term_ramp,
                   help="fraction of training over which L_aux, L_adv, L_mod and L_perp ramp in from 0 "
                        "(paper: 0, full weight from the first step)")
    w.add_argument("--paper-objective", action="store_true",
                   help="the paper's objective: the five DisCoM-KD weights 1, no agreement or unlabelled-pairs term, "
                        "no ramp, "
                        "constant GRL factor 1 (overrides the weight and GRL options)")


def config_from_args(args: argparse.Namespace, modalities: list[ModalitySource]) -> TrainingConfig:
    """The TrainingConfig for options added by :func:`add_training_options` and these modalities."""
    config = TrainingConfig(
        modalities=modalities,
        weights=LossWeights(**{t: getattr(args, f"w_{t}") for t in LossWeights.TERMS}),
        grl_lambda=args.grl,
        grl_schedule=args.grl_schedule,
        orthogonality=args.orthogonality,
        term_ramp=args.term_ramp,
        agree_temperature=args.agree_temperature,
        backbone=args.backbone,
        embed_dim=args.embed_dim,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        lr_schedule=args.lr_schedule,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        epochs=args.epochs,
        split=tuple(args.split),
        seed=args.seed,
        device=args.device,
        mixed_precision=not args.no_amp,
        distill_stage=not args.no_distill_stage,
    )
    return paper_objective(config) if args.paper_objective else config
