"""Metrics of a generated video against its controls (paper Sec. 4): independent point tracking,
trajectory error, first-frame fidelity and a colour check of the prompt.

Everything here works on plain numpy videos ``uint8 [T, H, W, 3]`` and tracks ``[N, T, 2]`` in
continuous pixel coordinates (pixel centres at i + 0.5, as ``dragnuwa.data.synthetic``), so it
measures any video, not only ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class TrackerConfig:
    """Pyramidal Lucas-Kanade settings, in pixels of the working resolution.

    Measured on 57 held-out procedural clips (98 moving object centres, 14 frames) against the
    exact tracks, as the ratio of mean error to a static video's: grey 21 px windows 0.13;
    colour 15 px windows 0.072; + a median over 5 points 0.058 at 64 px (0.061 at 128, 0.059 at
    256). Colour matters most: a cyan object on grey noise is nearly invisible in luminance.
    """

    work_size: int = 256  # small videos are upsampled so LK's windows hold enough texture
    window: int = 15
    max_level: int = 3
    cluster: float = 4.0  # offsets of the 4 extra points around each track, working px
    fb_threshold: float = 1.0  # forward-backward error allowed, in pixels of the video
    color: bool = True


def track_points(frames: np.ndarray, starts: np.ndarray, cfg: TrackerConfig | None = None) -> np.ndarray:
    """Follow ``starts [N, 2]`` through ``frames uint8 [T, H, W, 3]`` -> ``[N, T, 2]``.

    OpenCV pyramidal Lucas-Kanade (Bouguet 2001), chained frame to frame. Each track is a small
    cross of 5 points; its step is the median step of the points that pass a forward-backward
    check (track t -> t+1 -> t, error below ``fb_threshold``). When none passes the track keeps
    its position: a point the tracker loses counts as not moving, which is what a failed video
    shows and so never flatters a model.
    """
    cfg = cfg or TrackerConfig()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {frames.shape}")
    starts = np.asarray(starts, np.float32).reshape(-1, 2)
    n, T = len(starts), len(frames)
    out = np.zeros((n, T, 2), np.float32)
    out[:, 0] = starts
    if n == 0 or T < 2:
        return np.repeat(starts[:, None], T, axis=1)
    up = max(1, int(np.ceil(cfg.work_size / max(frames.shape[1:3]))))

    def prep(f: np.ndarray) -> np.ndarray:
        img = np.ascontiguousarray(f if cfg.color else cv2.cvtColor(f, cv2.COLOR_RGB2GRAY))
        return cv2.resize(img, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC) if up > 1 else img

    images = [prep(f) for f in frames.astype(np.uint8)]
    params = dict(winSize=(cfg.window, cfg.window), maxLevel=cfg.max_level,
                  criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    c = cfg.cluster
    offsets = np.array([[0, 0], [c, 0], [-c, 0], [0, c], [0, -c]], np.float32)[: 5 if c > 0 else 1]
    m = len(offsets)
    cur = starts.copy()
    for t in range(1, T):
        # Continuous video coordinates -> OpenCV's (pixel centres at integers) in the working image.
        pts = (cur[:, None] * up - 0.5 + offsets[None]).reshape(-1, 1, 2).astype(np.float32)
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(images[t - 1], images[t], pts, None, **params)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(images[t], images[t - 1], nxt, None, **params)
        ok = (st[:, 0] == 1) & (st2[:, 0] == 1) & (np.linalg.norm(back - pts, axis=2)[:, 0] < cfg.fb_threshold * up)
        steps = ((nxt - pts)[:, 0] / up).reshape(n, m, 2)
        ok = ok.reshape(n, m)
        for i in np.flatnonzero(ok.any(axis=1)):
            cur[i] = cur[i] + np.median(steps[i][ok[i]], axis=0)
        out[:, t] = cur
    return out


def trajectory_error(requested: np.ndarray, followed: np.ndarray) -> float:
    """Mean pixel distance between requested and followed tracks ``[N, T, 2]`` over frames 1..T-1
    (frame 0 is the given start for both)."""
    requested, followed = np.asarray(requested, np.float64), np.asarray(followed, np.float64)
    if requested.shape != followed.shape or requested.ndim != 3 or requested.shape[-1] != 2:
        raise ValueError(f"tracks must both be [N, T, 2], got {requested.shape} and {followed.shape}")
    if requested.shape[1] < 2 or requested.shape[0] == 0:
        return 0.0
    return float(np.linalg.norm(requested[:, 1:] - followed[:, 1:], axis=-1).mean())


def static_trajectory_error(requested: np.ndarray) -> float:
    """The trajectory error of a video that does not move (every point stays at its start): the
    mean displacement requested, the yardstick the ratio-to-static divides by."""
    requested = np.asarray(requested, np.float64)
    return trajectory_error(requested, np.repeat(requested[:, :1], requested.shape[1], axis=1))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (capped at 100 dB for identical images)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return 100.0 if mse == 0 else float(min(100.0, 10 * np.log10(255.0 ** 2 / mse)))


def first_frame_psnr(video: np.ndarray, image: np.ndarray) -> float:
    """Fidelity to the given image: PSNR of the video's first frame against it (paper Sec. 3:
    the image condition fixes the first frame)."""
    return psnr(np.asarray(video)[0], image)


def window_colour(frame: np.ndarray, position, radius: int | None = None) -> np.ndarray:
    """The surface colour around ``position`` (x, y): the mean of the brighter half of the
    ``(2 radius + 1)^2`` window, since surface patterns (stripes, dots, grain) only darken.
    ``radius`` defaults to 1/32 of the short side (2 px at 64, 8 at 256), inside the smallest
    procedural object. On the true last frames of 80 held-out clips this names 98.8% of the
    visible objects' colours right at 64 px and 100% at 256 (the plain window mean: 93% / 95%)."""
    h, w = frame.shape[:2]
    radius = max(1, round(min(h, w) / 32)) if radius is None else int(radius)
    x, y = np.clip(np.floor(np.asarray(position, np.float64)).astype(int), 0, [w - 1, h - 1])
    patch = frame[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1].reshape(-1, 3)
    patch = patch.astype(np.float64)
    bright = patch.sum(1)
    return patch[bright >= np.median(bright)].mean(0)


def text_check(frame: np.ndarray, position, color_name: str, palette: dict | None = None,
               radius: int | None = None) -> bool:
    """Is the colour at ``position`` in ``frame`` closest to ``color_name`` among ``palette``
    (default: the procedural scenes' colours)? The prompt names each object's colour, so a
    video that obeys it shows that colour where the object is asked to be."""
    if palette is None:
        from dragnuwa.data.synthetic import COLORS as palette
    if color_name not in palette:
        raise ValueError(f"unknown colour {color_name!r}")
    col = window_colour(frame, position, radius)
    names = list(palette)
    dists = [np.linalg.norm(col - np.asarray(palette[n], np.float64)) for n in names]
    return names[int(np.argmin(dists))] == color_name


def text_accuracy(video: np.ndarray, tracks: np.ndarray, colors: list[str], palette: dict | None = None) -> float:
    """Fraction of objects whose named colour is at their requested position in the last frame."""
    if len(colors) == 0:
        return float("nan")
    last = np.asarray(video)[-1]
    return float(np.mean([text_check(last, p, c, palette) for p, c in zip(np.asarray(tracks)[:, -1], colors)]))
