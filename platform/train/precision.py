"""`train.precision` -> the autocast dtype and whether a GradScaler is needed, checked against the device.

  fp32  no autocast.
  bf16  autocast to bfloat16 (Ampere and newer; same exponent range as fp32: no loss scaling).
  fp16  autocast to float16 with a GradScaler (open_clip's "amp"): fp16 gradients underflow without it.
  auto  bf16 where the GPU has it, else fp16; fp32 on CPU.
A GPU without bf16 asked for bf16 fails here, at the phase's start, naming the setting.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Optional

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


@dataclass(frozen=True)
class Precision:
    name: str                      # the resolved setting: bf16 | fp16 | fp32
    device_type: str
    dtype: Optional[torch.dtype]   # autocast dtype, None for fp32

    @property
    def scaled(self) -> bool:
        return self.name == "fp16"

    def autocast(self) -> Callable[[], ContextManager]:
        if self.dtype is None:
            return nullcontext
        return lambda: torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> "torch.amp.GradScaler":
        """A GradScaler that is a pass-through unless fp16 (one code path for every precision)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.scaled)


def resolve_precision(requested: str, device: torch.device,
                      bf16_supported: Optional[Callable[[], bool]] = None) -> Precision:
    """`bf16_supported` defaults to torch.cuda.is_bf16_supported (injectable so CPU tests can pose as a GPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        if requested in ("bf16", "fp16"):
            raise ValueError(f"train.precision={requested}: mixed precision is for GPUs here; use auto or fp32 on CPU")
        return Precision("fp32", device.type, None)
    has_bf16 = (bf16_supported or (lambda: torch.cuda.is_bf16_supported(including_emulation=False)))()
    name = ("bf16" if has_bf16 else "fp16") if requested == "auto" else requested
    if name == "bf16" and not has_bf16:
        raise ValueError("train.precision=bf16: this GPU has no bfloat16 support; use fp16 (with loss scaling) or fp32")
    return Precision(name, device.type, DTYPES[name])
