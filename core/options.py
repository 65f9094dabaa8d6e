"""Command-line options shared by ``discomkd train`` / ``demo`` (core/cli.py) and ``discomkd compare``
(core/compare.py): the ``NAME=DIR[:options]`` modality syntax and the training settings.

They live here, below both commands, so that neither command module has to import the other.
"""

from __future__ import annotations

import argparse
import math
import re

from .config import (
    AGREE_WITH_UNLABELLED_EXPLANATION,
    BACKBONES,
    DEVICES,
    EXAMPLE,
    GRL_SCHEDULES,
    LOSS_EXPLANATIONS,
    LR_SCHEDULES,
    NO_GROUPS,
    OPTIMIZERS,
    ORTHOGONALITY,
    SELF_LABEL_EXPLANATION,
    TEACHER_SELF_TRAINING_EXPLANATION,
    LossWeights,
    ModalitySource,
    TrainingConfig,
    paper_objective,
    pattern_problem,
)

# The largest image side and signal length a model bundle accepts (model/bundle.py checks the same).
MAX_SIDE = 8192
MAX_SIGNAL_LENGTH = 10_000_000
_OPTION_KEYS = ("bands", "size", "length", "kind", "length_mode", "augmentation")
_MODALITY_RE = re.compile(r"^(?P<name>[^=]+)=(?P<folder>.+?)(?::(?P<options>[a-z_]+=[^:]*(?::[a-z_]+=[^:]*)*))?$")


def parse_modality_arg(text: str) -> ModalitySource:
    """``NAME=DIR`` with optional ``:bands=4,3,2`` (1-based), ``:size=64x64``, ``:length=N``,
    ``:augmentation=none|shift|flips_rot90|flips_rot90_shift``, ``:kind=image|audio|signal``, and last
    ``:group=REGEX`` (the rest of the text, colons included: a regular expression whose first capture
    group names each file's group, or ``none``; see data/grouping.py)."""
    head, has_group, group = text.strip().partition(":group=")
    if has_group:
        later = re.search(r":(%s)=" % "|".join(_OPTION_KEYS), group)
        if later:
            raise argparse.ArgumentTypeError(
                f"'{text}': put ':group=' last, after ':{later.group(1)}=' (the group pattern takes the rest of the "
                "text, colons included)")
        problem = pattern_problem(group) if group else "The group pattern is empty; give a regular expression " \
            "whose first capture group names the group, or 'none'."
        if problem:
            raise argparse.ArgumentTypeError(f"'{text}': {problem}")
    match = _MODALITY_RE.match(head)
    if not match:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=DIR (for example image=./data/rgb)")
    overrides: dict = {}
    for option in filter(None, (match.group("options") or "").split(":")):
        key, _, value = option.partition("=")
        try:
            if key == "bands":
                overrides["bands"] = [int(v) - 1 for v in value.split(",") if v.strip()]
                if not overrides["bands"] or min(overrides["bands"]) < 0:
                    raise ValueError("bands are whole numbers from 1, for example bands=4,3,2")
            elif key == "size":
                h, _, w = value.lower().partition("x")
                overrides["size"] = [int(h), int(w or h)]
                if not all(1 <= v <= MAX_SIDE for v in overrides["size"]):
                    raise ValueError(f"the size is HxW with each side from 1 to {MAX_SIDE}, for example size=64x64")
            elif key == "length":
                overrides["length"] = int(value)
                if not 1 <= overrides["length"] <= MAX_SIGNAL_LENGTH:
                    raise ValueError(f"the length is a whole number from 1 to {MAX_SIGNAL_LENGTH}")
            elif key == "kind":
                if value not in ("image", "audio", "signal"):
                    raise ValueError(f"kind '{value}' is not image, audio or signal")
                overrides[key] = value
            elif key == "length_mode":
                if value not in ("resample", "crop"):
                    raise ValueError(f"length_mode '{value}' is not resample or crop")
                overrides[key] = value
            elif key == "augmentation":
                overrides[key] = value
            else:
                raise ValueError(f"unknown option '{key}'")
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"'{text}': {exc}") from exc
    return ModalitySource(match.group("name").strip(), match.group("folder"), overrides, group)


def input_path(text: str) -> str:
    """argparse type: a file or folder to read. An empty name is refused: as a path it would mean the
    current folder, and a command would quietly read everything under it."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path was given; name a file or folder")
    return text


def output_path(text: str) -> str:
    """argparse type: a file or folder to write. An empty name is refused: as a path it would mean the
    current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path was given; name a file or folder (or leave the option out)")
    return text


def whole_number(minimum: int, maximum: int | None = None):
    """argparse type: a whole number in [minimum, maximum], refused with the range otherwise."""
    wanted = f"a whole number from {minimum} to {maximum}" if maximum is not None else f"a whole number of at least {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted} (got '{text}')") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {value})")
        return value

    return parse


