"""How a training step computes fastest on this machine: its memory layout and precision.

Layout.  channels_last speeds up MobileNetV2 on CPU (1.6x) and bfloat16 ResNet-18; float32 ResNet-18 is a draw:
`CPU_LAYOUT` is the table measured here (docs/PERFORMANCE.md has the numbers and `scripts/calibrate_speed.py`
re-measures it on another CPU).  The layout is a function of (backbone, precision) only, never of a timing taken at
run time, so one run id always computes in one layout.  The layout applies to the weights and to the inputs
(`FeatureExtractor.input_layout`): a CPU convolution computes channels-last when either is, so the weights alone do
not decide.

Precision.  bfloat16 autocast on CPU is a budget setting (`Budget.bf16`), part of the comparison key, because it
changes numbers; a budget that asks for it is refused on a CPU without native bfloat16 (AVX-512 BF16 or AMX).

What a step costs here, and the wall-time estimate of a plan, are `estimate`'s.
"""

from __future__ import annotations

from typing import Any

import torch

from fairfacebench.provenance import cpu_info

# (backbone, precision) -> the memory layout a CPU step is fastest in; measured on this project's reference machine
# (AMD EPYC, AVX-512 BF16, no AMX), one thread, batch 64 at 64 px (docs/PERFORMANCE.md).  Backbones not listed
# (timm models) train channels_last.
CPU_LAYOUT: dict[tuple[str, str], str] = {
    ("mobilenet_v2", "fp32"): "channels_last",
    ("mobilenet_v2", "bf16"): "channels_last",
    ("resnet18", "fp32"): "channels_last",  # what the harness always computed (its inputs); the two layouts are
    # within run-to-run variation here (656 vs 693 ms in issue 24, 705 vs 651 ms on 2026-12-04)
    ("resnet18", "bf16"): "channels_last",
}
LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs that compute bfloat16 natively


def precision(budget: Any, device: torch.device | str) -> str:
    """'fp16' (CUDA amp), 'bf16' (CPU autocast) or 'fp32': how a budget computes on a device."""
    kind = torch.device(device).type
    if kind == "cuda":
        return "fp16" if budget.amp else "fp32"
    return "bf16" if getattr(budget, "bf16", None) else "fp32"


def memory_format(backbone: str, precision_name: str, device: torch.device | str) -> torch.memory_format:
    """The layout a backbone trains in: channels_last on GPUs, the measured table on CPUs."""
    if torch.device(device).type == "cuda":
        return torch.channels_last
    return LAYOUTS[CPU_LAYOUT.get((backbone, precision_name), "channels_last")]


def bf16_native() -> bool:
    """Whether this CPU computes bfloat16 natively (otherwise autocast emulates it, slower than float32)."""
    return any(flag in cpu_info()["cpu_flags"] for flag in BF16_FLAGS)


def autocast(precision_name: str, device: torch.device | str):
    """The autocast context of a precision on a device (a no-op for fp32)."""
    kind = torch.device(device).type
    if precision_name == "fp16" and kind == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    if precision_name == "bf16" and kind == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast(kind, enabled=False)
