"""Export a trained run as a model file (fp16): optionally with another run's autoencoder and a
default trajectory guidance scale and motion init. Without ``--out`` it replaces the bundled model.

    python scripts/export_model.py runs/c_stage2/model.safetensors --out runs/c_stage2/export_fp16.safetensors \\
        --autoencoder runs/autoencoder_small_decoder/model.safetensors --traj-guidance 5
"""

from __future__ import annotations

import argparse

from dragnuwa.models.dragnuwa import load_model, save_model
from dragnuwa.pipeline import BUNDLED_MODEL
from dragnuwa.training.checkpoint import load_weights_into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="the run's model file")
    ap.add_argument("--out", default=str(BUNDLED_MODEL), help="default: the bundled model file")
    # A decoder-only fine-tune of the same encoder: the diffusion weights stay valid with it.
    ap.add_argument("--autoencoder", default="", help="model file whose autoencoder replaces the run's")
    ap.add_argument("--traj-guidance", type=float, default=None,
                    help="the model's default trajectory guidance (choose it with scripts/guidance_sweep.py)")
    ap.add_argument("--motion-init", type=float, default=None,
                    help="the model's default sampler start from the cut-and-paste animation (0 = off)")
    args = ap.parse_args()
    model = load_model(args.model)
    if args.autoencoder:
        load_weights_into(model, args.autoencoder, prefix="autoencoder.")
    if args.traj_guidance is not None:
        model.cfg.traj_guidance = args.traj_guidance
    if args.motion_init is not None:
        model.cfg.motion_init = args.motion_init
    path = save_model(args.out, model, half=True,
                      extra={"source": args.model, "autoencoder": args.autoencoder or args.model})
    print(path, round(path.stat().st_size / 2**20, 1), "MiB")


if __name__ == "__main__":
    main()
