"""Training configuration: what the user sets, saved with every run and every bundle."""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace

from .errors import ConfigError

BACKBONES = ("auto", "compact", "resnet18", "cnn1d")
OPTIMIZERS = ("adam", "adamw", "sgd")
ORTHOGONALITY = ("abs", "square", "signed")
GRL_SCHEDULES = ("constant", "dann")
DEVICES = ("auto", "cpu", "cuda", "mps")
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class LossWeights:
    """Weights of the five DisCoM-KD loss terms and of the agreement term."""

    # Defaults: what measured best (README, "What the default trains"). The paper sets the five
    # DisCoM-KD terms to 1 (PAPER_WEIGHTS); at 1, L_aux and L_perp pull the encoders harder than
    # L_cl does, mostly in other directions, and cost the weaker sensors accuracy.
    cl: float = 1.0  # task cross-entropy of each modality's classifier
    aux: float = 0.3  # shared auxiliary class head on z_inv and on z_inf
    adv: float = 0.3  # modality discriminator on z_inv through gradient reversal
    mod: float = 1.0  # modality heads on z_inf and z_irr
    perp: float = 0.3  # orthogonality of (z_inf, z_irr) and (z_inf, z_inv)
    agree: float = 1.0  # cross-modal agreement of the classifiers (not in the paper; see losses.py)
    unlabelled: float = 1.0  # the better-validated modality teaches on unlabelled paired recordings (losses.py)

    TERMS = ("cl", "aux", "adv", "mod", "perp", "agree", "unlabelled")

    def as_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.TERMS}

    def active_terms(self, unlabelled_pairs: int) -> list[str]:
        """The terms that take part in training: weight above 0, and L_unlabelled only with unlabelled pairs."""
        return [k for k in self.TERMS if getattr(self, k) > 0 and (k != "unlabelled" or unlabelled_pairs > 0)]


RAMPED_TERMS = ("aux", "adv", "mod", "perp")  # grow from 0 to their weight over the first term_ramp of training


def ramp_explanation(term_ramp: float, epochs: int, active_terms: list[str]) -> str:
    """Why the weighted total loss can rise early in a run ('' when nothing ramps)."""
    ramped = [f"L_{k}" for k in RAMPED_TERMS if k in active_terms]
    if term_ramp <= 0 or not ramped or epochs <= 0:
        return ""
    names = ", ".join(ramped[:-1]) + (" and " if len(ramped) > 1 else "") + ramped[-1]
    return (f"Loss ramp: {names} grow from weight 0 to their set weights over the first {100 * term_ramp:.0f}% of "
            f"training (until epoch {term_ramp * epochs:.1f} of {epochs}), so the weighted total can rise then "
            "even while every term falls.")


PAPER_WEIGHTS = LossWeights(cl=1.0, aux=1.0, adv=1.0, mod=1.0, perp=1.0, agree=0.0, unlabelled=0.0)

# One line a user reads next to each weight (GUI tooltips, CLI help).
LOSS_EXPLANATIONS = {
    "cl": "Classification: each modality's own classifier learns the labels.",
    "aux": "Auxiliary: one class head shared by all modalities must read the class from z_inv and z_inf.",
    "adv": "Adversarial: a discriminator tries to tell modalities apart from z_inv; the encoders fight it (GRL).",
    "mod": "Modality: z_inf and z_irr must each reveal which modality they came from.",
    "perp": "Orthogonality: z_inf is pushed away from z_irr and from z_inv (disentanglement).",
    "agree": "Agreement: each modality's classifier matches the others' predictions on the same sample "
             "(paired files) or class (not in the paper; off while learning from _unlabelled recordings).",
    "unlabelled": "Unlabelled pairs: on recordings of the _unlabelled folders, each modality learns the prediction "
                  "of the modality that validates better (not in the paper; no effect without such folders).",
}
AGREE_WITH_UNLABELLED_EXPLANATION = (
    "Keep L_agree while learning from the recordings of the _unlabelled folders (off, the default: there it "
    "cost the weak sensor 1.2 F1 points on our digits; without such recordings L_agree always applies).")
