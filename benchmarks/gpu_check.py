"""One-GPU check of the training step: samples/s, MFU, data-wait fraction and peak memory.

Trains a bundled model (default `radisim-vit-b16`, 224 px) on phantom data for a few hundred steps with
the platform's own pieces — the Ray Data phase stream (`platform.data.pipeline.phase_dataset`), the
open_clip model factory, the loss, optimizer groups, normalisation and bf16 autocast of
`platform.train.loop` — in one process on one device, without Ray Train's worker group, so that
`torch.cuda.max_memory_allocated` and the step timings are this process's own.

    benchmarks/gpu_check.sh                                   # H200: venv, data, 300 steps, < 8 min
    python benchmarks/gpu_check.py --device cpu --model radisim-tiny --steps 2 --batch-size 8   # plumbing check

MFU = (FLOPs of one optimizer step, counted with torch.utils.flop_counter on a real step)
      x steps/s / peak. Peak defaults: H200 bf16 dense 989 TFLOP/s (cuda), 0.19 TFLOP/s (cpu, the fp32
matmul peak measured on the 2-core reference machine). Results go to stdout and, with --out, JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform as stdlib_platform
import sys
import time
from pathlib import Path

PEAK_TFLOPS = {"cuda": 989.0, "cpu": 0.19}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="radisim-vit-b16", help="bundled model config (platform/models/configs)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--steps", type=int, default=300, help="timed optimizer steps")
    p.add_argument("--warmup-steps", type=int, default=20, help="untimed steps first (CUDA init, autotune, compile)")
    p.add_argument("--batch-size", type=int, default=256, help="samples per optimizer step")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (open_clip accumulation)")
    p.add_argument("--loss", choices=["clip", "siglip"], default="clip")
    p.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default=None, help="default: bf16 on cuda, fp32 on cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (as train.compile)")
    p.add_argument("--data", choices=["ray", "synthetic"], default="ray",
                   help="ray: the platform's Ray Data phase stream; synthetic: random tensors (no input pipeline)")
    p.add_argument("--data-root", default="radisim_work/data/phantom-224")
    p.add_argument("--n-images", type=int, default=2000, help="phantom images to generate if data-root is empty")
    p.add_argument("--preprocess-cpus", type=float, default=1.0)
    p.add_argument("--num-cpus", type=int, default=None, help="logical CPUs of the local Ray (default: all)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default by device)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.precision is None:
        args.precision = "bf16" if args.device == "cuda" else "fp32"
    if args.precision in ("bf16", "fp16") and args.device != "cuda":
        p.error(f"--precision {args.precision} is for --device cuda (the platform uses bf16 autocast on GPUs only)")
    if args.peak_tflops is None:
        args.peak_tflops = PEAK_TFLOPS[args.device]
    if args.steps < 1 or args.batch_size < 2:
        p.error("--steps >= 1 and --batch-size >= 2")
    if args.grad_accum < 1 or args.batch_size % args.grad_accum or args.batch_size // args.grad_accum < 2:
        p.error("--batch-size must split into --grad-accum micro-batches of >= 2")
    return args


class Step:
    """One optimizer step exactly as platform/train/loop.py takes it on one worker: `grad_accum`
    micro-batches through the platform's open_clip accumulation (`accumulate.contrastive_step`), its
    loss (CLIP or SigLIP), fused AdamW (`build_optimizer`), precision (`resolve_precision`, GradScaler
    for fp16), channels-last image tower, grad clip 1.0 and the temperature clamp."""

    def __init__(self, model_name: str, device, precision: str, compile_model: bool, grad_accum: int = 1,
                 loss: str = "clip"):
        import torch

        from radisim.platform.models import load_clip
        from radisim.platform.train.collectives import Collectives
        from radisim.platform.train.loop import CLIP_MEAN, CLIP_STD, build_loss, build_optimizer, use_channels_last
        from radisim.platform.train.precision import resolve_precision

        torch.manual_seed(0)
        bundle = load_clip(model_name, siglip=loss == "siglip")
        self.image_size, self.context_length = bundle.image_size, bundle.context_length
        self.model = bundle.model.to(device)
        self.model.output_dict = True
        self.model.train()
        self.layout = use_channels_last(self.model)  # train.channels_last's default
        self.forward = torch.compile(self.model) if compile_model else self.model
        self.kind, self.grad_accum = loss, grad_accum
        self.loss_fn = build_loss(loss, 0, 1, True, True)
        tcfg = {"weight_decay": 0.2, "beta1": 0.9, "beta2": 0.98, "eps": 1e-6}
        self.opt = build_optimizer(self.model, 1e-4, tcfg, device)
        self.device = device
        self.precision = resolve_precision("fp32" if precision == "fp32" else precision, device)
        self.scaler = self.precision.grad_scaler()
        self.comms = Collectives(device, 1)
        self.mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)

    def __call__(self, images, text, micro_batches: int | None = None):
        """One optimizer step over `images`/`text` split into `micro_batches` (default grad_accum)."""
        import math

        import torch

        from radisim.platform.train.accumulate import MicroBatch, contrastive_step
        from radisim.platform.train.loop import normalise

        k = micro_batches or self.grad_accum
        x = normalise(images, self.mean, self.std, self.layout)
        micro = [MicroBatch(xi, ti) for xi, ti in zip(x.chunk(k), text.chunk(k))]
        out = contrastive_step(self.forward, micro, self.loss_fn, self.kind, self.comms,
                               autocast=self.precision.autocast(), backward=lambda l: self.scaler.scale(l).backward())
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, math.log(100))
        return out.loss


def count_step_flops(step: Step, images, text) -> int:
    """Model FLOPs of one training step (forward + backward of every sample once; the optimizer's
    elementwise work is not counted, as in the usual MFU definition), by torch.utils.flop_counter on
    a real step of the same samples without accumulation. The accumulation's extra no-grad forward
    (open_clip's pass 1) is overhead, not model FLOPs: it shows as a lower MFU."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step(images, text, micro_batches=1)
    return int(counter.get_total_flops())


def synthetic_batches(step: Step, batch_size: int):
    import torch

    g = torch.Generator(device="cpu").manual_seed(0)
    images = torch.randint(0, 256, (batch_size, step.image_size, step.image_size), dtype=torch.uint8, generator=g)
    text = torch.randint(1, 49000, (batch_size, step.context_length), generator=g)
    images, text = images.to(step.device), text.to(step.device)
    while True:
        yield {"image": images, "text": text}


def ray_batches(args, step: Step):
    """The platform's phase stream over the phantom manifests, epoch after epoch."""
    import ray
    import torch

    from radisim.platform.data.pipeline import phase_counts, phase_dataset, train_dir
    from radisim.platform.raysession import configure_data_context

    root = Path(args.data_root).resolve()
    if not (root / "train").is_dir():
        from radisim.curriculum.phantom import write_phantom_dataset

        t0 = time.perf_counter()
        write_phantom_dataset(root, n_train_images=args.n_images, n_eval_images=10, size=step.image_size,
                              progress=False)
        print(f"phantom data: {args.n_images} images at {step.image_size} px in {time.perf_counter() - t0:.0f}s",
              flush=True)
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}})
    configure_data_context(deterministic=False)  # throughput: no order-preserving barrier
    mix = {tag: 1.0 for tag in phase_counts(train_dir(str(root)))}  # every phase: the largest stream
    ds = phase_dataset(train_dir(str(root)), mix, step.image_size, args.model, preprocess_cpus=args.preprocess_cpus)
    while True:
        for batch in ds.iter_torch_batches(batch_size=args.batch_size, dtypes={"image": torch.uint8, "text": torch.long},
                                           device=step.device, drop_last=True, prefetch_batches=4):
            yield batch


