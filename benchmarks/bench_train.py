"""Training speed and memory of a preset on this machine, fp32 vs bf16 autocast.

    python benchmarks/bench_train.py [--preset small --batch 4 --steps 5]

Prints seconds per training step (after one warm-up step) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()

    from dragnuwa.diffusion.preconditioning import EDMDenoiser
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import Cond, DragNUWA

    torch.manual_seed(0)
    model = DragNUWA(get_preset(args.preset))
    model.autoencoder.requires_grad_(False)
    D = EDMDenoiser(model, model.cfg.sigma_data)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    cfg, (C, h, w) = model.cfg, model.latent_shape
    B, T = args.batch, cfg.frames
    x0 = torch.randn(B, T, C, h, w)
    cond = Cond(torch.randn(B, 16, 384), torch.ones(B, 16, dtype=torch.bool), torch.randn(B, C, h, w),
                torch.randn(B, T, 2, cfg.height, cfg.width))
    params = sum(p.numel() for p in model.parameters())
    print(f"preset {args.preset}: {params / 1e6:.2f}M parameters, batch {B} x {T} frames, latent {C}x{h}x{w}, "
          f"{torch.get_num_threads()} threads")
    for bf16 in (False, True):
        times = []
        for i in range(args.steps + 1):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = D.loss(x0, cond)
            loss.backward()
            opt.step()
            opt.zero_grad()
            if i:
                times.append(time.perf_counter() - t)
        s = sum(times) / len(times)
        print(f"{'bf16' if bf16 else 'fp32'}: {s:.2f} s/step ({1 / s:.2f} steps/s), peak RSS {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
