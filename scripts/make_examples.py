"""Build the bundled examples (image.png, tracks.json, prompt.txt; brush.png for the motion brush's)
from held-out procedural scenes.

    python scripts/make_examples.py [--out dragnuwa/assets/examples] [--size 256] [--only-brush]

Each example is the first frame of a held-out scene (seeds >= 3_000_000, never used in training)
with tracks a user could have drawn: the objects' true paths, reduced to a few clicks.
Images are written at --size (the pipeline fits them to the model's resolution). The scene renderer
has changed since the shipped examples were made (rotation and scale words in the captions), so a
full rebuild changes them: `--only-brush` adds the brush example to the shipped ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from dragnuwa.data.synthetic import render_clip
from dragnuwa.errors import atomic_write_text

FIRST = 3_000_000


def clicks(track: np.ndarray, n: int = 4) -> list[list[float]]:
    """A track reduced to ``n`` evenly spaced clicks (what a user drags)."""
    idx = np.linspace(0, len(track) - 1, n).round().astype(int)
    return [[round(float(x), 1), round(float(y), 1)] for x, y in track[idx]]


def find(pred, frames: int, size: int, start: int = FIRST):
    """The first scene from ``start`` on that satisfies ``pred``, searched at 64 px (a seed is the
    same scene at every size), rendered at ``size``."""
    for seed in range(start, start + 4000):
        if pred(render_clip(seed, frames, (64, 64)), 64):
            return render_clip(seed, frames, (size, size))
    raise RuntimeError("no scene matched")


def moving_dirs(clip):
    return [np.diff(t[[0, -1]], axis=0)[0] for t, o in zip(clip.tracks, clip.objects) if o["moving"]]


def painted(image: np.ndarray, tracks: list, reach: int) -> np.ndarray:
    """A motion brush as a user paints it, from the image alone: the object under each moving track's
    start (``motion_init.object_region``, GrabCut) with a margin of ``reach`` px, as a brush stroke
    is rough -> ``uint8 [H, W]``, white where painted."""
    import cv2

    from dragnuwa.motion_init import default_radius, object_region

    H, W = image.shape[:2]
    mask = np.zeros((H, W), np.uint8)
    for track in tracks:
        if len(track) > 1:
            mask[object_region(image, track[0], default_radius(H, W))] = 255
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1)))


def brush_example(out: Path, size: int) -> None:
    """The multi_object example with a motion brush: both touching objects painted in one stroke,
    each moved whole by its own drag (a disc cuts the striped ball in two)."""
    src, folder = out / "multi_object", out / "brush"
    folder.mkdir(parents=True, exist_ok=True)
    image = np.asarray(Image.open(src / "image.png").convert("RGB"))
    tracks = json.loads((src / "tracks.json").read_text())["tracks"]
    Image.fromarray(image).save(folder / "image.png")
    Image.fromarray(painted(image, tracks, round(3 * size / 256))).save(folder / "brush.png")
    for name in ("tracks.json", "prompt.txt"):
        atomic_write_text(folder / name, (src / name).read_text())
    print("brush: multi_object with brush.png")


def write(out: Path, name: str, clip, tracks: list, prompt: str, size: int) -> None:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(clip.frames[0]).save(folder / "image.png")
    atomic_write_text(folder / "tracks.json", json.dumps({"width": size, "height": size, "tracks": tracks}) + "\n")
    atomic_write_text(folder / "prompt.txt", prompt + "\n")
    print(f"{name}: seed {clip.seed}: {prompt}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="dragnuwa/assets/examples")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=14)
    ap.add_argument("--only-brush", action="store_true",
                    help="only (re)build the brush example from the multi_object example already there")
    args = ap.parse_args()
    out, S, T = Path(args.out), args.size, args.frames
    if args.only_brush:
        return brush_example(out, S)

    def visible(clip):
        return clip.visible.all(axis=1)

    # The demo: one clearly moving object on a static camera.
    c = find(lambda c, S: c.camera["kind"] == "static" and len(c.objects) == 2 and visible(c).all()
             and sum(o["moving"] for o in c.objects) == 1
             and np.linalg.norm(moving_dirs(c)[0]) > 0.25 * S, T, S)
    write(out, "demo", c, [clicks(t) for t in c.tracks], c.caption, S)

    # Several objects moving in different directions.
    def opposite(c, S):
        d = moving_dirs(c)
        return (c.camera["kind"] == "static" and visible(c).all() and len(d) >= 2
                and min(np.linalg.norm(x) for x in d) > 0.15 * S and np.dot(d[0], d[1]) < 0)
    c = find(opposite, T, S)
    write(out, "multi_object", c, [clicks(t) for t in c.tracks], c.caption, S)
    brush_example(out, S)

    # A still anchor: one object moves, another is pinned with a one-point track.
    c = find(lambda c, S: c.camera["kind"] == "static" and visible(c).all() and len(c.objects) >= 2
             and c.objects[0]["moving"] and not all(o["moving"] for o in c.objects), T, S, FIRST + 500)
    tracks = [clicks(t) if o["moving"] else [clicks(t, 1)[0]] for t, o in zip(c.tracks, c.objects)]
    write(out, "anchor", c, tracks, c.caption, S)

    # A long curved path: the object's true curved path with many clicks.
    def curved(c, S):
        if c.camera["kind"] != "static" or not visible(c)[0] or not c.objects[0]["moving"]:
            return False
        t = c.tracks[0]
        chord = np.linalg.norm(t[-1] - t[0])
        length = np.linalg.norm(np.diff(t, axis=0), axis=1).sum()
        return chord > 0.2 * S and length > 1.06 * chord
    c = find(curved, T, S, FIRST + 1000)
    write(out, "curved_path", c, [clicks(c.tracks[0], 7)], c.caption, S)

    # A camera pan: the background moves; tracks on background points show it.
    c = find(lambda c, S: c.camera["kind"] == "pan" and np.linalg.norm(c.camera["velocity"]) > 1.5 * S / 256,
             T, S, FIRST + 1500)
    from dragnuwa.trajectory import anchor_grid, chain_tracks

    bg, valid = chain_tracks(c.flow, anchor_grid(S, S, None, interval=S / 3))
    write(out, "camera_pan", c, [clicks(t) for t in bg[valid][:4]] + [clicks(t) for t in c.tracks[:1]],
          c.caption, S)


if __name__ == "__main__":
    main()