TEACHER_SELF_TRAINING_EXPLANATION = (
    "After the epochs, the modality that teaches the others on the recordings of the _unlabelled folders is "
    "retrained alone on its labels plus its own predictions there of 90% confidence or more (self-training), and "
    "keeps that classifier if it validates higher. Without such recordings nothing happens.")
SELF_LABEL_EXPLANATION = ("On recordings of the _unlabelled folders, the modality that teaches the others also "
                          "learns its own predictions where it is at least this confident (calibrated, as the app "
                          "shows confidence), e.g. 0.9 (0, the default: never; not in the paper, and it changed "
                          "neither sensor on our digits).")

RECOMMENDED = "Recommended"
PAPER = "Paper's objective"
LOSS_PRESETS: dict[str, LossWeights] = {
    RECOMMENDED: LossWeights(),
    PAPER: PAPER_WEIGHTS,
    "Without L_aux": LossWeights(aux=0.0),
    "Without L_adv": LossWeights(adv=0.0),
    "Without L_mod": LossWeights(mod=0.0),
    "Without L_perp": LossWeights(perp=0.0),
    "Without L_agree": LossWeights(agree=0.0),
    "Without unlabelled pairs": LossWeights(unlabelled=0.0),
    "Classifiers only": LossWeights(aux=0.0, adv=0.0, mod=0.0, perp=0.0, agree=0.0, unlabelled=0.0),
}
DEFAULT_TERM_RAMP = 0.3
# Schedule settings a preset carries besides its weights (the paper's objective has no ramp).
PRESET_SCHEDULES: dict[str, dict] = {PAPER: {"term_ramp": 0.0, "grl_schedule": "constant", "grl_lambda": 1.0}}


# Group patterns (data/grouping.py): a regular expression whose first capture group names a file's
# group (speaker, subject...). Checked here, with the other settings.
NO_GROUPS = "none"  # a modality's ``:group=none``: split it by class only, whatever --group-by says
EXAMPLE = r"_([a-z]+)_ reads the speaker 'george' from 0_george_12.wav"


def pattern_problem(pattern: str) -> str:
    """Why ``pattern`` cannot group files ('' when it can, and for '' or 'none': no grouping)."""
    if not pattern or pattern == NO_GROUPS:
        return ""
    if not isinstance(pattern, str):
        return f"The group pattern must be text, a regular expression (got {pattern!r})."
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        return f"The group pattern '{pattern}' is not a regular expression ({exc}). For example {EXAMPLE}."
    if compiled.groups < 1:
        return (f"The group pattern '{pattern}' has no capture group: put the part of the file name that names "
                f"the group in parentheses. For example {EXAMPLE}.")
    return ""


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _split_text(split) -> str:
    return ",".join(f"{f:g}" for f in split)


def paper_objective(config: "TrainingConfig") -> "TrainingConfig":
    """``config`` with the paper's objective: the five DisCoM-KD terms at weight 1 from the first
    step, a constant GRL factor of 1, no agreement or unlabelled-pairs term (other settings unchanged)."""
    return replace(config, weights=PAPER_WEIGHTS, **PRESET_SCHEDULES[PAPER])


@dataclass
class ModalitySource:
    """A modality folder and the user's overrides of its inferred spec (bands, size, augmentation...)."""

    name: str
    folder: str
    overrides: dict = field(default_factory=dict)
    # A regular expression whose first capture group names the file's group (speaker, subject...):
    # validation and test hold out whole groups (data/grouping.py). '' : the run's group_by;
    # 'none': split by class only.
    group: str = ""