def run(args) -> dict:
    import torch

    from radisim.platform.models import register_configs

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no GPU (use --device cpu for a plumbing check)")
    register_configs()
    device = torch.device(args.device)
    step = Step(args.model, device, args.precision, args.compile, args.grad_accum, args.loss)
    batches = ray_batches(args, step) if args.data == "ray" else synthetic_batches(step, args.batch_size)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    t_first = time.perf_counter()
    first = next(batches)
    first_batch_s = time.perf_counter() - t_first
    flops = count_step_flops(step, first["image"], first["text"])  # also the first warm-up step
    for _ in range(max(0, args.warmup_steps - 1)):
        b = next(batches)
        step(b["image"], b["text"])
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    wait = 0.0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        tw = time.perf_counter()
        b = next(batches)
        wait += time.perf_counter() - tw
        loss = step(b["image"], b["text"])
    sync()
    elapsed = time.perf_counter() - t0
    final_loss = float(loss.detach())
    steps_per_s = args.steps / elapsed
    result = {
        "model": args.model, "device": _device_name(device), "precision": args.precision, "data": args.data,
        "compile": args.compile, "batch_size": args.batch_size, "grad_accum": args.grad_accum, "loss": args.loss,
        "steps": args.steps,
        "samples_per_s": steps_per_s * args.batch_size,
        "step_ms": 1000 / steps_per_s,
        "flops_per_step": flops,
        "tflops_per_s": flops * steps_per_s / 1e12,
        "peak_tflops": args.peak_tflops,
        "mfu": flops * steps_per_s / (args.peak_tflops * 1e12),
        # time the step loop waited for the input pipeline (batches are copied to the device by
        # iter_torch_batches, so waiting includes the host-to-device copy of the next batch)
        "data_wait_frac": wait / elapsed,
        "first_batch_s": first_batch_s,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        "final_loss": final_loss,
        "versions": {"torch": torch.__version__, "python": stdlib_platform.python_version(),
                     **_versions("ray", "open_clip")},
    }
    if not math.isfinite(final_loss):
        raise SystemExit(f"error: non-finite loss {final_loss}")
    return result


def _device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else stdlib_platform.processor() or "cpu"


def _versions(*modules: str) -> dict[str, str]:
    out = {}
    for name in modules:
        try:
            out[name] = __import__(name).__version__
        except Exception:
            out[name] = "unavailable"
    return out


def report(r: dict) -> str:
    mem = f"{r['peak_memory_gib']:.1f} GiB" if r["peak_memory_gib"] is not None else "n/a (cpu)"
    return (f"{r['model']} on {r['device']} ({r['precision']}, {r['loss']}, batch {r['batch_size']} = "
            f"{r['grad_accum']} x {r['batch_size'] // r['grad_accum']}, {r['steps']} steps, data={r['data']}, "
            f"compile={r['compile']}):\n"
            f"  samples/s        {r['samples_per_s']:.1f}\n"
            f"  step             {r['step_ms']:.1f} ms\n"
            f"  FLOPs/step       {r['flops_per_step'] / 1e12:.3f} TFLOP (flop_counter, fwd+bwd)\n"
            f"  achieved         {r['tflops_per_s']:.2f} TFLOP/s\n"
            f"  MFU              {r['mfu']:.1%} of {r['peak_tflops']:g} TFLOP/s\n"
            f"  data-wait        {r['data_wait_frac']:.1%} of step time (first batch {r['first_batch_s']:.1f}s)\n"
            f"  peak memory      {mem} (torch.cuda.max_memory_allocated)\n"
            f"  final loss       {r['final_loss']:.3f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    result = run(args)
    print(report(result), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
