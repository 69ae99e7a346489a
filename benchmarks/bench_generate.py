"""Seconds and peak memory of `dragnuwa generate` on CPU with the bundled model.

    python benchmarks/bench_generate.py [--model bundled --frames 14 --steps N --repeat 3 --motion-init 0 1
                                           --motion-region disc object brush]

Target: a 14-frame video at the bundled resolution with the default steps in under 20 s on 2 cores.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from dragnuwa.cli import MOTION_REGIONS  # light: the package's torch-free copy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--frames", type=int, default=14)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--motion-init", type=float, nargs="+", default=[None],
                    help="sampler starts to time (default: the model's; 0 = from pure noise, all steps)")
    ap.add_argument("--motion-region", nargs="+", default=["disc"], choices=MOTION_REGIONS + ("brush",),
                    help="what motion init moves along each track (timed for each start above 0); brush: the "
                         "brush example with its painted mask (generate --brush)")
    args = ap.parse_args()

    import torch

    from dragnuwa.demo import example_paths
    from dragnuwa.pipeline import load_pipeline

    t = time.perf_counter()
    pipe = load_pipeline(args.model)
    pipe.text_encoder.encode(["warm-up"])
    load_s = time.perf_counter() - t
    cfg = pipe.cfg
    print(f"model {cfg.name}: {cfg.width}x{cfg.height}, {args.frames} frames, {cfg.sampler} "
          f"(3 guided passes batched), {torch.get_num_threads()} threads")
    print(f"load (model + text encoder): {load_s:.1f} s")
    runs = [(start, region) for start in args.motion_init for region in args.motion_region]
    for start, region in dict.fromkeys((s, r if s != 0 else "disc") for s, r in runs):  # the region needs a start
        times = []
        ex = example_paths("brush" if region == "brush" else "demo")
        brush = {"brush": str(ex["brush"]), "motion_region": "disc"} if region == "brush" else {"motion_region": region}
        for i in range(args.repeat):
            t = time.perf_counter()
            res = pipe.generate(str(ex["image"]), str(ex["tracks"]), ex["prompt"].read_text().strip(),
                                frames=args.frames, steps=args.steps, seed=i, show_progress=False, motion_init=start,
                                **brush)
            times.append(time.perf_counter() - t)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
        where = f" ({res.info['motion_region']})" if res.info["motion_region"] else ""
        print(f"motion init {res.info['motion_init']:g}{where}: {res.info['sampler_steps']} of {res.info['steps']} steps run; "
              f"generate: {np.mean(times):.2f} s per video (min {min(times):.2f}, over {args.repeat}); "
              f"peak RSS so far {rss:.2f} GB")
    # Detail restoration (dragnuwa.detail): inside generate at the model's size, and again at the
    # size the demo and the app write (--upscale 4).
    from dragnuwa.detail import restore_detail
    from dragnuwa.pipeline import upscaled_frames

    t = time.perf_counter()
    restore_detail(res.decoded, res.image)
    small_s = time.perf_counter() - t
    t = time.perf_counter()
    upscaled_frames(res, 4)
    print(f"detail restoration: {small_s:.2f} s at {cfg.width}x{cfg.height} (part of generate above), "
          f"{time.perf_counter() - t:.2f} s for --upscale 4 ({4 * cfg.width}x{4 * cfg.height}, as the demo and app write)")


if __name__ == "__main__":
    main()