@dataclass
class TrainingConfig:
    modalities: list[ModalitySource] = field(default_factory=list)
    weights: LossWeights = field(default_factory=LossWeights)
    grl_lambda: float = 1.0
    grl_schedule: str = "constant"  # or "dann": lambda * (2 / (1 + exp(-10 p)) - 1)
    orthogonality: str = "abs"  # |cos|; the authors' code uses the signed cosine
    agree_temperature: float = 1.0  # softens both sides of L_agree (Hinton's KD temperature)
    # On unlabelled recordings the modality that teaches the others also learns its own predictions
    # from this confidence up (losses.self_label_loss); 0, the default, turns it off: measured on 20
    # seeds it changed neither sensor (README, "What we measured").
    self_label_threshold: float = 0.0
    # L_agree while the run learns from unlabelled recordings. Off: there, with L_unlabelled teaching
    # the weaker modalities, L_agree cost the weak sensor 1.2 F1 points (README, "What we measured").
    agree_with_unlabelled: bool = False
    # After the epochs, the modality that teaches the others on unlabelled recordings (nobody teaches
    # it) is retrained alone on its labels plus its own confident predictions there, and keeps that
    # classifier when it validates higher (training/teacher_stage.py; README, "What we measured").
    teacher_self_training: bool = True
    term_ramp: float = DEFAULT_TERM_RAMP  # share of training over which L_aux, L_adv, L_mod, L_perp ramp in (paper: 0)
    backbone: str = "auto"  # compact CNN on CPU, ResNet-18 on a GPU; signals always use the 1-D CNN
    embed_dim: int = 64  # size of z_inv, z_inf and z_irr; encoders output 2 * embed_dim (paper: 256)
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"  # cosine decay to zero over the run, or "constant" (paper: constant 1e-4)
    weight_decay: float = 0.0
    batch_size: int = 64  # per modality
    epochs: int = 12
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    # Group pattern for every modality without its own (ModalitySource.group); '' splits by class only.
    group_by: str = ""
    seed: int = 0
    device: str = "auto"
    mixed_precision: bool = True  # on CUDA, and bfloat16 on CPUs that compute it natively (training/precision.py)

    def validate(self) -> "TrainingConfig":
        def bad(msg: str) -> None:
            raise ConfigError(msg)

        for key, value in self.weights.as_dict().items():
            if not 0 <= value < math.inf:
                bad(f"The weight of L_{key} must be zero or a positive number (got {value}).")
        if self.backbone not in BACKBONES:
            bad(f"Unknown backbone '{self.backbone}'; choose one of {', '.join(BACKBONES)}.")
        if self.optimizer not in OPTIMIZERS:
            bad(f"Unknown optimizer '{self.optimizer}'; choose one of {', '.join(OPTIMIZERS)}.")
        if self.orthogonality not in ORTHOGONALITY:
            bad(f"Unknown orthogonality '{self.orthogonality}'; choose one of {', '.join(ORTHOGONALITY)}.")
        if self.grl_schedule not in GRL_SCHEDULES:
            bad(f"Unknown GRL schedule '{self.grl_schedule}'; choose 'constant' or 'dann'.")
        if self.device not in DEVICES:
            bad(f"Unknown device '{self.device}'; choose one of {', '.join(DEVICES)}.")
        if not 0 < self.agree_temperature < math.inf:
            bad(f"The agreement temperature must be a positive number (got {self.agree_temperature}).")
        if not 0.0 <= self.self_label_threshold <= 1.0:
            bad(f"The confidence from which the teaching modality learns its own predictions is a probability "
                f"between 0 and 1, 0 for never (got {self.self_label_threshold}).")
        for flag in ("agree_with_unlabelled", "teacher_self_training", "mixed_precision"):
            if not isinstance(getattr(self, flag), bool):  # a settings file's "false" would read as true
                bad(f"The setting {flag} is true or false (got {getattr(self, flag)!r}).")
        if not 0.0 <= self.term_ramp <= 1.0:
            bad(f"The ramp of the extra terms is a fraction of training between 0 and 1 (got {self.term_ramp}).")
        if not 0 <= self.grl_lambda < math.inf:
            bad(f"The GRL factor must be zero or a positive number (got {self.grl_lambda}).")
        if not _is_whole(self.embed_dim) or not 2 <= self.embed_dim <= 4096:
            bad(f"The embedding size must be a whole number from 2 to 4096 (got {self.embed_dim}).")
        if self.lr_schedule not in LR_SCHEDULES:
            bad(f"Unknown learning-rate schedule '{self.lr_schedule}'; choose 'cosine' or 'constant'.")
        if not 0 < self.learning_rate < math.inf:
            bad(f"The learning rate must be a positive number (got {self.learning_rate}); the default is 0.001.")
        if not 0 <= self.weight_decay < math.inf:
            bad(f"The weight decay must be zero or a positive number (got {self.weight_decay}).")
        if not _is_whole(self.batch_size) or self.batch_size < 2:
            bad(f"The batch size must be a whole number of at least 2 (batch normalisation needs two samples; "
                f"got {self.batch_size}).")
        if not _is_whole(self.epochs) or self.epochs < 1:
            bad(f"Train for at least one epoch (got {self.epochs}).")
        if not _is_whole(self.seed) or not 0 <= self.seed < 2**32:
            bad(f"The seed must be a whole number from 0 to {2**32 - 1} (got {self.seed}).")
        if (len(self.split) != 3 or not all(0 <= f < math.inf for f in self.split)) or self.split[0] <= 0:
            bad("The split needs three non-negative fractions (train, validation, test) with train > 0.")
        if abs(sum(self.split) - 1.0) > 1e-6:
            bad(f"The split fractions must add up to 1 (they add up to {sum(self.split):.3f}).")
        for where, pattern in [("", self.group_by), *((f" of the modality '{m.name}'", m.group)
                                                       for m in self.modalities)]:
            problem = pattern_problem(pattern)
            if problem:
                bad(problem.replace("The group pattern", f"The group pattern{where}", 1))
        if self.split[1] == 0:
            # Model selection (each modality's best epoch) and the unlabelled-pairs term both read the
            # validation scores; without them the run would silently keep its last epoch.
            bad(f"The split {_split_text(self.split)} keeps no validation data, so no best epoch can be chosen "
                "for each modality. Give validation a share, for example 0.7,0.1,0.2.")
        return self

    def with_absolute_folders(self) -> "TrainingConfig":
        """The same settings with each modality folder made absolute: the run, its bundle and a later
        ``continue`` then find the data from any working folder, not only from the one trained in."""
        return replace(self, modalities=[replace(m, folder=os.path.abspath(m.folder)) if m.folder else m
                                         for m in self.modalities])

    def split_warnings(self) -> list[str]:
        """What a valid but unusual split means for the user (said before and after training)."""
        if self.split[2] == 0:
            return [f"The split {_split_text(self.split)} keeps no test data, so the run reports no test metrics. "
                    "Measure the model afterwards with 'discomkd evaluate' on a labelled folder it has not seen."]
        return []

    def training_weights(self, unlabelled_pairs: int) -> LossWeights:
        """The weights training uses: L_agree off while it learns from unlabelled recordings, unless
        ``agree_with_unlabelled`` keeps it."""
        if unlabelled_pairs > 0 and self.weights.unlabelled > 0 and not self.agree_with_unlabelled:
            return replace(self.weights, agree=0.0)
        return self.weights

    def to_dict(self) -> dict:
        d = asdict(self)
        d["split"] = list(self.split)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["modalities"] = [ModalitySource(**m) for m in d.get("modalities", [])]
        # Runs saved before the agreement term and the ramp existed trained without them.
        d["weights"] = LossWeights(**{"agree": 0.0, "unlabelled": 0.0, **d.get("weights", {})})
        d.setdefault("term_ramp", 0.0)
        d.setdefault("agree_temperature", 1.0)
        d.setdefault("self_label_threshold", 0.0)
        d.setdefault("agree_with_unlabelled", True)  # earlier runs kept L_agree beside the recordings
        d.setdefault("teacher_self_training", False)  # ... and had no stage after the epochs
        if "split" in d:
            d["split"] = tuple(float(v) for v in d["split"])
        return cls(**d)
