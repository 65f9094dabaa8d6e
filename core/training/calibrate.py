"""Calibrating a trained branch: its temperature and uncertain-answer threshold fitted on the
validation split, and its calibration measured on the test split (math in model/calibration.py)."""

from __future__ import annotations

import torch

from ..model.calibration import calibration_report, fit_calibration, uncalibrated
from .evaluation import branch_outputs


def fit_branch_calibration(branch, x_val: torch.Tensor, y_val: torch.Tensor, device: torch.device) -> dict:
    """Temperature and threshold from the branch's validation outputs; temperature 1 without a
    validation split. Leaves the branch in the mode it was in (training goes on afterwards)."""
    was_training = branch.training
    out = branch_outputs(branch, x_val, device)
    branch.train(was_training)
    return fit_calibration(out["logits"], y_val) if out else uncalibrated()


def measure_test_calibration(branch, x_test: torch.Tensor, y_test: torch.Tensor, temperature: float,
                           device: torch.device) -> dict:
    """ECE before and after calibration, mean confidence and reliability bins on the test split."""
    out = branch_outputs(branch, x_test, device)
    return calibration_report(out["logits"], y_test, temperature) if out else {}
