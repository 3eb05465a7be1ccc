"""CPU FLOP utilisation: FLOPs of one training step of a model (torch.utils.flop_counter) and this
machine's fp32 matmul peak, measured with the same thread count in the same run.

    python -m benchmarks.flops --threads 1 --batch 64

FlopCounterMode has no formula for the CPU attention kernel (`_scaled_dot_product_flash_attention_for_cpu`
and its backward); `count_step_flops` registers one (the same count as the CUDA SDPA kernels), so the
attention FLOPs are not silently dropped.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

_SDPA_REGISTERED = False


def _register_cpu_sdpa() -> None:
    """Count the CPU flash-attention kernel like the CUDA ones (4*B*H*L*S*D forward, 2.5x that backward)."""
    global _SDPA_REGISTERED
    if _SDPA_REGISTERED:
        return
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is not None and fwd.default not in fc.flop_registry:
        @fc.register_flop_formula(fwd)
        def _fwd(query, key, value, *args, out_shape=None, **kwargs) -> int:
            return fc.sdpa_flop_count(query, key, value)  # shapes: the registry passes shapes

    if bwd is not None and bwd.default not in fc.flop_registry:
        @fc.register_flop_formula(bwd)
        def _bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
            return fc.sdpa_backward_flop_count(grad_out, query, key, value)

    _SDPA_REGISTERED = True


def count_flops(fn) -> tuple[int, dict[str, int]]:
    """Total FLOPs of `fn()` and the count per aten op."""
    from torch.utils.flop_counter import FlopCounterMode

    _register_cpu_sdpa()
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    per_op = {str(op).replace("aten.", ""): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), per_op


def matmul_peak(threads: int, n: int = 1024, seconds: float = 2.0, repeats: int = 3) -> dict[str, float]:
    """fp32 [n, n] @ [n, n] rate in FLOP/s, best of `repeats` bursts of ~`seconds` / repeats each:
    `wall` per second of wall time and, for one thread, `cpu` per second of the calling thread's CPU
    time (with 1 thread torch runs the GEMM on the caller). Best-of: the machine is shared, and a peak
    is what the hardware does when it gets the core. On a loaded machine `cpu` is the robust figure."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)
        best = {"wall": 0.0, "cpu": 0.0}
        for _ in range(repeats):
            k, t0, c0 = 0, time.perf_counter(), time.thread_time()
            while time.perf_counter() - t0 < seconds / repeats:
                torch.mm(a, b, out=out)
                k += 1
            wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
            best["wall"] = max(best["wall"], 2 * n**3 * k / wall)
            if threads == 1:
                best["cpu"] = max(best["cpu"], 2 * n**3 * k / max(cpu, 1e-9))
        return best
    finally:
        torch.set_num_threads(old)


def main(argv=None) -> int:
    from benchmarks.train_overhead import TrainStep

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="radisim-tiny")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    step = TrainStep(args.model, args.threads)
    images, text = step.synthetic_batch(args.batch)
    flops, per_op = count_flops(lambda: step(images, text))
    print(json.dumps({"flops_per_step": flops, "per_op": per_op,
                      "matmul_peak_flops": matmul_peak(args.threads)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
