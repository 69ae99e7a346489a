#!/usr/bin/env bash
# After stage 2: export the bundled model (fp16), render the examples' videos, evaluate, benchmark.
# Usage: bash scripts/finish_bundled_model.sh [STAGE2_MODEL] [EVAL_COUNT] [EVAL_STEPS]
set -euo pipefail
src=${1:-runs/small_stage2/model.safetensors}
count=${2:-100}
steps=${3:-20}
python - "$src" <<'PY'
import sys
from dragnuwa.models.dragnuwa import load_model, save_model
from dragnuwa.pipeline import BUNDLED_MODEL
save_model(BUNDLED_MODEL, load_model(sys.argv[1]), half=True, extra={"source": sys.argv[1]})
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
