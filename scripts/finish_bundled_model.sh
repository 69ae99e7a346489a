#!/usr/bin/env bash
# After stage 2: export the bundled model (fp16), render the examples' videos, evaluate, benchmark.
# Usage: bash scripts/finish_bundled_model.sh [STAGE2_MODEL] [EVAL_COUNT] [EVAL_STEPS] [AUTOENCODER] [TRAJ_GUIDANCE] [MOTION_INIT]
# AUTOENCODER: a model file whose autoencoder replaces the run's (a decoder-only fine-tune of the
# same encoder, so the diffusion weights stay valid). TRAJ_GUIDANCE: the model's default trajectory
# guidance scale, MOTION_INIT its default sampler start from the cut-and-paste animation (0 = off);
# choose both on validation seeds (scripts/guidance_sweep.py), never on the test seeds.
set -euo pipefail
src=${1:-runs/small_stage2/model.safetensors}
count=${2:-100}
steps=${3:-20}
ae=${4:-}
traj_guidance=${5:-}
motion_init=${6:-}
python scripts/export_model.py "$src" ${ae:+--autoencoder "$ae"} ${traj_guidance:+--traj-guidance "$traj_guidance"} \
  ${motion_init:+--motion-init "$motion_init"}
mkdir -p examples
for name in demo multi_object anchor curved_path camera_pan brush; do
  ex=dragnuwa/assets/examples/$name
  brush=()
  [ -f $ex/brush.png ] && brush=(--brush $ex/brush.png)
  dragnuwa generate --image $ex/image.png --tracks $ex/tracks.json --text "$(cat $ex/prompt.txt)" "${brush[@]}" \
    --out examples/$name.mp4 --overlay examples/${name}_tracks.mp4 --upscale 4
done
python scripts/examples_gif.py  # docs/examples.gif, shown in the README
dragnuwa evaluate --count "$count" --steps "$steps" --out-dir docs/eval
python benchmarks/bench_generate.py --repeat 3 --motion-init 0 ${motion_init:-0}
