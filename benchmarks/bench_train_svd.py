"""Speed and memory of one Adaptive Training step on the full-size DragNUWA 1.5 UNet (random weights).

    python benchmarks/bench_train_svd.py                        # CPU: one step, bf16 + checkpointing
    python benchmarks/bench_train_svd.py --cpu fp32-ckpt bf16-ckpt
    python benchmarks/bench_train_svd.py --gpu                  # bf16, with and without checkpointing
    python benchmarks/bench_train_svd.py --tiny --cpu fp32 bf16-ckpt   # smoke test of the script

The UNet is ``DragNUWASVDUNet.from_official_config()`` (the published architecture, 1.64 B
parameters with the flow encoder and modulation), built on the meta device and filled with random
values in the frozen weights' dtype; no download. The step is the training loop's own
(``dragnuwa.svd.training.Objective``: SVD's EDM loss, LoRA rank 32 on attention and feed-forward via
peft, the flow encoder and modulation trained in fp32, AdamW), at batch 1, 14 frames, 576x320
(latents 40x72, flow 320x576). The frozen VAE and CLIP encoders run without gradients before the
UNet and are not included. Each setting runs in its own process (peak memory is per process):

- ``fp32`` / ``fp32-ckpt``: fp32 weights and compute, without / with gradient checkpointing;
- ``bf16`` / ``bf16-ckpt``: frozen weights stored in bf16, bf16 autocast, trained weights fp32.

On CPU a watchdog ends a setting whose resident memory passes ``--max-rss-gb`` (the machine is
shared) and reports it as not fitting. On a GPU the peak is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

SETTINGS = ("fp32", "fp32-ckpt", "bf16", "bf16-ckpt")


def _materialise(model, dtype, device):
    """Allocate a meta-built model in ``dtype`` on ``device``, filled with random values (N(0, 1/fan_in)
    for matrices and kernels, 1 for norm scales, small elsewhere). The zero-initialised modulation
    gets values too, so the flow path computes as in a trained model."""
    import torch

    model = model.to(dtype=dtype).to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 1.0 / math.sqrt(p[0].numel()), generator=gen)
            elif name.endswith("weight") and "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    return model


def one_setting(setting: str, device: str, tiny: bool, steps: int, lora_rank: int, size=(576, 320)) -> dict:
    """Build, then time ``steps`` training steps after one warm-up step (CPU: the one step only)."""
    import torch

    from dragnuwa.svd.lora import add_lora
    from dragnuwa.svd.training import Objective, enable_checkpointing, flow_parameter_names

    torch.manual_seed(0)
    bf16 = setting.startswith("bf16")
    dtype = torch.bfloat16 if bf16 else torch.float32
    t0 = time.perf_counter()
    if tiny:
        from dragnuwa.svd import testing

        unet = testing.tiny_unet(num_frames=14).to(device=device, dtype=dtype)
        width, height, frames, ctx = 128, 64, 4, testing.TINY_CONTEXT_DIM
    else:
        from accelerate import init_empty_weights

        from dragnuwa.svd.unet import DragNUWASVDUNet

        with init_empty_weights():
            unet = DragNUWASVDUNet.from_official_config()
        unet = _materialise(unet, dtype, device)
        (width, height), frames, ctx = size, 14, 1024
    n_all = sum(p.numel() for p in unet.parameters())
    unet.requires_grad_(False)
    if lora_rank:
        add_lora(unet, lora_rank)
    named = dict(unet.named_parameters())
    trained = [named[k] for k in list(k for k in named if ".lora_" in k) + flow_parameter_names(unet)]
    for p in trained:
        p.data = p.data.to(device=device, dtype=torch.float32)
        p.requires_grad_(True)
    if setting.endswith("ckpt"):
        enable_checkpointing(unet)  # the training loop's: diffusers' plus the temporal transformer blocks
    unet.train()
    objective = Objective(unet)
    optimizer = torch.optim.AdamW(trained, lr=1e-5)
    build_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    h, w = height // 8, width // 8

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(device)

    x0 = rand(1, frames, 4, h, w)
    sigma = torch.tensor([1.5], device=device)
    inputs = dict(x0=x0, noisy=x0 + 1.5 * rand(*x0.shape), sigma=sigma, cond_latent=rand(1, 4, h, w),
                  image_embeds=rand(1, 1, ctx), time_ids=torch.tensor([[4.0, 4.0, 0.02]], device=device),
                  flow=rand(1, frames, 2, height, width) * 3)
    cuda = device.startswith("cuda")

    def step():
        with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = objective(**inputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    times = []
    if cuda:
        step()  # warm-up: kernels, allocator, optimizer state
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps if cuda else 1):
        t0 = time.perf_counter()
        loss = step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() / 2 ** 30 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20)
    return dict(setting=setting, params=n_all, trained=sum(p.numel() for p in trained), build_s=build_s,
                step_s=sum(times) / len(times), peak_gb=peak, loss=loss, finite=math.isfinite(loss),
                threads=torch.get_num_threads())


def _rss_gb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return 0.0


def run_settings(args) -> None:
    import torch

    device = "cuda" if args.gpu else "cpu"
    settings = args.cpu if not args.gpu else ["bf16", "bf16-ckpt"]
    rows = []
    for s in settings:
        cmd = [sys.executable, __file__, "--_one", s, "--device", device, "--steps", str(args.steps),
               "--lora-rank", str(args.lora_rank), "--size", f"{args.size[0]}x{args.size[1]}"] + (["--tiny"] if args.tiny else [])
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak_seen, killed = 0.0, False
        while proc.poll() is None:
            rss = _rss_gb(proc.pid)
            peak_seen = max(peak_seen, rss)
            if device == "cpu" and rss > args.max_rss_gb:
                proc.kill()
                killed = True
            time.sleep(0.2)
        out, err = proc.communicate()
        if killed:
            rows.append(dict(setting=s, note=f"over {args.max_rss_gb:g} GB resident: stopped"))
        elif proc.returncode:
            rows.append(dict(setting=s, note=f"failed (exit {proc.returncode}): {(err.strip().splitlines() or [''])[-1][:90]}"))
        else:
            rows.append(json.loads(out.strip().splitlines()[-1]))
    name = (torch.cuda.get_device_name() if args.gpu else
            f"CPU, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads)")
    size = "128x64x4 (tiny UNet)" if args.tiny else f"{args.size[0]}x{args.size[1]}x14"
    print(f"\nOne training step on {name}: DragNUWA 1.5 UNet, batch 1, {size}, LoRA rank {args.lora_rank} "
          f"+ flow encoder + modulation trained, AdamW, random weights")
    print(f"{'setting':10} {'params':>8} {'trained':>8} {'build s':>8} {'s / step':>9} {'peak GB':>8}  loss")
    for r in rows:
        if "note" in r:
            print(f"{r['setting']:10} {r['note']}")
            continue
        print(f"{r['setting']:10} {r['params'] / 1e9:7.3f}B {r['trained'] / 1e6:7.1f}M {r['build_s']:8.1f} "
              f"{r['step_s']:9.2f} {r['peak_gb']:8.2f}  {r['loss']:.4f}{'' if r['finite'] else ' (not finite)'}")
    print("peak GB: " + ("torch.cuda.max_memory_allocated" if args.gpu else "peak resident memory of the process"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", nargs="+", choices=SETTINGS, default=["bf16-ckpt"], help="settings to run on the CPU")
    ap.add_argument("--gpu", action="store_true", help="bf16 with and without checkpointing on cuda")
    ap.add_argument("--steps", type=int, default=3, help="timed steps on a GPU (after one warm-up)")
    ap.add_argument("--lora-rank", type=int, default=32)
    ap.add_argument("--tiny", action="store_true", help="the tiny UNet (smoke test of this script)")
    ap.add_argument("--size", type=lambda t: tuple(int(v) for v in t.split("x")), default=(576, 320),
                    metavar="WxH", help="frame size, multiples of 64 (default 576x320)")
    ap.add_argument("--max-rss-gb", type=float, default=18.0, help="CPU watchdog (default: %(default)s)")
    ap.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:
        print(json.dumps(one_setting(args._one, args.device, args.tiny, args.steps, args.lora_rank, args.size)))
        return
    run_settings(args)


if __name__ == "__main__":
    main()
