"""Every collective of the loop goes through `Collectives`, which refuses a tensor off the rank's device
under NCCL (simulated here: the backend is named, no GPU needed) and in strict mode on CPU."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from radisim.platform.train import collectives
from radisim.platform.train.collectives import CollectiveDeviceError, Collectives

TRAIN = Path(collectives.__file__).parent


def test_a_cpu_tensor_in_an_nccl_collective_fails():
    nccl = Collectives(torch.device("cuda", 0), world=2, backend="nccl")
    with pytest.raises(CollectiveDeviceError, match="NCCL reduces CUDA tensors only"):
        nccl.all_reduce(torch.zeros(1))
    with pytest.raises(CollectiveDeviceError, match="NCCL"):
        Collectives(torch.device("cpu"), world=2, backend="nccl").check(torch.zeros(1))


def test_strict_mode_checks_the_device_on_cpu_and_gloo_alone_does_not(monkeypatch):
    monkeypatch.delenv(collectives.STRICT_ENV, raising=False)
    assert not Collectives(torch.device("cpu"), 2, backend="gloo").checks_device
    strict = Collectives(torch.device("cuda", 0), 2, backend="gloo", strict=True)
    with pytest.raises(CollectiveDeviceError, match="rank's device is cuda:0"):
        strict.check(torch.zeros(1))
    monkeypatch.setenv(collectives.STRICT_ENV, "1")
    assert Collectives(torch.device("cpu"), 2, backend="gloo").checks_device


def test_any_rank_builds_its_flag_on_the_rank_device(monkeypatch):
    """The old `_any_rank` all-reduced a CPU tensor: the flag must be made on the device."""
    seen = []
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t, op=None: seen.append(t.device))
    comms = Collectives(torch.device("meta"), world=2, backend="gloo", strict=True)
    with pytest.raises(RuntimeError, match="meta"):  # meta tensors have no value to read: the check has passed
        comms.any(True)
    assert seen == [torch.device("meta")]
    cpu = Collectives(torch.device("cpu"), world=2, backend="gloo", strict=True)
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t, op=None: t.add_(1))
    assert cpu.any(False) and cpu.any(torch.tensor(False))  # another rank said yes (the +1)
    assert Collectives(torch.device("cpu"), world=1).any(True) is True


def test_no_module_of_the_train_package_calls_torch_distributed_itself():
    """The one door: only collectives.py touches torch.distributed's collectives."""
    calls = {"all_reduce", "all_gather", "broadcast", "reduce", "barrier", "all_gather_object", "reduce_scatter"}
    offenders = []
    for path in TRAIN.glob("*.py"):
        if path.name == "collectives.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in calls and "distributed" in ast.unparse(node.value):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
