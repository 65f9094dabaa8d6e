"""The DisCoM-KD loss terms, plus the cross-modal agreement term and the ramp of the extra terms.

Modality targets are integer class indices 0..n-1 for CrossEntropyLoss. The authors' public code
builds them with ``ones_like``/``zeros_like`` on the logits, which CrossEntropyLoss reads as class
*probabilities* (a degenerate, non-normalised target), so its L_adv and L_mod do not train the
discriminator and modality heads as the paper describes. We implement the paper's intent.

Each term is the mean over modalities of its per-modality batch mean, so the magnitudes do not
grow with the number of modalities; the total is the weighted sum of the terms.

Beyond the paper (see README, "What the default trains"): ``agree`` makes each modality's
classifier match its peers' predictions (deep mutual learning, Zhang et al. 2018) on the same
sample when the data is paired, or on the peers' mean prediction for the same class when it is
not; and the four extra DisCoM-KD terms can be ramped in (``ramp_factor``) instead of weighing on
the randomly initialised encoders from the first step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import RAMPED_TERMS, LossWeights


def orthogonality_penalty(a: torch.Tensor, b: torch.Tensor, mode: str = "abs") -> torch.Tensor:
    """Mean cosine similarity of L2-normalised rows: 'abs' |cos| (default), 'square' cos^2, 'signed' cos.

    The signed cosine (authors' code) is minimised by anti-parallel vectors, not orthogonal ones;
    |cos| and cos^2 are minimised exactly at orthogonality.
    """
    cos = (F.normalize(a.float(), dim=1) * F.normalize(b.float(), dim=1)).sum(dim=1)
    if mode == "abs":
        return cos.abs().mean()
    if mode == "square":
        return (cos * cos).mean()
    if mode == "signed":
        return cos.mean()
    raise ValueError(f"unknown orthogonality mode {mode}")


def modality_targets(batch_size: int, modality_index: int, device: torch.device | str) -> torch.Tensor:
    """Integer class indices naming the modality (not one-hot floats, see the module note)."""
    return torch.full((batch_size,), modality_index, dtype=torch.long, device=device)


def discomkd_loss_terms(
    outputs: dict[str, dict[str, torch.Tensor]],
    labels: dict[str, torch.Tensor],
    modality_names: list[str],
    orthogonality: str = "abs",
) -> dict[str, torch.Tensor]:
    """The five unweighted DisCoM-KD terms: cl, aux, adv, mod, perp (``agree`` is computed apart)."""
    sums = {k: 0.0 for k in DISCOMKD_TERMS}
    for name, out in outputs.items():
        y = labels[name]
        m = modality_targets(y.shape[0], modality_names.index(name), y.device)
        sums["cl"] = sums["cl"] + F.cross_entropy(out["logits"].float(), y)
        sums["aux"] = sums["aux"] + F.cross_entropy(out["aux_inv"].float(), y) + F.cross_entropy(out["aux_inf"].float(), y)
        sums["adv"] = sums["adv"] + F.cross_entropy(out["disc"].float(), m)
        sums["mod"] = sums["mod"] + F.cross_entropy(out["mod_inf"].float(), m) + F.cross_entropy(out["mod_irr"].float(), m)
        sums["perp"] = sums["perp"] + orthogonality_penalty(out["z_inf"], out["z_irr"], orthogonality) + orthogonality_penalty(
            out["z_inf"], out["z_inv"], orthogonality
        )
    n = len(outputs)
    return {k: v / n for k, v in sums.items()}


DISCOMKD_TERMS = ("cl", "aux", "adv", "mod", "perp")


def mimicry(logits: torch.Tensor, target_probs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """DML (Zhang et al., CVPR 2018) mimicry: KL(peer || student) per sample, mean over kept samples.

    ``target_probs`` are the peer's (detached) predicted distributions; ``mask`` drops samples
    without a target (class-conditional variant, class absent from the peer's batch).
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    q = target_probs.float().detach()
    kl = (q * (torch.log(q.clamp_min(1e-12)) - log_p)).sum(dim=1)
    if mask is None:
        return kl.mean()
    if not bool(mask.any()):
        return kl.sum() * 0.0
    return kl[mask].mean()


def class_conditional_targets(
    peer_logits: torch.Tensor, peer_labels: torch.Tensor, labels: torch.Tensor, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each label y: the peer batch's mean softmax over its samples of class y, and a mask of
    which labels the peer batch contains (mutual learning without paired samples)."""
    probs = F.softmax(peer_logits.float().detach(), dim=1)
    onehot = F.one_hot(peer_labels, n_classes).float()  # (B_peer, K)
    counts = onehot.sum(dim=0)  # (K,)
    class_means = (onehot.t() @ probs) / counts.clamp_min(1.0)[:, None]  # (K, K)
    return class_means[labels], counts[labels] > 0


def agreement_loss(
    logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], paired: bool, n_classes: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Mean over modalities and peers of the mimicry of each classifier towards a peer's prediction.

    Paired batches (row i is the same sample in every modality) mimic the peer's prediction on
    that very sample; otherwise the peer's mean prediction over its batch samples of the same class.
    Only predictions the peer gets right teach (its arg-max is the label): a strong sensor then
    teaches a weak one almost everywhere, while the weak one's mistakes do not pull the strong one.
    Both sides are softened by ``temperature`` and the term scaled by its square (Hinton et al. 2015):
    on training samples a peer is soon nearly certain, and at temperature 1 its prediction says
    little more than the label.
    """
    names = list(logits)
    t = float(temperature)
    parts = []
    for n in names:
        student = logits[n].float() / t
        for peer in names:
            if peer == n:
                continue
            peer_logits = logits[peer].float().detach()
            correct = peer_logits.argmax(dim=1) == labels[peer]
            if paired:
                parts.append(mimicry(student, F.softmax(peer_logits / t, dim=1), correct))
            else:
                target, mask = class_conditional_targets(peer_logits[correct] / t, labels[peer][correct], labels[n],
                                                         n_classes)
                parts.append(mimicry(student, target, mask))
    return torch.stack(parts).mean() * t * t


TEACHING_MARGIN = 0.02  # weighted F1 a modality must validate above another to teach it (2 points)


def teaching_direction(val_scores: dict[str, float], previous: dict[str, list[str]] | None = None,
                       margin: float = TEACHING_MARGIN,
                       earlier_scores: dict[str, float] | None = None) -> dict[str, list[str]]:
    """For each modality, the peers that teach it on unlabelled recordings (from best validation scores).

    A peer starts teaching when it validates higher by more than ``margin`` (and, given
    ``earlier_scores``, the best scores one epoch before, did so there too: an early epoch's lucky
    score does not start a direction); a direction once taken holds until the taught modality
    overtakes its teacher by the margin (hysteresis). So two sensors of similar quality, or early
    epochs' noisy scores, do not swap roles from epoch to epoch, and a pair is never taught both
    ways. Scores below 0 (no epoch validated yet) teach nobody.
    """
    previous = previous or {}

    def ahead(scores: dict[str, float], p: str, n: str) -> bool:
        return scores[p] >= 0 and scores[p] > scores[n] + margin

    teachers: dict[str, list[str]] = {}
    for n, own in val_scores.items():
        teachers[n] = []
        for p, score in val_scores.items():
            if p == n or score < 0:
                continue
            held = p in previous.get(n, [])
            starts = ahead(val_scores, p, n) and (earlier_scores is None or ahead(earlier_scores, p, n))
            if starts or (held and own <= score + margin):
                teachers[n].append(p)
    return teachers


def teaching_text(teachers: dict[str, list[str]], val_scores: dict[str, float],
                  self_label_threshold: float = 0.0) -> str:
    """'strong teaches weak (validation weighted F1 0.951 vs 0.532)', or that nobody teaches; with
    self-labels, which modality also learns its own confident predictions."""
    pairs = [f"{p} teaches {n} (validation weighted F1 {val_scores[p]:.3f} vs {val_scores[n]:.3f})"
             for n, peers in teachers.items() for p in peers]
    if not pairs:
        return (f"no modality validates {100 * TEACHING_MARGIN:.0f} points above another yet, so none teaches "
                "on the unlabelled recordings")
    text = "on the unlabelled recordings " + "; ".join(pairs)
    leaders = sorted(self_labelling(teachers)) if self_label_threshold > 0 else []
    if leaders:
        learns, its = ("learns", "its") if len(leaders) == 1 else ("learn", "their")
        text += (f"; {', '.join(leaders)} also {learns} from {its} own predictions of "
                 f"{100 * self_label_threshold:.0f}% calibrated confidence or more")
    return text


def self_labelling(teachers: dict[str, list[str]]) -> set[str]:
    """The modalities that teach and have no teacher of their own: they learn their own confident
    predictions on the unlabelled recordings (:func:`unlabelled_pair_loss`)."""
    return {p for peers in teachers.values() for p in peers if not teachers.get(p)}


def unlabelled_pair_loss(logits: dict[str, torch.Tensor], teachers: dict[str, list[str]],
                         temperature: float = 1.0, self_label_threshold: float = 0.0,
                         confidence_temperatures: dict[str, float] | None = None) -> torch.Tensor:
    """On unlabelled paired recordings, each modality's classifier mimics its teachers' (detached)
    predictions on the same recording (Hinton's distillation; cross-modal "supervision transfer",
    Gupta et al. 2016). Without labels nothing says which prediction is right, so only a modality
    that validates better teaches: a weak sensor never pulls a strong one. Zero without teachers.

    With ``self_label_threshold`` above 0, a modality that teaches and has no teacher of its own
    learns from its own confident predictions instead (pseudo-labels, Lee 2013; the confidence
    cut of FixMatch, Sohn et al. 2020): without it the best sensor is the only one the recordings
    give nothing, and the self-training baseline showed they can give it something. The cut reads
    calibrated confidence (``confidence_temperatures``, fitted on validation), the confidence the app
    shows: the raw probabilities of these classifiers are far too modest (after 90 epochs on the
    paired digits, 0 of 3,000 recordings reached 0.9 at 92% validation accuracy)."""
    t = float(temperature)
    parts = [mimicry(logits[n].float() / t, F.softmax(logits[p].float().detach() / t, dim=1))
             for n, peers in teachers.items() for p in peers]
    if not parts:
        return next(iter(logits.values())).float().sum() * 0.0
    total = torch.stack(parts).mean() * t * t
    if self_label_threshold > 0:
        temperatures = confidence_temperatures or {}
        own = [self_label_loss(logits[p], self_label_threshold, temperatures.get(p, 1.0))
               for p in sorted(self_labelling(teachers))]
        if own:
            total = total + torch.stack(own).mean()
    return total


def self_label_loss(logits: torch.Tensor, threshold: float, confidence_temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy towards the arg-max of the (detached) prediction on the rows predicted with at
    least ``threshold`` probability (at ``confidence_temperature``: calibrated), summed over those
    rows and divided by all rows (FixMatch's normalisation: the term grows as more of the recordings
    are predicted confidently)."""
    logits = logits.float()
    confidence, pseudo = F.softmax(logits.detach() / confidence_temperature, dim=1).max(dim=1)
    keep = (confidence >= threshold).float()
    return (F.cross_entropy(logits, pseudo, reduction="none") * keep).sum() / max(logits.shape[0], 1)


def ramp_factor(progress: float, ramp_fraction: float) -> float:
    """0 -> 1 over the first ``ramp_fraction`` of training on the DANN curve 2 / (1 + exp(-10 q)) - 1,
    q = progress / ramp_fraction (Ganin et al. 2016 ramp their adversarial term the same way); 1 when
    ``ramp_fraction`` is 0 (the paper: full weights from the first step)."""
    if ramp_fraction <= 0:
        return 1.0
    q = min(max(progress / ramp_fraction, 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-10.0 * q)) - 1.0


def weighted_total(terms: dict[str, torch.Tensor], weights: LossWeights, ramp: float = 1.0) -> torch.Tensor:
    """Weighted sum of the terms present; the ramped terms' weights are multiplied by ``ramp``."""
    w = weights.as_dict()
    return sum(w[k] * (ramp if k in RAMPED_TERMS else 1.0) * terms[k] for k in LossWeights.TERMS if k in terms)


def grl_factor(schedule: str, base: float, progress: float) -> float:
    """Constant, or the DANN ramp base * (2 / (1 + exp(-10 p)) - 1) over training progress p in [0, 1]."""
    if schedule == "dann":
        return base * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)
    return base
