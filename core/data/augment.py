"""Batched augmentation on tensors (no per-sample Python on the hot path).

- ``shift``: random translation by up to ~10% of each spatial size, zero-filled (zero is the
  training mean after standardisation). Keeps digits and spectrograms meaningful.
- ``time_shift``: the same along the last axis only (time in spectrograms and signals), so
  that a spoken word may start earlier or later without its pitch moving.
- ``flips_rot90``: the paper's random horizontal/vertical flips and 90-degree rotations, which suit
  overhead imagery (satellite patches) but change the meaning of digits and spectrograms.
"""

from __future__ import annotations

import torch


def _random_shift(x: torch.Tensor, generator: torch.Generator, time_only: bool = False) -> torch.Tensor:
    spatial = x.shape[2:]
    pads = [max(1, round(0.1 * s)) for s in spatial]
    if time_only and len(spatial) == 2:
        pads[0] = 0
    b = x.shape[0]
    device = x.device
    if len(spatial) == 1:
        (p,) = pads
        padded = torch.nn.functional.pad(x, (p, p))
        offsets = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(device)
        cols = offsets[:, None] + torch.arange(spatial[0], device=device)[None]
        return padded.gather(2, cols[:, None, :].expand(-1, x.shape[1], -1))
    ph, pw = pads
    h, w = spatial
    padded = torch.nn.functional.pad(x, (pw, pw, ph, ph))
    dy = torch.randint(0, 2 * ph + 1, (b,), generator=generator).to(device)
    dx = torch.randint(0, 2 * pw + 1, (b,), generator=generator).to(device)
    rows = dy[:, None] + torch.arange(h, device=device)[None]  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=device)[None]  # (B, W)
    batch = torch.arange(b, device=device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def _random_flips_rot90(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    shape = (b,) + (1,) * (x.ndim - 1)
    draws = torch.rand(b, 2, generator=generator).to(x.device)
    x = torch.where((draws[:, 0] < 0.5).view(shape), x.flip(-1), x)
    if x.ndim == 4:
        x = torch.where((draws[:, 1] < 0.5).view(shape), x.flip(-2), x)
        if x.shape[-1] == x.shape[-2]:
            k = torch.randint(0, 4, (b,), generator=generator).to(x.device).view(shape)
            rotated = [x] + [torch.rot90(x, r, dims=(-2, -1)) for r in (1, 2, 3)]
            out = rotated[0]
            for r in (1, 2, 3):
                out = torch.where(k == r, rotated[r], out)
            x = out
    return x


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Apply the modality's augmentation to a whole batch (N, C, ...)."""
    if mode == "none":
        return x
    if mode in ("flips_rot90", "flips_rot90_shift"):
        x = _random_flips_rot90(x, generator)
    if mode in ("shift", "flips_rot90_shift"):
        x = _random_shift(x, generator)
    elif mode == "time_shift":
        x = _random_shift(x, generator, time_only=True)
    return x
