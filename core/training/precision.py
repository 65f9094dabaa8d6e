"""How training steps run on the device: memory layout and reduced precision, one rule for the
DisCoM-KD trainer and every baseline (so that their comparisons, and the trainer's L_cl-only control
against the student alone, stay exact)."""

from __future__ import annotations

import functools

import torch
from torch import nn


@functools.cache  # the CPU does not change; baselines ask at every step
def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX on x86, read from Linux's
    /proc/cpuinfo): there oneDNN's bfloat16 convolutions train the compact CNN about 1.5 times faster
    than float32 (issue 18); on other CPUs bfloat16 is emulated and slower, so False, as it is where
    the flags cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def autocast_dtype(device: torch.device, mixed_precision: bool) -> torch.dtype | None:
    """The dtype training steps autocast to, None for float32: with ``mixed_precision``, bfloat16 on a
    GPU that has it (else float16, with a gradient scaler) and on a CPU that computes it natively."""
    if not mixed_precision:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bfloat16():
        return torch.bfloat16
    return None


def training_layout(model: nn.Module) -> nn.Module:
    """The model with its 4-D weights channels-last (oneDNN's preferred layout): the 2-D encoders'
    convolutions, batch norms and poolings train about 1.4 times faster on a CPU (issue 18). Other
    weights are unchanged, and saved weights load into models of either layout."""
    return model.to(memory_format=torch.channels_last)
