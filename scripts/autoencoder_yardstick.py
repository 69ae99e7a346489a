"""How well can a video decoded from this autoencoder's latents follow a drag, at best?

Passes the true clips of `dragnuwa evaluate`'s held-out scenes through the autoencoder of each
model file and scores them as the evaluation scores a generated video (trajectory error against the
requested tracks, and its ratio to a static video's), next to the frames' PSNR. A diffusion model
decodes every video it makes through this autoencoder, so its ratio is the floor of the model's.
PSNR alone does not rank autoencoders for this: the bundled decoder fine-tune gained 1.4 dB and
lost tracking fidelity (docs/model_card.md). ``--detail`` restores each clip's first-frame detail
after the round trip, as the pipeline does by default (``dragnuwa.detail``; `dragnuwa evaluate`'s row).

    python scripts/autoencoder_yardstick.py dragnuwa/assets/model/dragnuwa_small.safetensors [MORE ...] --clips 100 [--detail]
"""

from __future__ import annotations

import argparse

from tqdm import tqdm

from dragnuwa.evaluate import HELD_OUT_SEED, autoencoder_round_trip, evaluate_case, scene_cases, summarise
from dragnuwa.models.dragnuwa import load_model


def yardstick(autoencoder, cases, detail: bool = False) -> dict:
    """The evaluation's autoencoder yardstick on ``cases``: mean trajectory error (px), its ratio to
    a static video's, and PSNR (dB, all frames) of the round trip (``detail``: restored)."""
    reconstruct = autoencoder_round_trip(autoencoder.eval(), detail)
    rows = [evaluate_case(None, case, {}, reconstruct) for case in tqdm(cases, desc="round trips", leave=False)]
    return summarise(rows, {})["yardsticks"]["autoencoder"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model files (whole models or autoencoder-training outputs)")
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    ap.add_argument("--detail", action="store_true", help="restore the first frame's detail, as generate does")
    args = ap.parse_args()
    cases = None
    for path in args.models:
        model = load_model(path)
        cfg = model.cfg
        if cases is None:
            cases = scene_cases(args.clips, args.seed, cfg.frames, (cfg.width, cfg.height))
        r = yardstick(model.autoencoder, cases, args.detail)
        print(f"{path}: {r['trajectory_error_px']:.2f} px = {r['ratio_to_static']:.3f}x a static video, "
              f"PSNR {r['psnr_db']:.2f} dB ({len(cases)} clips)")


if __name__ == "__main__":
    main()
