#!/usr/bin/env bash
# The exact chain of runs behind dragnuwa/assets/model/dragnuwa_small.safetensors: runs 1-5 on a
# 2-core CPU (about 2 hours), runs 6 and 7 on one GPU (an H200, 10.7 + 10.8 min), runs 8 and 10 (the decoder
# fitted to run 7's samples; run 10 weighs what moves) on the CPU again; docs/model_card.md has the figures.
# Runs 1-3 trained the paper-exact model; run 4 widened it to `traj_cumulative` (new inputs start
# at zero, so it continues exactly where run 3 stopped) and runs 4-5 continued it. For the bundled
# file, runs 4-5 started from run 3's weights as the previous bundled file held them (fp16, upcast).
set -euo pipefail
# 1. Frame autoencoder, then a decoder-only fine-tune (encoder and latent scale frozen).
dragnuwa train-autoencoder --config configs/autoencoder_small.yaml
dragnuwa train-autoencoder --config configs/autoencoder_small_decoder.yaml
# 2-3. Stage 1 (dense flow) and stage 2 (sparse tracks) of the paper-exact model.
dragnuwa train --config configs/small_stage1.yaml --max-steps 900
dragnuwa train --config configs/small_stage2.yaml --init runs/small_stage1/model.safetensors --max-steps 1100
# 4-5. With the displacement-from-frame-0 input: stage 1 again, then stage 2 with higher noise levels.
dragnuwa train --config configs/small_stage1.yaml --init runs/small_stage2/model.safetensors \
  --max-steps 600 --out-dir runs/c_stage1
dragnuwa train --config configs/small_stage2c.yaml  # init: run 4's raw weights at step 600
# Export run 5 (fp16, with the fine-tuned decoder): the start of run 6.
python scripts/export_model.py runs/c_stage2/model.safetensors --out runs/c_stage2/export_fp16.safetensors \
  --autoencoder runs/autoencoder_small_decoder/model.safetensors --traj-guidance 5
# 6. Stage 2 at batch 64 on one GPU (the config says how the bundled run was split in two).
dragnuwa train --config configs/small_stage2_gpu.yaml
python scripts/export_model.py runs/gpu_stage2/model.safetensors --traj-guidance 5  # run 6 (bundled until run 7 replaced it)
# 7. Stage 2 at batch 128 on new clips, from run 6 (bounded by wall clock on the GPU: 7.4 min, then
#    --resume for 3.4 min, stopping at step 3,324; --max-steps 3324 repeats it in one go).
dragnuwa train --config configs/small_stage2_gpu_more.yaml --max-steps 3324
# Export (fp16; the autoencoder came with the init) with its sampling defaults: guidance 3, best on
# validation seeds; motion init 1.
python scripts/export_model.py runs/gpu_more/model.safetensors --out runs/gpu_more/export_fp16.safetensors \
  --traj-guidance 3 --motion-init 1
# 8. The decoder fine-tuned on that model's own samples (2-core CPU, 14 + 8 min; docs/training.md).
dragnuwa train-autoencoder --config configs/autoencoder_small_decoder_samples.yaml
# 9. The same with the loss on what moves weighted 11x (moving_weight 10, run 10; run 9 had 4),
#    on the same sampled scenes (8 min; bundled).
mkdir -p runs/autoencoder_small_decoder_moving
cp runs/autoencoder_small_decoder_samples/sample_pairs.pt runs/autoencoder_small_decoder_moving/
dragnuwa train-autoencoder --config configs/autoencoder_small_decoder_moving.yaml
# 10. That decoder made a track decoder (it also reads where the tracks are in each frame; run 11),
#     fitted the same way on the same sampled scenes (15 min; bundled).
mkdir -p runs/autoencoder_small_decoder_tracks
cp runs/autoencoder_small_decoder_samples/sample_pairs.pt runs/autoencoder_small_decoder_tracks/
dragnuwa train-autoencoder --config configs/autoencoder_small_decoder_tracks.yaml
# Export with that decoder (fp16), examples, evaluation, benchmark.
bash scripts/finish_bundled_model.sh runs/gpu_more/model.safetensors 100 10 \
  runs/autoencoder_small_decoder_tracks/model.safetensors 3 1
