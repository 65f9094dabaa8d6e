"""Calibrating a trained branch: its temperature and uncertain-answer threshold fitted on the
validation split (math in model/calibration.py; the test split is measured where the run finishes)."""

from __future__ import annotations

import torch

from ..model.calibration import fit_calibration, uncalibrated
from .evaluation import branch_outputs


def fit_branch_calibration(branch, x_val: torch.Tensor, y_val: torch.Tensor, device: torch.device) -> dict:
    """Temperature and threshold from the branch's validation outputs; temperature 1 without a
    validation split. Leaves the branch in the mode it was in (training goes on afterwards)."""
    was_training = branch.training
    out = branch_outputs(branch, x_val, device)
    branch.train(was_training)
    return fit_calibration(out["logits"], y_val) if out else uncalibrated()
