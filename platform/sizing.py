"""Sizing plan for the data stream: how many CPU cores keep each GPU fed, how many images per second
that means, how long an epoch takes and which side is the bottleneck. Pure arithmetic (no Ray, no
torch), so `radisim train --dry-run` and docs/performance.md print the same lines.

Contract: `plan_data_stream(SizingInputs(...)) -> SizingPlan`; `SizingPlan.lines()` is the printable
plan, every figure computed from the inputs, each input labelled with where it came from
(`*_source`: "measured ..." or "assumed ..."). The rates to feed it:

- `decode_images_per_core_s`: images one core decodes + resizes + tokenizes per CPU-second in the
  Ray Data stream (`python -m benchmarks.ingest_throughput --steady`, `images_per_worker_cpu_s`);
- `fixed_cores_per_node`: what Ray's services and the driver take per node whatever the rate
  (the same benchmark's `fixed_cores`);
- `gpu_images_per_s`: one GPU's training rate in samples/s for the model and batch
  (`benchmarks/gpu_check.py` on the GPU), or `model_flops_per_sample` with a peak and an MFU.

Model of the node: each GPU has one Train worker holding `train_cores_per_gpu` cores; the data
stream's tasks get what is left. The stream must decode `images_per_s_needed` = GPUs x per-GPU
rate, with `headroom` (1.25 = 25% spare, so a slow shard or a hiccup does not starve the step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SizingInputs:
    gpus: int
    gpus_per_node: int
    cores_per_node: int
    decode_images_per_core_s: float
    pairs_per_epoch: int
    epochs: int = 1
    gpu_images_per_s: float | None = None
    model_flops_per_sample: float | None = None  # forward + backward (+ accumulation's extra forward)
    gpu_peak_flops: float | None = None          # e.g. 989e12: H200 bf16 dense
    mfu: float | None = None                     # assumed fraction of peak the step reaches
    fixed_cores_per_node: float = 0.0
    train_cores_per_gpu: float = 1.0
    headroom: float = 1.25
    decode_source: str = "given"
    gpu_source: str = "given"

    def __post_init__(self):
        for name in ("gpus", "gpus_per_node", "cores_per_node", "pairs_per_epoch", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"sizing: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("decode_images_per_core_s", "headroom"):
            if not getattr(self, name) > 0:
                raise ValueError(f"sizing: {name} must be > 0, got {getattr(self, name)}")
        if self.headroom < 1:
            raise ValueError(f"sizing: headroom must be >= 1 (1 = no spare capacity), got {self.headroom}")
        if self.fixed_cores_per_node < 0 or self.train_cores_per_gpu < 0:
            raise ValueError("sizing: fixed_cores_per_node and train_cores_per_gpu must be >= 0")
        if self.gpu_images_per_s is None:
            given = (self.model_flops_per_sample, self.gpu_peak_flops, self.mfu)
            if any(v is None or v <= 0 for v in given) or self.mfu > 1:
                raise ValueError("sizing: give gpu_images_per_s, or model_flops_per_sample, gpu_peak_flops and an mfu in (0, 1]")
        elif self.gpu_images_per_s <= 0:
            raise ValueError(f"sizing: gpu_images_per_s must be > 0, got {self.gpu_images_per_s}")


@dataclass(frozen=True)
class SizingPlan:
    inputs: SizingInputs
    gpu_images_per_s: float        # one GPU's step rate, samples/s
    images_per_s_needed: float     # the whole job, at the GPUs' rate
    cores_per_gpu_needed: float    # decode cores per GPU, with headroom
    cores_needed_total: float      # decode + training workers + fixed, all nodes
    nodes: int
    gpus_on_node: int              # GPUs used per node (fewer than gpus_per_node for a small job)
    cores_per_gpu_available: float # decode cores per GPU left on a node
    images_per_s_achieved: float   # min(GPUs' rate, what the available cores decode)
    bottleneck: str                # "GPU step" or "CPU data stream"
    epoch_s: float
    total_s: float

    def lines(self) -> list[str]:
        i = self.inputs
        gpu_src = i.gpu_source if i.gpu_images_per_s is not None else (
            f"{i.gpu_source}: {i.model_flops_per_sample / 1e9:.0f} GFLOP/sample at {i.mfu:.0%} of {i.gpu_peak_flops / 1e12:.0f} TFLOP/s")
        return [
            f"sizing: {i.gpus} GPU(s) on {self.nodes} node(s) of {i.gpus_per_node} GPUs / {i.cores_per_node} cores",
            f"  GPU step rate: {self.gpu_images_per_s:,.0f} images/s per GPU ({gpu_src})",
            f"  decode rate: {i.decode_images_per_core_s:,.0f} images/s per core ({i.decode_source})",
            f"  images/s needed: {i.gpus} x {self.gpu_images_per_s:,.0f} = {self.images_per_s_needed:,.0f}",
            f"  decode cores per GPU: {self.gpu_images_per_s:,.0f} / {i.decode_images_per_core_s:,.0f} x {i.headroom:g} headroom"
            f" = {self.cores_per_gpu_needed:.1f} (available per GPU: ({i.cores_per_node} - {i.fixed_cores_per_node:g} fixed"
            f" - {self.gpus_on_node} x {i.train_cores_per_gpu:g} train) / {self.gpus_on_node} = {self.cores_per_gpu_available:.1f})",
            f"  CPU cores needed, all nodes: {self.cores_needed_total:.0f} (decode + train workers + fixed)",
            f"  bottleneck: {self.bottleneck}; achieved {self.images_per_s_achieved:,.0f} images/s",
            f"  time per epoch: {i.pairs_per_epoch:,} / {self.images_per_s_achieved:,.0f} = {_hms(self.epoch_s)};"
            f" {i.epochs} epoch(s): {_hms(self.total_s)}",
        ]


def gpu_rate(inputs: SizingInputs) -> float:
    """Samples/s of one GPU: given, or peak x MFU / FLOPs per sample."""
    if inputs.gpu_images_per_s is not None:
        return inputs.gpu_images_per_s
    return inputs.gpu_peak_flops * inputs.mfu / inputs.model_flops_per_sample


def plan_data_stream(inputs: SizingInputs) -> SizingPlan:
    """The sizing plan for `inputs` (see the module docstring for the model of a node)."""
    per_gpu = gpu_rate(inputs)
    nodes = math.ceil(inputs.gpus / inputs.gpus_per_node)
    gpus_on_node = min(inputs.gpus, inputs.gpus_per_node)
    need_per_gpu = per_gpu / inputs.decode_images_per_core_s * inputs.headroom
    free = inputs.cores_per_node - inputs.fixed_cores_per_node - gpus_on_node * inputs.train_cores_per_gpu
    avail_per_gpu = max(0.0, free) / gpus_on_node
    decodable = avail_per_gpu * inputs.decode_images_per_core_s / inputs.headroom * inputs.gpus
    needed = per_gpu * inputs.gpus
    achieved = min(needed, decodable)
    epoch_s = inputs.pairs_per_epoch / achieved if achieved > 0 else math.inf
    return SizingPlan(
        inputs=inputs, gpu_images_per_s=per_gpu, images_per_s_needed=needed, cores_per_gpu_needed=need_per_gpu,
        cores_needed_total=inputs.gpus * (need_per_gpu + inputs.train_cores_per_gpu) + nodes * inputs.fixed_cores_per_node,
        nodes=nodes, gpus_on_node=gpus_on_node, cores_per_gpu_available=avail_per_gpu, images_per_s_achieved=achieved,
        bottleneck="GPU step" if decodable >= needed else "CPU data stream",
        epoch_s=epoch_s, total_s=epoch_s * inputs.epochs)


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "never (no decode cores left)"
    h, rem = divmod(int(round(seconds)), 3600)
    return f"{h}h{rem // 60:02d}m{rem % 60:02d}s"


@dataclass(frozen=True)
class Rates:
    """The rates and node shape a train plan's sizing section uses. Defaults: the per-core decode rate
    and fixed cores measured on the development machine (docs/performance.md; replace them with
    `benchmarks.ingest_throughput --steady` on your nodes), a typical 8-GPU, 112-core node, and no GPU
    rate (measure it with benchmarks/gpu_check.sh; or give FLOPs per sample, a peak and an MFU)."""

    decode_images_per_core_s: float = 502.0
    fixed_cores_per_node: float = 0.09
    gpus_per_node: int = 8
    cores_per_node: int = 112
    gpu_images_per_s: float | None = None
    model_flops_per_sample: float | None = None
    gpu_peak_flops: float | None = None
    mfu: float | None = None
    decode_source: str = "measured: Ray Data worker, 512 px JPEG -> 224, AMD EPYC 2 vCPU shared, 2026-12-04"
    gpu_source: str = "given"

    @classmethod
    def from_json(cls, path: str) -> "Rates":
        """Rates from a JSON object with these field names (unknown names are refused, by name)."""
        import json
        from dataclasses import fields

        data = json.loads(open(path).read())
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"sizing rates {path}: unknown field(s) {sorted(unknown)}")
        return cls(**data)


def section_for_plan(plan, rates: Rates = Rates()) -> list[str]:
    """Sizing lines for a train plan (`platform.train.plan.TrainPlan`: `gpus`, `total_samples`, read
    by attribute) under `rates`: the whole plan when the GPU rate is known, else the decode cores
    per 1,000 images/s per GPU and how to get the rate."""
    gpus = int(getattr(plan, "gpus", 0) or 0)
    per_1000 = 1000.0 / rates.decode_images_per_core_s * 1.25
    if gpus < 1:
        return [f"no GPUs in this plan; on GPUs each 1,000 images/s per GPU needs {per_1000:.1f} decode cores "
                f"({rates.decode_images_per_core_s:,.0f} images/s per core, {rates.decode_source}; 25% headroom)"]
    has_rate = rates.gpu_images_per_s is not None or None not in (rates.model_flops_per_sample, rates.gpu_peak_flops, rates.mfu)
    if not has_rate:
        return [f"GPU step rate not given: each 1,000 images/s per GPU needs {per_1000:.1f} decode cores "
                f"({rates.decode_images_per_core_s:,.0f} images/s per core, {rates.decode_source}; 25% headroom); "
                "measure the step rate with benchmarks/gpu_check.sh and pass it as sizing.Rates(gpu_images_per_s=...)"]
    inputs = SizingInputs(
        gpus=gpus, gpus_per_node=rates.gpus_per_node, cores_per_node=rates.cores_per_node,
        decode_images_per_core_s=rates.decode_images_per_core_s, pairs_per_epoch=max(1, int(plan.total_samples)),
        epochs=1, gpu_images_per_s=rates.gpu_images_per_s, model_flops_per_sample=rates.model_flops_per_sample,
        gpu_peak_flops=rates.gpu_peak_flops, mfu=rates.mfu, fixed_cores_per_node=rates.fixed_cores_per_node,
        decode_source=rates.decode_source, gpu_source=rates.gpu_source)
    lines = plan_data_stream(inputs).lines()
    # the plan's samples are all its steps: "one epoch" of the sizing is the whole curriculum
    return lines[:-1] + [lines[-1].replace("time per epoch", "time for the plan's samples").split(";")[0]]
