"""Choose the trajectory guidance scale and motion init on validation scenes (never on `dragnuwa evaluate`'s).

Generates each validation scene (seeds from 1,500,000: disjoint from training, 0..899,999, and
from the evaluation's, 1,000,000 on) at several trajectory guidance scales and motion inits
(sampler starts, 0 = pure noise) and without the trajectory, and prints the mean trajectory
error of each next to a static video's, and the PSNR of the whole video against the true clip.

    python scripts/guidance_sweep.py runs/c_stage2/checkpoint/ema.safetensors --scales 2 5 8 --clips 12
    python scripts/guidance_sweep.py bundled --scales 3 --motion-init 0 0.6 1 2 --clips 30
    python scripts/guidance_sweep.py bundled --scales 3 --motion-init 0.3 1 --motion-region object --clips 30

Videos are scored as generate writes them, detail restored (dragnuwa.detail); `--no-detail` scores
the decoded frames, as every sweep before 2026-12-03 did.
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from dragnuwa.evaluate import scene_cases
from dragnuwa.metrics import psnr, static_trajectory_error, track_points, trajectory_error
from dragnuwa.motion_init import MOTION_REGIONS
from dragnuwa.pipeline import load_pipeline

VALIDATION_SEED = 1_500_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--scales", type=float, nargs="+", default=[2.0, 4.0, 6.0, 8.0])
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--motion-init", type=float, nargs="+", default=[None],
                    help="sampler starts to try (default: the model's own)")
    ap.add_argument("--motion-region", choices=MOTION_REGIONS, default="disc",
                    help="what motion init moves along each track")
    ap.add_argument("--no-detail", dest="detail", action="store_false", help="no detail restoration")
    args = ap.parse_args()
    pipe = load_pipeline(args.model)
    cases = scene_cases(args.clips, VALIDATION_SEED, pipe.cfg.frames, (pipe.cfg.width, pipe.cfg.height))
    settings = [(f"traj guidance {s:g}" + ("" if m is None else f", motion init {m:g}"), (), s, m)
                for s in args.scales for m in args.motion_init] + [("no trajectory", ("traj",), None, None)]
    errors: dict[str, list[float]] = {}
    fidelity: dict[str, list[float]] = {}
    for case in tqdm(cases, desc="validation clips"):
        for name, drop, scale, start in settings:
            res = pipe.generate(case.image, case.tracks, case.text, steps=args.steps, seed=0, drop=drop,
                                traj_guidance=scale, paste_first=False, show_progress=False, motion_init=start,
                                motion_region=args.motion_region, detail=args.detail)
            followed = track_points(res.frames, case.tracks[:, 0])
            errors.setdefault(name, []).append(trajectory_error(case.tracks, followed))
            fidelity.setdefault(name, []).append(psnr(res.frames, case.frames))
        errors.setdefault("static video", []).append(static_trajectory_error(case.tracks))
        fidelity.setdefault("static video", []).append(psnr(np.repeat(case.frames[:1], len(case.frames), 0),
                                                            case.frames))
    static = np.mean(errors["static video"])
    for name, values in errors.items():
        print(f"{name:36s} {np.mean(values):6.2f} px   ratio to static {np.mean(values) / static:.3f}   "
              f"PSNR vs the true clip {np.mean(fidelity[name]):.2f} dB")


if __name__ == "__main__":
    main()
