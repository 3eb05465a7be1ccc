#!/usr/bin/env bash
# GPU check of the training step, one command, < 8 minutes on one H200:
#   creates/uses .venv (make install), generates phantom data at 224 px (2000 images, once),
#   trains radisim-vit-b16 for 300 steps (after 20 warm-up steps) with bf16 autocast on the platform's
#   Ray Data stream, and prints samples/s, MFU (flop_counter FLOPs / 989 TFLOP/s H200 bf16 dense),
#   data-wait fraction and peak memory. Writes benchmarks/results/gpu_check_<model>_<gpu>_<date>.json.
#
#   benchmarks/gpu_check.sh                       # defaults
#   STEPS=100 benchmarks/gpu_check.sh --batch-size 128 --data synthetic   # extra args go to gpu_check.py
set -euo pipefail
cd "$(dirname "$0")/.."

make install >/dev/null   # .venv with the pinned torch/Ray/open_clip; a no-op when installed
PY=.venv/bin/python
"$PY" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device (run on a GPU machine; CPU plumbing check: "
             "python benchmarks/gpu_check.py --device cpu --model radisim-tiny --steps 2 --batch-size 8)")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
PY
GPU=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-'))")
OUT="benchmarks/results/gpu_check_radisim-vit-b16_${GPU}_$(date +%Y-%m-%d).json"
exec timeout 480 "$PY" benchmarks/gpu_check.py --device cuda --model radisim-vit-b16 \
    --steps "${STEPS:-300}" --warmup-steps 20 --batch-size 256 --precision bf16 \
    --data-root radisim_work/data/phantom-224 --n-images 2000 --out "$OUT" "$@"
