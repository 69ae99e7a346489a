"""Motion init: a cut-and-paste animation of the first image along the tracks, to start sampling from.

Not in the DragNUWA paper. A small model that learnt the drags only weakly moves objects a third
of the way and smears them (docs/model_card.md). Starting the sampler from a noised rough
animation instead of pure noise (SDEdit, Meng et al. 2022, Sec. 3: perturb a guide with noise
of level sigma_0, then solve the reverse process from sigma_0) leaves the model what it does
well at low noise: filling the uncovered background, blending edges, keeping colours and
shapes. The conditions stay the same, so the drags, the text and the image still steer it.

The animation (:func:`paste_along_tracks`): for each track that moves, the disc of the first
image around its start is moved rigidly along the track; the places the discs leave are filled
by inpainting (OpenCV's Telea method). Anchors and the rest of the image stay. Tracks are pasted
in order, so a later track's disc covers an earlier one's where they overlap.
"""

from __future__ import annotations

import cv2
import numpy as np

from dragnuwa.trajectory import default_sigma

# A track moving less than this (pixels, over the whole clip) is an anchor: nothing is cut out.
MIN_MOTION = 0.25


def default_radius(height: int, width: int) -> float:
    """Disc radius: 3 Gaussian-spread sigmas (7.5 px at 64 px, 30 at 256), the reach of a track's
    displacement map (the spread's weight there is 0.01). On validation scenes at 64 px, radii
    6 / 8 / 10 px gave about the same error, 5 px much worse: the disc must hold the object's
    edge, or the tracker (and a viewer) sees the object stay."""
    return 3.0 * default_sigma(height, width)


def moving_tracks(tracks: np.ndarray) -> np.ndarray:
    """The tracks ``[N, T, 2]`` whose points leave their start by at least ``MIN_MOTION`` px."""
    tracks = np.asarray(tracks, np.float64)
    if len(tracks) == 0:
        return tracks
    reach = np.abs(tracks - tracks[:, :1]).max(axis=(1, 2))
    return tracks[reach >= MIN_MOTION]


def paste_along_tracks(image: np.ndarray, tracks: np.ndarray, radius: float | None = None) -> np.ndarray:
    """The first image ``uint8 [H, W, 3]`` animated along ``tracks [N, T, 2]`` (model pixels, pixel
    centres at i + 0.5) -> ``uint8 [T, H, W, 3]``; frame 0 is the image itself.

    Each moving track's disc of ``radius`` px around its start is translated (bilinear, sub-pixel)
    to the track's position in every frame over an inpainted background. Parts of a disc outside
    the image are dropped; discs can enter from outside only as far as the image had content.
    """
    image = np.ascontiguousarray(image, dtype=np.uint8)
    H, W = image.shape[:2]
    tracks = np.asarray(tracks, np.float64)
    if tracks.ndim != 3 or tracks.shape[2] != 2:
        raise ValueError(f"tracks must be [N, T, 2], got {tracks.shape}")
    T = tracks.shape[1]
    radius = default_radius(H, W) if radius is None else float(radius)
    out = np.repeat(image[None], T, axis=0)
    moving = moving_tracks(tracks)
    if len(moving) == 0 or T < 2:
        return out
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5  # pixel centres
    # The uncovered background: every moving disc is cut out of the first image and inpainted
    # (Telea 2004, fast marching), which fills small holes from their border in one call.
    hole = np.zeros((H, W), np.uint8)
    for p in moving:
        hole[(xx - p[0, 0]) ** 2 + (yy - p[0, 1]) ** 2 <= radius ** 2] = 255
    background = cv2.inpaint(image, hole, max(1, int(round(radius / 2))), cv2.INPAINT_TELEA).astype(np.float32)
    source = image.astype(np.float32)
    for t in range(1, T):
        frame = background.copy()
        for p in moving:
            dx, dy = p[t] - p[0]
            # Backward map: the pixel at (x, y) shows the first image at (x - dx, y - dy), inside the disc.
            sx, sy = xx - np.float32(dx), yy - np.float32(dy)
            inside = (sx - p[0, 0]) ** 2 + (sy - p[0, 1]) ** 2 <= radius ** 2
            inside &= (sx >= 0) & (sx <= W) & (sy >= 0) & (sy <= H)
            if inside.any():
                moved = cv2.remap(source, sx - 0.5, sy - 0.5, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                frame[inside] = moved[inside]
        out[t] = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    return out
