"""One looping GIF of the bundled examples, side by side with their drags drawn, for the README.

    python scripts/examples_gif.py [--size 128] [--out docs/examples.gif]

Reads `examples/NAME_tracks.mp4` (written by scripts/finish_bundled_model.sh) and puts each
example's name above its video. GitHub shows a GIF inline where it only links an mp4.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from dragnuwa.errors import UserError
from dragnuwa.video import read_video, write_video

NAMES = ("demo", "multi_object", "brush", "anchor", "curved_path", "camera_pan")
LABEL = 18  # px of the name strip above each video


def labelled(frames: np.ndarray, name: str, size: int) -> np.ndarray:
    """``frames`` resized to ``size`` x ``size`` under a white strip with ``name`` on it."""
    out = np.full((len(frames), LABEL + size, size, 3), 255, np.uint8)
    for t, frame in enumerate(frames):
        out[t, LABEL:] = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        cv2.putText(out[t], name.replace("_", " "), (4, LABEL - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (40, 40, 40), 1, cv2.LINE_AA)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", default="examples")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--out", default="docs/examples.gif")
    args = ap.parse_args()
    videos, fps = [], 8.0
    for name in NAMES:
        path = Path(args.examples) / f"{name}_tracks.mp4"
        if not path.is_file():
            raise UserError(f"{path} not found: run scripts/finish_bundled_model.sh first")
        frames, fps = read_video(path)
        videos.append(labelled(frames, name, args.size))
    frames = min(len(v) for v in videos)
    gap = np.full((frames, videos[0].shape[1], 4, 3), 255, np.uint8)
    row = np.concatenate([part for v in videos for part in (v[:frames], gap)][:-1], axis=2)
    print(write_video(args.out, row, fps))


if __name__ == "__main__":
    main()
