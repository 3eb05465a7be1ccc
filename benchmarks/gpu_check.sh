#!/usr/bin/env bash
# GPU check, one command that fits one H200's 15-minute window (~10 min of work; each part has a timeout):
#   1. the training step (benchmarks/gpu_check.py): radisim-vit-b16 at 224 px, bf16, torch.compile, fused
#      AdamW, channels-last, SigLIP, open_clip accumulation 2 x 128, on the platform's Ray Data stream
#      (prefetched to the device); prints samples/s, MFU (flop_counter model FLOPs / 989 TFLOP/s H200
#      bf16 dense), data-wait fraction and peak memory;
#   2. the real train job (benchmarks/gpu_check_fit.py): one use_gpu Ray Train worker (NCCL process
#      group), bf16, accumulation, two SigLIP phases, checkpoints, stopped mid-phase and resumed, then
#      the zero-shot evaluation; prints each phase's logged samples/s and data-wait;
#   3. JPEG decode (benchmarks/device_decode.py): images/s with host (PIL) decode vs device (nvJPEG)
#      decode + resize.
# Results: benchmarks/results/gpu_check_<model>_<gpu>_<date>.json and <work>/gpu_check_fit.json.
#
#   benchmarks/gpu_check.sh                                  # all three parts
#   STEPS=100 benchmarks/gpu_check.sh --batch-size 128       # extra args go to gpu_check.py (part 1)
set -euo pipefail
cd "$(dirname "$0")/.."

make install >/dev/null   # .venv with the pinned torch/Ray/open_clip; a no-op when installed
PY=.venv/bin/python
"$PY" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device (run on a GPU machine; CPU plumbing check: "
             "python benchmarks/gpu_check.py --device cpu --model radisim-tiny --steps 2 --batch-size 8)")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
      f"bf16 {torch.cuda.is_bf16_supported(including_emulation=False)}")
PY
GPU=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-'))")
OUT="benchmarks/results/gpu_check_radisim-vit-b16_${GPU}_$(date +%Y-%m-%d).json"
DATA=radisim_work/data/phantom-224
echo "== 1/3 training step: compile, bf16, SigLIP, accumulation 2 x 128 =="
timeout 240 "$PY" benchmarks/gpu_check.py --device cuda --model radisim-vit-b16 \
    --steps "${STEPS:-200}" --warmup-steps 20 --batch-size 256 --grad-accum 2 --loss siglip --precision bf16 \
    --compile --data-root "$DATA" --n-images 1500 --out "$OUT" "$@"
echo "== 2/3 train job: 1 use_gpu worker (NCCL), bf16, accumulation, SigLIP, checkpoint, resume, evaluation =="
timeout 480 "$PY" benchmarks/gpu_check_fit.py --device cuda --model radisim-vit-b16 \
    --n-images 600 --steps 60 --checkpoint-every 20 --batch-size 128 --grad-accum 2 --timeout 210 \
    --work radisim_work/gpu_check_fit
echo "== 3/3 JPEG decode: host vs device =="
timeout 60 "$PY" benchmarks/device_decode.py --device cuda --images 4096 --batch 256 \
    --out "benchmarks/results/device_decode_${GPU}_$(date +%Y-%m-%d).json"
