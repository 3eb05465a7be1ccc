"""Images/s of the two decode paths for JPEG rows: host (`pipeline.decode_gray`, PIL, one process on
one core, as a Ray Data preprocess task runs it) vs device (`pipeline.preprocess_encoded` on the host,
then `pipeline.device_decode` on `--device`: nvJPEG batched decode + antialiased resize on a GPU).

    python benchmarks/device_decode.py --device cuda --images 2048 --batch 256 --out device_decode.json

Both paths decode the same JPEGs (phantom images of `--src-size` px at quality 90) to the same
`--image-size`, and the device output is checked against the host output (mean absolute difference
in grey levels) before a rate is printed. Host figures are per CPU-second of the decoding thread
(per core; robust to other load) and per wall second; device figures per wall second after
`--warmup` batches, with the host-side packing's CPU per image beside them: that is what the data
stream's cores still pay per image when the GPU decodes.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def make_jpegs(n: int, src_size: int, quality: int = 90, unique: int = 32) -> list[bytes]:
    from PIL import Image

    from radisim.curriculum.phantom import generate_case

    pool = []
    for i in range(min(n, unique)):
        buf = io.BytesIO()
        Image.fromarray(generate_case(0, i, src_size).image, mode="L").save(buf, format="JPEG", quality=quality)
        pool.append(buf.getvalue())
    return [pool[i % len(pool)] for i in range(n)]


def host_decode(jpegs: list[bytes], image_size: int) -> dict:
    from radisim.platform.data.pipeline import decode_gray

    t0, c0 = time.perf_counter(), time.thread_time()
    out = np.stack([decode_gray(j, image_size) for j in jpegs])
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    return {"images": len(jpegs), "images_per_s": len(jpegs) / wall, "images_per_cpu_s": len(jpegs) / cpu,
            "pixels": out}


def device_decode_rate(jpegs: list[bytes], image_size: int, device: str, batch: int, warmup: int) -> dict:
    import torch

    from radisim.platform.data.pipeline import _tokenizer, device_decode, preprocess_encoded

    _tokenizer("radisim-tiny")  # loaded once per worker process in the pipeline: not per-image work
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rows = {"image_id": np.array([str(i) for i in range(len(jpegs))], dtype=object),
            "image": np.array(jpegs, dtype=object), "caption": np.array(["a chest radiograph"] * len(jpegs), dtype=object)}
    c0 = time.thread_time()
    packed = [preprocess_encoded({k: v[s:s + batch] for k, v in rows.items()}, image_size, "radisim-tiny")
              for s in range(0, len(jpegs), batch)]
    pack_cpu = time.thread_time() - c0
    pin = dev.type == "cuda"
    host = [{k: (torch.from_numpy(v).pin_memory() if pin else torch.from_numpy(v)) for k, v in b.items()} for b in packed]
    outs = []
    for b in host[:warmup]:
        device_decode(b, image_size, dev)
    sync()
    t0 = time.perf_counter()
    for b in host[warmup:]:
        outs.append(device_decode(b, image_size, dev))
    sync()
    wall = time.perf_counter() - t0
    n = sum(len(o) for o in outs)
    pixels = torch.cat([device_decode(b, image_size, dev) for b in host[:warmup]] + outs).cpu().numpy()
    return {"images": n, "images_per_s": n / max(wall, 1e-9), "host_pack_cpu_ms_per_image": pack_cpu / len(jpegs) * 1e3,
            "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "pixels": pixels}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--warmup", type=int, default=1, help="device batches before the clock starts")
    p.add_argument("--src-size", type=int, default=512)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--out", default="device_decode.json")
    args = p.parse_args(argv)
    if args.images <= args.warmup * args.batch:
        p.error(f"--images {args.images} leaves nothing to time after --warmup {args.warmup} x --batch {args.batch}")
    return args


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(1)
    jpegs = make_jpegs(args.images, args.src_size)
    host = host_decode(jpegs, args.image_size)
    dev = device_decode_rate(jpegs, args.image_size, args.device, args.batch, args.warmup)
    diff = np.abs(host.pop("pixels").astype(np.int16) - dev.pop("pixels").astype(np.int16))
    result = {"host": host, "device": dev, "src_size": args.src_size, "image_size": args.image_size,
              "batch": args.batch, "mean_abs_diff_grey_levels": float(diff.mean()), "max_abs_diff_grey_levels": int(diff.max()),
              "device_over_host_core": dev["images_per_s"] / host["images_per_cpu_s"],
              "versions": {"torch": torch.__version__, "python": sys.version.split()[0]},
              "load_1min": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d")}
    if result["mean_abs_diff_grey_levels"] > 1.0:
        raise SystemExit(f"device decode differs from host decode by {result['mean_abs_diff_grey_levels']:.2f} grey "
                         f"levels on average: not the same images, no rate printed")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"host decode (PIL, 1 core): {host['images_per_cpu_s']:.0f} images/CPU-s ({host['images_per_s']:.0f}/s wall); "
          f"device decode on {dev['device_name']}: {dev['images_per_s']:.0f} images/s "
          f"(= {result['device_over_host_core']:.1f} host cores; host packing {dev['host_pack_cpu_ms_per_image']:.3f} ms "
          f"CPU/image); mean |diff| {result['mean_abs_diff_grey_levels']:.2f} grey levels; load {result['load_1min']:.1f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