def real_number(minimum: float = 0.0, positive: bool = False, maximum: float = math.inf):
    """argparse type: a finite number >= minimum (> minimum when ``positive``) and <= maximum."""
    wanted = ("a positive number" if positive and minimum == 0 else "zero or a positive number" if minimum == 0
              else f"a number of at least {minimum:g}")
    if maximum < math.inf:
        wanted += f" of at most {maximum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted} (got '{text}')") from None
        if not (value > minimum if positive else value >= minimum) or not value <= maximum or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text})")
        return value

    return parse


def _fraction_triple(text: str) -> tuple[float, float, float]:
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or not all(0 <= f <= 1 for f in parts) or parts[0] == 0:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a split: give three fractions train,val,test from 0 to 1 that add up to 1, "
            "with train above 0 (e.g. 0.7,0.1,0.2)")
    return tuple(parts)  # type: ignore[return-value]


def group_pattern(text: str) -> str:
    """argparse type: a group pattern (a regular expression with a capture group) or 'none'."""
    problem = pattern_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def add_training_options(parser: argparse.ArgumentParser, defaults: TrainingConfig | None = None) -> None:
    """Add every training setting (epochs, optimiser, loss weights, GRL, ...) with ``defaults``' values."""
    d = defaults or TrainingConfig()
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=whole_number(1), default=d.epochs)
    g.add_argument("--batch-size", type=whole_number(2), default=d.batch_size, help="samples per modality per step")
    g.add_argument("--lr", type=real_number(positive=True), default=d.learning_rate, help="learning rate")
    g.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=d.lr_schedule,
                   help="cosine decay to zero over the run, or constant (the paper's)")
    g.add_argument("--weight-decay", type=real_number(), default=d.weight_decay)
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    g.add_argument("--backbone", choices=BACKBONES, default=d.backbone,
                   help="auto: compact CNN on CPU, ResNet-18 on GPU; signals always use the 1-D CNN")
    g.add_argument("--embed-dim", type=whole_number(2, 4096), default=d.embed_dim, help="size of z_inv, z_inf, z_irr (paper: 256)")
    g.add_argument("--split", type=_fraction_triple, default=d.split, help="train,val,test fractions")
    g.add_argument("--group-by", type=group_pattern, default=d.group_by, metavar="REGEX",
                   help="hold out whole groups of files (speakers, subjects, sessions) in validation and test: a "
                        "regular expression searched in each file's path below its class folder, whose first "
                        f"capture group names the group (e.g. {EXAMPLE}); a modality's own ':group=REGEX' or "
                        f"':group={NO_GROUPS}' wins over it")
    g.add_argument("--seed", type=whole_number(0, 2**32 - 1), default=d.seed)
    g.add_argument("--device", choices=DEVICES, default=d.device)
    g.add_argument("--no-amp", action="store_true", help="train in float32 throughout (default: mixed precision on a GPU, and bfloat16 on a CPU that computes it natively)")
    w = parser.add_argument_group("loss weights (paper: the five DisCoM-KD terms 1, no agreement)")
    for term in LossWeights.TERMS:
        w.add_argument(f"--w-{term}", type=real_number(), default=getattr(d.weights, term), help=LOSS_EXPLANATIONS[term])
    w.add_argument("--grl", type=real_number(), default=d.grl_lambda, help="gradient reversal factor lambda")
    w.add_argument("--grl-schedule", choices=GRL_SCHEDULES, default=d.grl_schedule)
    w.add_argument("--orthogonality", choices=ORTHOGONALITY, default=d.orthogonality,
                   help="abs |cos| (default), square cos^2, signed cos (authors' code)")
    w.add_argument("--agree-temperature", type=real_number(positive=True), default=d.agree_temperature,
                   help="temperature of the agreement term: softens both predictions (Hinton's KD; 1 = none)")
    w.add_argument("--self-label-threshold", type=real_number(maximum=1.0), default=d.self_label_threshold,
                   help=SELF_LABEL_EXPLANATION)
    w.add_argument("--agree-with-unlabelled", action="store_true", default=d.agree_with_unlabelled,
                   help=AGREE_WITH_UNLABELLED_EXPLANATION)
    w.add_argument("--no-teacher-self-training", dest="teacher_self_training", action="store_false",
                   default=d.teacher_self_training, help=TEACHER_SELF_TRAINING_EXPLANATION + " This switches it off.")
    w.add_argument("--term-ramp", type=real_number(maximum=1.0), default=d.term_ramp,
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
        self_label_threshold=args.self_label_threshold,
        agree_with_unlabelled=args.agree_with_unlabelled,
        teacher_self_training=args.teacher_self_training,
        backbone=args.backbone,
        embed_dim=args.embed_dim,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        lr_schedule=args.lr_schedule,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        epochs=args.epochs,
        split=tuple(args.split),
        group_by=args.group_by,
        seed=args.seed,
        device=args.device,
        mixed_precision=not args.no_amp,
    )
    return paper_objective(config) if args.paper_objective else config
