"""Choose the trajectory guidance scale on validation scenes (never on `dragnuwa evaluate`'s).

Generates each validation scene (seeds from 1,500,000: disjoint from training, 0..899,999, and
from the evaluation's, 1,000,000 on) at several trajectory guidance scales and without the
trajectory, and prints the mean trajectory error of each next to a static video's.

    python scripts/guidance_sweep.py runs/c_stage2/checkpoint/ema.safetensors --scales 2 5 8 --clips 12
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from dragnuwa.evaluate import held_out_cases
from dragnuwa.metrics import static_trajectory_error, track_points, trajectory_error
from dragnuwa.pipeline import load_pipeline

VALIDATION_SEED = 1_500_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--scales", type=float, nargs="+", default=[2.0, 4.0, 6.0, 8.0])
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    pipe = load_pipeline(args.model)
    cases = held_out_cases(args.clips, VALIDATION_SEED, pipe.cfg.frames, (pipe.cfg.width, pipe.cfg.height))
    errors: dict[str, list[float]] = {}
    for case in tqdm(cases, desc="validation clips"):
        for name, drop, scale in [(f"traj guidance {s:g}", (), s) for s in args.scales] + [("no trajectory", ("traj",), None)]:
            res = pipe.generate(case.image, case.tracks, case.text, steps=args.steps, seed=0, drop=drop,
                                traj_guidance=scale, paste_first=False, show_progress=False)
            followed = track_points(res.frames, case.tracks[:, 0])
            errors.setdefault(name, []).append(trajectory_error(case.tracks, followed))
        errors.setdefault("static video", []).append(static_trajectory_error(case.tracks))
    static = np.mean(errors["static video"])
    for name, values in errors.items():
        print(f"{name:22s} {np.mean(values):6.2f} px   ratio to static {np.mean(values) / static:.2f}")


if __name__ == "__main__":
    main()
