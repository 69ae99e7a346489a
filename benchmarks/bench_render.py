"""Procedural clip rendering speed on one core: what a training data worker can supply.

    python benchmarks/bench_render.py [--clips 20]

Prints the median milliseconds per clip at the bundled model's size (64 px, 14 frames) and at
256 px, 16 frames, after one warm-up clip (which loads the photo backgrounds), and clips per
second per core. Target: well under the training step's time per clip (docs/training.md).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from dragnuwa.data.synthetic import render_clip


def median_ms(frames: int, size: int, clips: int) -> float:
    times = []
    for seed in range(clips):
        t0 = time.perf_counter()
        render_clip(seed, frames, (size, size))
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=20)
    args = ap.parse_args()
    cv2.setNumThreads(1)  # one core, as a DataLoader worker has (training.loop)
    render_clip(0, 2, (64, 64))  # warm the photo cache
    for frames, size in ((14, 64), (16, 256)):
        ms = median_ms(frames, size, args.clips)
        print(f"{size} px, {frames} frames: {ms:.1f} ms per clip (median of {args.clips}), {1000 / ms:.0f} clips/s per core")


if __name__ == "__main__":
    main()
