#!/usr/bin/env bash
# GPU check of the guidance cost at full size (random weights, no download), one JSON out.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]      (default: runs/gpu_check)
#
# 1. bench_step.py in fp16 and bf16 (models built once on the GPU, then cast): audio (8 s),
#    video 16 frames at 256x256 and 512x512, joint; vanilla step, guided step with the VAE,
#    guided step with the guidance decoder, and for audio and joint with the guidance decoder
#    and a 3-block audio guidance encoder; ratios, peak GPU memory per variant.
# 2. bench_run.py: a whole V2A of 8 s at 30 steps (the paper's), vanilla / guided /
#    guided with the guidance decoder / with the decoder and the encoder, end to end, fp16.
# Writes OUT_DIR/gpu_check.json (both parts, the GPU's name, torch version, wall times).
# Sized for < 8 minutes on one H100; each part has its own time limit.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device')"

t0=$(date +%s)
timeout 300 "$PY" benchmarks/bench_step.py --device cuda --dtype fp16,bf16 \
  --cases audio,video256,video512,joint --repeats 3 --json "$OUT/step.json" 2>&1 | tee "$OUT/step.log"
t1=$(date +%s)
timeout 150 "$PY" benchmarks/bench_run.py --device cuda --dtype fp16 --tasks v2a --steps 30 \
  --v2a-seconds 8 --json "$OUT/run_v2a.json" 2>&1 | tee "$OUT/run_v2a.log"
t2=$(date +%s)

"$PY" - "$OUT" "$((t1 - t0))" "$((t2 - t1))" <<'PYEOF'
import json, sys, torch
out, step_wall, run_wall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
doc = {
    "gpu": torch.cuda.get_device_name(0),
    "torch": torch.__version__,
    "step": json.load(open(f"{out}/step.json")),
    "run_v2a_8s_30_steps_fp16": json.load(open(f"{out}/run_v2a.json")),
    "wall_s": {"step": step_wall, "run_v2a": run_wall},
}
json.dump(doc, open(f"{out}/gpu_check.json", "w"), indent=1)
print(f"wrote {out}/gpu_check.json")
PYEOF
