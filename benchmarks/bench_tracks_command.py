"""`dragnuwa tracks` on a long HD clip, at the default ``--max-side 512`` and at full resolution.

    python benchmarks/bench_tracks_command.py [--size 1280x720 --frames 56 --max-side 512 0]

Renders a procedural clip at --size (56 frames: the most the bundled model generates, what the app
and `generate --tracks VIDEO` read), then runs the whole command once per --max-side in a fresh
process, and prints its wall time and that process's peak RSS (decode + flow + sampling + JSON).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run in the child: the command itself, then its own peak RSS on stderr's last line.
CHILD = """
import resource, sys
from dragnuwa.cli import main
code = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1280x720", help="WxH of the clip")
    ap.add_argument("--frames", type=int, default=56)
    ap.add_argument("--max-side", type=int, nargs="+", default=[512, 0])
    args = ap.parse_args()

    from dragnuwa.data.synthetic import render_clip
    from dragnuwa.video import write_video

    w, h = (int(v) for v in args.size.lower().split("x"))
    tmp = Path(tempfile.mkdtemp())
    clip = write_video(tmp / "clip.mp4", render_clip(123, args.frames, (w, h)).frames, 24)
    print(f"dragnuwa tracks on {args.frames} frames of {w}x{h} (one run each, fresh process)")
    for side in args.max_side:
        cmd = [sys.executable, "-c", CHILD, "tracks", str(clip), "--out", str(tmp / f"t{side}.json"),
               "--max-side", str(side)]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t
        if r.returncode != 0:
            sys.exit(f"--max-side {side} failed: {r.stderr.strip().splitlines()[-1]}")
        peak_gb = int(r.stderr.strip().splitlines()[-1]) / 1024**2  # ru_maxrss is in KiB on Linux
        label = "full size" if side == 0 else f"{side} px"
        print(f"--max-side {side:<4} ({label:>9}): {seconds:6.2f} s, peak RSS {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
