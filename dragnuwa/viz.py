"""Drawing tracks on frames: colour per track, fading tail, arrow heads, dots for anchors."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np


def track_colors(n: int) -> list[tuple[int, int, int]]:
    """``n`` well-separated RGB colours (golden-ratio hue steps)."""
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb((0.08 + i * 0.618034) % 1.0, 0.9, 1.0))
            for i in range(n)]


def _pt(p: np.ndarray, shift: int = 4) -> tuple[int, int]:
    # Sub-pixel drawing: OpenCV takes fixed-point coordinates with `shift` fractional bits.
    return int(round(p[0] * (1 << shift))), int(round(p[1] * (1 << shift)))


def draw_track_image(image: np.ndarray, tracks: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """The whole of each track drawn on one image (for the UI): polyline, arrow at the end, dot for anchors."""
    out = image.copy()
    scale = max(1, round(max(image.shape[:2]) / 256))
    for track, color in zip(tracks, track_colors(len(tracks))):
        track = np.asarray(track, dtype=np.float64)
        still = len(track) == 1 or np.ptp(track, axis=0).max() < 0.5
        if still:
            cv2.circle(out, _pt(track[0]), 4 * scale << 4, color, -1, cv2.LINE_AA, shift=4)
            continue
        for a, b in zip(track[:-2], track[1:-1]):
            cv2.line(out, _pt(a), _pt(b), color, 2 * scale, cv2.LINE_AA, shift=4)
        cv2.arrowedLine(out, _pt(track[-2]), _pt(track[-1]), color, 2 * scale, cv2.LINE_AA, shift=4, tipLength=0.4)
        cv2.circle(out, _pt(track[0]), 3 * scale << 4, color, -1, cv2.LINE_AA, shift=4)
    return out


def shade_outside(image: np.ndarray, box: tuple[float, float, float, float], dim: float = 0.35) -> np.ndarray:
    """``image`` with everything outside ``box=(x0, y0, x1, y1)`` (pixels) darkened to ``dim`` of its
    brightness and the box outlined: the part of an image the model will see (``PointTransform.visible``)."""
    h, w = image.shape[:2]
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return image
    out = (image.astype(np.float32) * dim).astype(np.uint8)
    out[y0:y1, x0:x1] = image[y0:y1, x0:x1]
    width = max(1, round(max(h, w) / 256))
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), width)
    return out


def draw_tracks(frames: np.ndarray, tracks: np.ndarray, tail: int = 8) -> np.ndarray:
    """Overlay ``[N, T, 2]`` tracks on ``uint8 [T, H, W, 3]`` frames: a fading tail of ``tail``
    frames, an arrow head at the current point, a dot for still (anchor) tracks."""
    tracks = np.asarray(tracks, dtype=np.float64)
    colors = track_colors(len(tracks))
    scale = max(1, round(max(frames.shape[1:3]) / 256))
    out = frames.copy()
    for t in range(len(frames)):
        img = out[t]
        for track, color in zip(tracks, colors):
            ti = min(t, track.shape[0] - 1)
            if np.ptp(track, axis=0).max() < 0.5:
                cv2.circle(img, _pt(track[ti]), 3 * scale << 4, color, -1, cv2.LINE_AA, shift=4)
                continue
            start = max(0, ti - tail)
            for s in range(start, ti):
                fade = (s - start + 1) / max(1, ti - start)
                c = tuple(int(v * fade + 255 * (1 - fade) * 0.3) for v in color)
                if s == ti - 1:
                    cv2.arrowedLine(img, _pt(track[s]), _pt(track[ti]), color, scale, cv2.LINE_AA, shift=4,
                                    tipLength=0.5)
                else:
                    cv2.line(img, _pt(track[s]), _pt(track[s + 1]), c, scale, cv2.LINE_AA, shift=4)
            cv2.circle(img, _pt(track[ti]), 2 * scale << 4, color, -1, cv2.LINE_AA, shift=4)
    return out


def draw_regions(frames: np.ndarray, tracks: np.ndarray, regions: list[np.ndarray], scale: float = 1.0) -> np.ndarray:
    """Outline each painted region (a motion brush's, ``bool [h, w]`` at the model's size) on
    ``uint8 [T, H, W, 3]`` frames ``scale`` times that size, moved along its track (``[N, T, 2]``, in
    the frames' pixels): what the brush asked to move, where it should be in each frame."""
    out = frames.copy()
    width = max(1, round(max(frames.shape[1:3]) / 256))
    for track, region in zip(np.asarray(tracks, np.float64), regions):
        # Traced at the frames' size, so the outline runs along the painted edge, not scale/2 inside it.
        h, w = region.shape
        big = cv2.resize(region.astype(np.uint8), (round(w * scale), round(h * scale)), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        # The centres of the edge pixels, in the frames' pixels, relative to the track's start.
        shapes = [c[:, 0, :].astype(np.float64) + 0.5 - track[0] for c in contours]
        for t in range(len(frames)):
            ti = min(t, len(track) - 1)
            polys = [np.round((shape + track[ti]) * 16).astype(np.int32) for shape in shapes]
            cv2.polylines(out[t], polys, True, (255, 255, 255), width, cv2.LINE_AA, shift=4)
    return out


def tile_videos(videos: list[np.ndarray], labels: list[str] | None = None, cols: int = 4, gap: int = 2) -> np.ndarray:
    """Videos of one size (``uint8 [T, H, W, 3]`` each) side by side, ``cols`` to a row, ``gap`` px
    of black between them, each with its label in the top-left corner -> one ``uint8`` video."""
    T, H, W = videos[0].shape[:3]
    cols = min(cols, len(videos))
    rows = -(-len(videos) // cols)
    out = np.zeros((T, rows * H + (rows - 1) * gap, cols * W + (cols - 1) * gap, 3), np.uint8)
    scale = max(0.3, H / 256 * 0.6)  # readable on a 256 px tile, still there on a 64 px one
    for k, video in enumerate(videos):
        y, x = (k // cols) * (H + gap), (k % cols) * (W + gap)
        tile = video.copy()
        if labels:
            font = cv2.FONT_HERSHEY_SIMPLEX
            (text_w, text_h), base = cv2.getTextSize(labels[k], font, scale, 1)
            m = max(2, round(6 * scale))
            # Light text on a darkened box: readable on any background.
            box = tile[:, :text_h + base + 2 * m, :text_w + 2 * m]
            box[:] = (box * 0.35).astype(np.uint8)
            for frame in tile:
                cv2.putText(frame, labels[k], (m, text_h + m), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
        out[:, y:y + H, x:x + W] = tile
    return out
