"""Does a model use its trajectory input yet? A one-minute check before a long `dragnuwa evaluate`.

Denoises held-out procedural clips at fixed noise levels with the true maps and with zero maps
(the null trajectory) and prints both errors per sigma. A model that ignores the maps has a ratio
of 1.00; where objects go is decided at high sigma, so that is where the ratio should grow first.

    python scripts/condition_gap.py runs/c_stage2/checkpoint/ema.safetensors --stage 2

``--motion-init S0`` adds a column for motion-init training (docs/training.md): the error when the
input is on the path SDEdit sampling from the clip's cut-and-paste animation at S0 takes
(``x0 + (sigma / S0)(animation - x0) + sigma n``, for sigma <= S0), the regime that training targets.
"""

from __future__ import annotations

import argparse

import torch

from dragnuwa.data.dataset import SyntheticClips
from dragnuwa.diffusion.preconditioning import EDMDenoiser
from dragnuwa.evaluate import HELD_OUT_SEED
from dragnuwa.models.dragnuwa import Cond, load_model
from dragnuwa.models.text_encoder import shared_text_encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--stage", type=int, default=2, choices=[1, 2], help="1: dense flow maps, 2: sparse tracks")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.1, 0.3, 0.7, 1.5, 4.0])
    ap.add_argument("--motion-init", type=float, default=0.0, help="also score inputs from the animation at this start")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    model = load_model(args.model).eval()
    cfg = model.cfg
    data = SyntheticClips(first_seed=HELD_OUT_SEED, frames=cfg.frames, size=(cfg.width, cfg.height),
                          stage=args.stage, animation=args.motion_init > 0)
    items = [data[i] for i in range(args.clips)]
    x0 = model.autoencoder.encode(torch.stack([it["video"] for it in items]))
    text, mask = shared_text_encoder().encode([it["text"] for it in items])
    maps = torch.stack([it["maps"] for it in items])
    D = EDMDenoiser(model, cfg.sigma_data)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    s0 = args.motion_init
    guide = model.autoencoder.encode(torch.stack([it["animation"] for it in items])) if s0 > 0 else None

    def error(x, sigma, m):
        return ((D(x, sigma, Cond(text, mask, x0[:, 0], m)) - x0)[:, 1:] ** 2).mean().item()

    print("sigma   mse(maps)  mse(no maps)  ratio" + ("   mse(from animation)" if s0 > 0 else "")
          + "   (frames 1.., latent units)")
    for s in args.sigmas:
        sigma = torch.full((len(items),), s)
        err = [error(x0 + noise * s, sigma, m) for m in (maps, torch.zeros_like(maps))]
        line = f"{s:5.2f}   {err[0]:9.4f}  {err[1]:12.4f}  {err[1] / err[0]:5.3f}"
        if s0 > 0 and s <= s0:
            line += f"   {error(x0 + (s / s0) * (guide - x0) + noise * s, sigma, maps):19.4f}"
        print(line)


if __name__ == "__main__":
    main()
