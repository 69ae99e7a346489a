"""Training speed and memory of a preset on this machine: where a training step's time goes.

    python benchmarks/bench_train.py [--preset small --batch 4 --steps 5]              # CPU: fp32 vs bf16
    python benchmarks/bench_train.py --device cuda --batch 64 128 --steps 20 --workers 15

For each batch size: seconds per optimizer step on a fixed batch of random latents (the model
alone), and per whole step as the training loop runs it (autoencoder encode of real frames, text
encoding of new captions, the step, the EMA update), after warm-up. With ``--workers N`` it also
measures how many procedural clips per second N DataLoader workers render (``training.loop``'s
``micro_batches``): if that is below batch / whole-step seconds, the data bounds training.
Prints the process's peak RSS (and on CUDA the peak GPU memory).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def _timed(fn, steps: int, device: torch.device) -> float:
    """Mean seconds of ``fn()`` over ``steps`` calls after one warm-up call, device work included."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def data_rate(preset: str, batch: int, workers: int, batches: int) -> float:
    """Clips per second that ``workers`` DataLoader processes deliver, stage-2 synthetic clips."""
    from dragnuwa.models.config import get_preset
    from dragnuwa.training.config import TrainConfig
    from dragnuwa.training.loop import build_dataset, micro_batches

    cfg = TrainConfig(model=preset, stage=2, batch_size=batch, workers=workers, steps=batches + 2 * workers + 2)
    it = micro_batches(build_dataset(cfg, get_preset(preset)), cfg, 0, 0, 1)
    for _ in range(2 * workers + 1):  # spawn and fill the prefetch queue first
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * batch / (time.perf_counter() - t)
    it.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, nargs="+", default=[4])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0, help="also measure the data rate of this many workers")
    ap.add_argument("--data-batches", type=int, default=10)
    args = ap.parse_args()

    from dragnuwa.data.dataset import SyntheticClips
    from dragnuwa.diffusion.preconditioning import EDMDenoiser
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import Cond, DragNUWA
    from dragnuwa.models.text_encoder import TextEncoder
    from dragnuwa.training.ema import EMA

    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    model = DragNUWA(get_preset(args.preset)).to(dev)
    model.autoencoder.requires_grad_(False)
    D = EDMDenoiser(model, model.cfg.sigma_data)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    ema = EMA(model, 0.999)
    text_encoder = TextEncoder().to(dev)
    cfg, (C, h, w) = model.cfg, model.latent_shape
    T = cfg.frames
    n_params = sum(p.numel() for p in model.parameters())
    print(f"preset {args.preset}: {n_params / 1e6:.2f}M parameters, {T} frames, latent {C}x{h}x{w}, "
          f"device {dev}, {torch.get_num_threads()} threads")
    clips = SyntheticClips(0, 10_000, T, (cfg.width, cfg.height), stage=2)
    for B in args.batch:
        items = [clips[i] for i in range(B)]
        video = torch.stack([it["video"] for it in items]).to(dev)
        maps = torch.stack([it["maps"] for it in items]).to(dev)
        x0 = torch.randn(B, T, C, h, w, device=dev)
        cond = Cond(torch.randn(B, 16, 384, device=dev), torch.ones(B, 16, dtype=torch.bool, device=dev),
                    torch.randn(B, C, h, w, device=dev), maps)
        captions = iter(f"caption {i} of a red square" for i in range(10 ** 9))  # always new: no cache hits
        for bf16 in ((False, True) if dev.type == "cpu" else (True,)):
            def model_step():
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = D.loss(x0, cond)
                loss.backward()
                opt.step()
                opt.zero_grad()

            def whole_step():
                with torch.no_grad():
                    z = model.autoencoder.encode(video)
                    text, mask = text_encoder.encode([next(captions) for _ in range(B)])
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = D.loss(z, Cond(text, mask, z[:, 0], maps))
                loss.backward()
                opt.step()
                opt.zero_grad()
                ema.update(model, 1000)

            s_model = _timed(model_step, args.steps, dev)
            s_whole = _timed(whole_step, args.steps, dev)
            print(f"batch {B} {'bf16' if bf16 else 'fp32'}: model {s_model:.3f} s/step, whole step {s_whole:.3f} "
                  f"s/step = {B / s_whole:.0f} clips/s")
    if args.workers:
        B = args.batch[-1]
        print(f"data: {args.workers} workers render {data_rate(args.preset, B, args.workers, args.data_batches):.0f} "
              f"clips/s (batch {B})")
    mem = f", peak GPU memory {torch.cuda.max_memory_allocated() / 1e9:.1f} GB" if dev.type == "cuda" else ""
    print(f"peak RSS {peak_rss_gb():.2f} GB{mem}")


if __name__ == "__main__":
    main()
