"""Throughput of the whole Trajectory Sampler next to raw DIS flow, on 256x256 clips.

    python benchmarks/bench_trajectory.py [--clips 4 --frames 16]

Prints frame pairs per second of (a) raw DIS flow on decoded frames and (b) the whole sampler:
decode + forward/backward flow + chained tracks + motion-weighted sampling + displacement maps.
Target: (b) >= 50% of (a) on 2 cores. Note (b) computes flow twice (the forward-backward check).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--flow", default="dis")
    args = ap.parse_args()

    from dragnuwa import trajectory as tj
    from dragnuwa.data.synthetic import render_clip
    from dragnuwa.flow import video_flow
    from dragnuwa.video import read_video, write_video

    tmp = Path(tempfile.mkdtemp())
    paths = []
    for i in range(args.clips):
        paths.append(write_video(tmp / f"c{i}.mp4", render_clip(100 + i, args.frames, (args.size, args.size)).frames))
    pairs = args.clips * (args.frames - 1)

    decoded = [read_video(p)[0] for p in paths]
    t = time.perf_counter()
    for frames in decoded:
        video_flow(frames, args.flow)
    raw = pairs / (time.perf_counter() - t)

    t = time.perf_counter()
    for i, p in enumerate(paths):
        frames, _ = read_video(p)
        tracks = tj.TrajectorySampler(flow=args.flow).sample(frames, np.random.default_rng(i))
        tj.tracks_to_maps(tracks, frames.shape[1], frames.shape[2])
    whole = pairs / (time.perf_counter() - t)

    print(f"{args.clips} clips x {args.frames} frames at {args.size}x{args.size}, flow={args.flow}")
    print(f"raw {args.flow} flow:           {raw:7.1f} frame pairs/s")
    print(f"whole Trajectory Sampler: {whole:7.1f} frame pairs/s  ({100 * whole / raw:.0f}% of raw flow)")


if __name__ == "__main__":
    main()
