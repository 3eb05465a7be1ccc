"""The one door to `torch.distributed` for the training loop: every collective the platform issues
itself goes through `Collectives`, which checks that the tensor lives on the rank's device.

Why: with `use_gpu` Ray Train's process group is NCCL, which reduces CUDA tensors only; gloo (the CPU
test suite) accepts CPU and CUDA tensors alike, so a CPU tensor in a collective passes every CPU test and
fails the first multi-GPU step. The check is on whenever the backend is NCCL, and on CPU when
`strict=True` or `$RADISIM_STRICT_COLLECTIVES=1` (the tests switch it on), so that the suite sees the
same mistake the GPU would. Collectives inside libraries (DDP's bucket all-reduce, open_clip's feature
all-gather) run on tensors the model produced, so they are on the device by construction.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Optional

import torch

STRICT_ENV = "RADISIM_STRICT_COLLECTIVES"


class CollectiveDeviceError(RuntimeError):
    """A tensor handed to a collective is not on the rank's device (NCCL would fail or hang)."""


def _backend() -> Optional[str]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return str(dist.get_backend())
    return None


class Collectives:
    """Collectives of one rank. `backend` None: the initialised process group's (None without one)."""

    def __init__(self, device: torch.device, world: int, backend: Optional[str] = None, strict: Optional[bool] = None):
        self.device = torch.device(device)
        self.world = world
        self.backend = backend if backend is not None else _backend()
        env_strict = os.environ.get(STRICT_ENV, "") not in ("", "0")
        self.strict = bool(strict) if strict is not None else env_strict

    @property
    def checks_device(self) -> bool:
        return self.strict or (self.backend or "").lower() == "nccl"

    def check(self, tensor: torch.Tensor, what: str = "tensor") -> torch.Tensor:
        """`tensor`, after asserting it may enter a collective on this rank."""
        if not self.checks_device:
            return tensor
        if (self.backend or "").lower() == "nccl" and tensor.device.type != "cuda":
            raise CollectiveDeviceError(f"{what} on {tensor.device} handed to an NCCL collective: NCCL reduces "
                                        f"CUDA tensors only (the rank's device is {self.device})")
        if tensor.device != self.device:
            raise CollectiveDeviceError(f"{what} on {tensor.device} handed to a collective; the rank's device is "
                                        f"{self.device}")
        return tensor

    def all_reduce(self, tensor: torch.Tensor, op=None, what: str = "tensor") -> torch.Tensor:
        """In-place sum (or `op`) over ranks; a no-op for one rank."""
        self.check(tensor, what)
        if self.world > 1:
            torch.distributed.all_reduce(tensor, op=op or torch.distributed.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool | torch.Tensor) -> bool:
        """True on every rank if `flag` is True on any: all ranks must take the same branch at a barrier.
        A tensor flag stays on the device (one sync, at the `.item()` below)."""
        t = flag.to(self.device, torch.float32).reshape(1) if torch.is_tensor(flag) else \
            torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(self.all_reduce(t, what="any-rank flag").item() > 0)


@contextmanager
def no_sync(model: torch.nn.Module, skip: bool) -> Iterator[None]:
    """DDP's `no_sync()` when `skip` (no gradient all-reduce for this backward), else nothing: the
    micro-steps of an accumulated step but the last one."""
    ctx = getattr(model, "no_sync", None)
    if skip and ctx is not None:
        with ctx():
            yield
    else:
        yield
