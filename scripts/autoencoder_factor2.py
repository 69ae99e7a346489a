"""Experiment: does a 2x frame autoencoder lower the floor that the 4x one sets on trajectory error?

The bundled model's autoencoder (4x, 16x16x8 latents at 64x64) turns the true held-out clips into
videos that already score about 0.2x a static video (scripts/autoencoder_yardstick.py), the
target of issue #4. This trains the same autoencoder recipe (configs/autoencoder_small.yaml) with
one stride-2 stage fewer (2x, 32x32 latents; ``--latent-channels``) and prints both yardsticks.
It only measures: a video model on the 2x latents needs a preset of its own and a new training run
(about 4x the UNet work per step).

    python scripts/autoencoder_factor2.py [--steps 2000 --latent-channels 4 --out-dir runs/autoencoder_2x]
"""

from __future__ import annotations

import argparse
import dataclasses

from dragnuwa.evaluate import HELD_OUT_SEED, scene_cases
from dragnuwa.models.config import PRESETS, AutoencoderConfig
from dragnuwa.models.dragnuwa import load_model
from dragnuwa.training.autoencoder import train_autoencoder
from dragnuwa.training.config import AutoencoderTrainConfig, load_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--latent-channels", type=int, default=4)
    ap.add_argument("--out-dir", default="runs/autoencoder_2x")
    ap.add_argument("--baseline", default="dragnuwa/assets/model/dragnuwa_small.safetensors")
    ap.add_argument("--clips", type=int, default=100)
    args = ap.parse_args()

    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from autoencoder_yardstick import yardstick

    # A preset known to this process only: `small` with the last stride-2 stage of the autoencoder removed.
    PRESETS["small_ae2x"] = dataclasses.replace(
        PRESETS["small"], name="small_ae2x",
        autoencoder=AutoencoderConfig(channels=(32, 64), latent_channels=args.latent_channels))
    cfg = load_config("configs/autoencoder_small.yaml", AutoencoderTrainConfig)
    cfg.model, cfg.steps, cfg.out_dir = "small_ae2x", args.steps, args.out_dir
    path = train_autoencoder(cfg)
    cases = None
    for name, model_path in (("4x (baseline)", args.baseline), ("2x", path)):
        model = load_model(model_path)
        if cases is None:
            cases = scene_cases(args.clips, HELD_OUT_SEED, model.cfg.frames, (model.cfg.width, model.cfg.height))
        r = yardstick(model.autoencoder, cases)
        print(f"{name}: {r['trajectory_error_px']:.2f} px = {r['ratio_to_static']:.3f}x a static video, "
              f"PSNR {r['psnr_db']:.2f} dB ({model_path})")


if __name__ == "__main__":
    main()
