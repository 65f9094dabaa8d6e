"""The DisCoM-KD loss terms.

Modality targets are integer class indices 0..n-1 for CrossEntropyLoss. The authors' public code
builds them with ``ones_like``/``zeros_like`` on the logits, which CrossEntropyLoss reads as class
*probabilities* (a degenerate, non-normalised target), so its L_adv and L_mod do not train the
discriminator and modality heads as the paper describes. We implement the paper's intent.

Each term is the mean over modalities of its per-modality batch mean, so the magnitudes do not
grow with the number of modalities; the total is the weighted sum of the five terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import LossWeights


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
    """The five unweighted terms: cl, aux, adv, mod, perp."""
    sums = {k: 0.0 for k in LossWeights.TERMS}
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


def weighted_total(terms: dict[str, torch.Tensor], weights: LossWeights) -> torch.Tensor:
    w = weights.as_dict()
    return sum(w[k] * terms[k] for k in LossWeights.TERMS)


def grl_factor(schedule: str, base: float, progress: float) -> float:
    """Constant, or the DANN ramp base * (2 / (1 + exp(-10 p)) - 1) over training progress p in [0, 1]."""
    if schedule == "dann":
        import math

        return base * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)
    return base
