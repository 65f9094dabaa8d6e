"""The baselines' own model pieces: Hinton's knowledge distillation and decoupled KD (DKD) losses,
hand-checked in tests/test_baselines.py, and the multimodal teacher network KD and DKD learn from.

Their training is :mod:`discomkd.training.baselines`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .networks import ModalityModuleDict, build_backbone


def kd_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al. 2015: KL(softmax(t/T) || softmax(s/T)) * T^2, averaged over the batch."""
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    return kl.mean() * t * t


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)."""
    ce = F.cross_entropy(student_logits.float(), labels)
    return alpha * kd_divergence(student_logits, teacher_logits, temperature) + (1.0 - alpha) * ce


def dkd_terms(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float = 4.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoupled KD (Zhao et al., CVPR 2022), each term already multiplied by T^2 and batch-averaged.

    TCKD = KL(b_T || b_S), b = [p_target, 1 - p_target] (binary target vs. all non-targets);
    NCKD = KL(p^_T || p^_S), p^ = softmax over the non-target classes only.
    Classic KD equals TCKD + (1 - p_target^T) * NCKD (the paper's Eq. 7), which the tests check.
    """
    t = float(temperature)
    s = student_logits.float() / t
    te = teacher_logits.float() / t
    target = F.one_hot(labels, s.shape[1]).bool()
    p_s, p_t = F.softmax(s, dim=1), F.softmax(te, dim=1)
    eps = 1e-12
    pt_s = p_s[target].clamp(eps, 1 - eps)
    pt_t = p_t[target].clamp(eps, 1 - eps)
    tckd = pt_t * (pt_t.log() - pt_s.log()) + (1 - pt_t) * ((1 - pt_t).log() - (1 - pt_s).log())
    # Non-target distributions: mask the target logit with a large negative value before softmax.
    masked_s = s.masked_fill(target, -1e9)
    masked_t = te.masked_fill(target, -1e9)
    log_q_s = F.log_softmax(masked_s, dim=1)
    log_q_t = F.log_softmax(masked_t, dim=1)
    q_t = log_q_t.exp()
    nckd = (q_t * (log_q_t - log_q_s)).masked_fill(target, 0.0).sum(dim=1)
    return tckd.mean() * t * t, nckd.mean() * t * t


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
    warmup: float = 1.0,
) -> torch.Tensor:
    """CE + warmup * (alpha * TCKD + beta * NCKD), as in the authors' training recipe."""
    tckd, nckd = dkd_terms(student_logits, teacher_logits, labels, temperature)
    return F.cross_entropy(student_logits.float(), labels) + warmup * (alpha * tckd + beta * nckd)


class MultimodalTeacher(nn.Module):
    """One encoder per modality, features concatenated, one linear head (sees every modality)."""

    def __init__(self, names: list[str], input_shapes: dict[str, tuple[int, ...]], backbones: dict[str, str],
                 feature_dim: int, n_classes: int) -> None:
        super().__init__()
        self.names = list(names)
        self.encoders = ModalityModuleDict({n: build_backbone(backbones[n], input_shapes[n], feature_dim) for n in names})
        self.head = nn.Linear(feature_dim * len(names), n_classes)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([self.encoders[n](inputs[n]) for n in self.names], dim=1))
