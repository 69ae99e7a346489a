#!/usr/bin/env bash
# After stage 2: export the bundled model (fp16), render the examples' videos, evaluate, benchmark.
# Usage: bash scripts/finish_bundled_model.sh [STAGE2_MODEL] [EVAL_COUNT] [EVAL_STEPS] [AUTOENCODER] [TRAJ_GUIDANCE]
# AUTOENCODER: a model file whose autoencoder replaces the run's (a decoder-only fine-tune of the
# same encoder, so the diffusion weights stay valid). TRAJ_GUIDANCE: the model's default trajectory
# guidance scale (choose it on validation seeds, scripts/guidance_sweep.py, never on the test seeds).
set -euo pipefail
src=${1:-runs/small_stage2/model.safetensors}
count=${2:-100}
steps=${3:-20}
ae=${4:-}
traj_guidance=${5:-}
python - "$src" "$ae" "$traj_guidance" <<'PY'
import sys
from dragnuwa.models.dragnuwa import load_model, save_model
from dragnuwa.pipeline import BUNDLED_MODEL
from dragnuwa.training.checkpoint import load_weights_into
model = load_model(sys.argv[1])
if sys.argv[2]:
    load_weights_into(model, sys.argv[2], prefix="autoencoder.")
if sys.argv[3]:
    model.cfg.traj_guidance = float(sys.argv[3])
save_model(BUNDLED_MODEL, model, half=True, extra={"source": sys.argv[1], "autoencoder": sys.argv[2] or sys.argv[1]})
print(BUNDLED_MODEL, round(BUNDLED_MODEL.stat().st_size / 2**20, 1), "MB")
PY
mkdir -p examples
for name in demo multi_object anchor curved_path camera_pan; do
  ex=dragnuwa/assets/examples/$name
  dragnuwa generate --image $ex/image.png --tracks $ex/tracks.json --text "$(cat $ex/prompt.txt)" \
    --out examples/$name.mp4 --overlay examples/${name}_tracks.mp4
done
dragnuwa evaluate --count "$count" --steps "$steps" --out-dir docs/eval
python benchmarks/bench_generate.py --repeat 3
