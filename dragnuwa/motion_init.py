"""Motion init: a cut-and-paste animation of the first image along the tracks, to start sampling from.

Not in the DragNUWA paper. A small model that learnt the drags only weakly moves objects a third
of the way and smears them (docs/model_card.md). Starting the sampler from a noised rough
animation instead of pure noise (SDEdit, Meng et al. 2022, Sec. 3: perturb a guide with noise
of level sigma_0, then solve the reverse process from sigma_0) leaves the model what it does
well at low noise: filling the uncovered background, blending edges, keeping colours and
shapes. The conditions stay the same, so the drags, the text and the image still steer it.

The animation (:func:`paste_along_tracks`): for each track that moves, the object under its start
(:func:`object_region`, a GrabCut segmentation near the start; or a plain disc) is moved rigidly
along the track; the places the objects leave are filled by inpainting (OpenCV's Telea method).
Anchors and the rest of the image stay. Tracks are pasted in order, so a later track's object
covers an earlier one's where they overlap. A dense motion input
(the "motion brush") carries every pixel along its own chained displacement instead
(:func:`carry_along_flow`).
"""

from __future__ import annotations

import cv2
import numpy as np

from dragnuwa.trajectory import default_sigma

# A track moving less than this (pixels, over the whole clip) is an anchor: nothing is cut out.
MIN_MOTION = 0.25
# What the animation moves along each track: the disc around its start, or the object under it.
MOTION_REGIONS = ("disc", "object")


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


def disc_region(height: int, width: int, point, radius: float) -> np.ndarray:
    """``bool [H, W]``: the pixels whose centres lie within ``radius`` px of ``point`` (x, y)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    return (xx - point[0]) ** 2 + (yy - point[1]) ** 2 <= radius ** 2


def object_region(image: np.ndarray, point, radius: float) -> np.ndarray:
    """``bool [H, W]``: the object under ``point`` (x, y) in ``image uint8 [H, W, 3]``, by GrabCut
    (Rother et al. 2004: colour models of object and background, refined by graph cuts).

    The start is seeded as certain object within radius/3 of the point, likely object within
    ``radius``, likely background out to 2.5 radius and background beyond, so the region can
    shrink to a small object or grow past the disc to a large one, but never spill far. The
    connected part holding the point is kept (growing it by a pixel to carry the anti-aliased edge
    lowered the animation's PSNR against the true clips, 24.1 against 24.2 dB: it carries a ring
    of background too). Falls back to the disc when the segmentation drops the point itself or
    finds nothing past the certain seeds. On 30 validation scenes at 64 px the region overlaps
    the true object with IoU 0.83, the disc with 0.46.
    """
    H, W = image.shape[:2]
    disc = disc_region(H, W, point, radius)
    seeds = np.full((H, W), cv2.GC_BGD, np.uint8)
    seeds[disc_region(H, W, point, 2.5 * radius)] = cv2.GC_PR_BGD
    seeds[disc] = cv2.GC_PR_FGD
    core = disc_region(H, W, point, radius / 3)
    seeds[core] = cv2.GC_FGD
    cx, cy = int(np.clip(point[0], 0, W - 1)), int(np.clip(point[1], 0, H - 1))
    if not core.any() or not np.isin(seeds, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():
        return disc  # GrabCut needs samples of both object and background
    try:
        cv2.grabCut(image, seeds, None, np.zeros((1, 65)), np.zeros((1, 65)), 4, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # e.g. a flat image: no background colours to model
        return disc
    found = ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)).astype(np.uint8)
    if not found[cy, cx]:
        return disc
    _, labels = cv2.connectedComponents(found)
    region = labels == labels[cy, cx]
    # Only the certain seeds left: no edge was found (a flat or noisy patch), so nothing says
    # where an object ends; move the disc as before.
    return disc if region.sum() <= core.sum() else region


def paste_along_tracks(image: np.ndarray, tracks: np.ndarray, radius: float | None = None,
                       region: str = "disc") -> np.ndarray:
    """The first image ``uint8 [H, W, 3]`` animated along ``tracks [N, T, 2]`` (model pixels, pixel
    centres at i + 0.5) -> ``uint8 [T, H, W, 3]``; frame 0 is the image itself.

    Each moving track's region (``"object"``: :func:`object_region` near its start, reaching about
    ``radius`` px; ``"disc"``: the disc of ``radius`` px) is translated (bilinear, sub-pixel) to
    the track's position in every frame over an inpainted background. Parts of a region outside
    the image are dropped; regions can enter from outside only as far as the image had content.
    """
    image = np.ascontiguousarray(image, dtype=np.uint8)
    H, W = image.shape[:2]
    tracks = np.asarray(tracks, np.float64)
    if tracks.ndim != 3 or tracks.shape[2] != 2:
        raise ValueError(f"tracks must be [N, T, 2], got {tracks.shape}")
    T = tracks.shape[1]
    if region not in MOTION_REGIONS:
        raise ValueError(f"region must be one of {MOTION_REGIONS}, got {region!r}")
    radius = default_radius(H, W) if radius is None else float(radius)
    out = np.repeat(image[None], T, axis=0)
    moving = moving_tracks(tracks)
    if len(moving) == 0 or T < 2:
        return out
    regions = [object_region(image, p[0], radius) if region == "object" else disc_region(H, W, p[0], radius)
               for p in moving]
    return paste_regions(image, moving, regions, radius)


def paste_regions(image: np.ndarray, tracks: np.ndarray, regions: list[np.ndarray],
                  radius: float | None = None) -> np.ndarray:
    """The first image ``uint8 [H, W, 3]`` with each ``regions[i]`` (``bool [H, W]``) translated along
    ``tracks[i]`` (``[N, T, 2]``, offsets from its first point) over the image with every region cut
    out and inpainted (reaching about ``radius`` px) -> ``uint8 [T, H, W, 3]``; later regions cover
    earlier ones. The step :func:`paste_along_tracks` and the motion brush share."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    H, W = image.shape[:2]
    tracks = np.asarray(tracks, np.float64)
    T = tracks.shape[1]
    radius = default_radius(H, W) if radius is None else float(radius)
    out = np.repeat(image[None], T, axis=0)
    if len(regions) == 0:
        return out
    # The uncovered background: every moving region is cut out of the first image and inpainted
    # (Telea 2004, fast marching), which fills small holes from their border in one call.
    hole = np.any(regions, axis=0).astype(np.uint8) * 255
    background = cv2.inpaint(image, hole, max(1, int(round(radius / 2))), cv2.INPAINT_TELEA).astype(np.float32)
    source = image.astype(np.float32)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    for t in range(1, T):
        frame = background.copy()
        for p, inside in zip(tracks, regions):
            dx, dy = p[t] - p[0]
            # Backward map: the pixel at (x, y) shows the first image at (x - dx, y - dy); the region's
            # mask is moved the same way (bilinear, so its edge blends at sub-pixel shifts).
            sx, sy = xx - np.float32(dx), yy - np.float32(dy)
            weight = cv2.remap(inside.astype(np.float32), sx, sy, cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
            if weight.any():
                moved = cv2.remap(source, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                frame = frame * (1 - weight) + moved * weight
        out[t] = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    return out


def carry_along_flow(image: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """The first image ``uint8 [H, W, 3]`` carried along dense displacement maps ``[T, 2, H, W]``
    (a motion brush, or ``flow_to_maps`` of a clip's flow) -> ``uint8 [T, H, W, 3]``.

    Every pixel moves by its displacement from frame 0 (the maps chained, as the model reads them:
    ``cumulative_displacement``) and is splatted bilinearly. Moving pixels cover still ones (the
    brushed region is in front); pixels nothing lands on are inpainted, as where a disc left.
    """
    import torch

    from dragnuwa.models.trajectory_encoder import cumulative_displacement

    image = np.ascontiguousarray(image, dtype=np.uint8)
    maps = np.asarray(maps, np.float32)
    H, W = image.shape[:2]
    if maps.ndim != 4 or maps.shape[1:] != (2, H, W):
        raise ValueError(f"maps must be [T, 2, {H}, {W}], got {maps.shape}")
    with torch.no_grad():
        disp = cumulative_displacement(torch.from_numpy(maps)[None])[0].numpy()  # [T, 2, H, W]
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    colours = image.reshape(-1, 3).astype(np.float64)
    out = np.repeat(image[None], len(maps), axis=0)
    for t in range(1, len(maps)):
        moving = (np.hypot(disp[t, 0], disp[t, 1]) >= MIN_MOTION).reshape(-1)
        if not moving.any():
            continue
        layers = [_splat(xs + disp[t, 0], ys + disp[t, 1], colours, sel, H, W) for sel in (~moving, moving)]
        (still_rgb, still_w), (moved_rgb, moved_w) = layers
        frame = np.where(still_w[..., None] >= 0.5, still_rgb, 0.0)
        front = moved_w >= 0.5
        frame[front] = moved_rgb[front]
        hole = ((still_w < 0.5) & ~front).astype(np.uint8) * 255
        frame = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
        out[t] = cv2.inpaint(frame, hole, 3, cv2.INPAINT_TELEA) if hole.any() else frame
    return out


def _splat(tx: np.ndarray, ty: np.ndarray, colours: np.ndarray, select: np.ndarray, H: int, W: int):
    """Bilinear forward splat of the selected pixels to (tx, ty) (pixel indices) -> (colour, weight)."""
    tx, ty, colours = tx.reshape(-1)[select], ty.reshape(-1)[select], colours[select]
    x0, y0 = np.floor(tx).astype(np.int64), np.floor(ty).astype(np.int64)
    fx, fy = tx - x0, ty - y0
    num, den = np.zeros((H * W, 3)), np.zeros(H * W)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        x, y = x0 + dx, y0 + dy
        ok = (x >= 0) & (x < W) & (y >= 0) & (y < H) & (w > 0)
        idx, w = y[ok] * W + x[ok], w[ok]
        # bincount sums the weights landing on each pixel (an unbuffered scatter-add).
        den += np.bincount(idx, w, minlength=H * W)
        for c in range(3):
            num[:, c] += np.bincount(idx, colours[ok, c] * w, minlength=H * W)
    rgb = num / np.maximum(den, 1e-8)[:, None]
    return rgb.reshape(H, W, 3), den.reshape(H, W)


def motion_animation(image: np.ndarray, tracks: np.ndarray, maps: np.ndarray | None = None,
                     region: str = "disc", regions: list[np.ndarray] | None = None) -> np.ndarray | None:
    """What motion init starts from: the given ``regions`` (a motion brush's, one per track) pasted
    along ``tracks`` when given, else the dense ``maps`` carried (:func:`carry_along_flow`), else the
    ``region`` ("disc" or "object") under each track pasted along it; None when nothing moves (then
    sampling starts from noise)."""
    if regions is not None:
        return paste_regions(image, tracks, regions) if len(regions) else None
    if maps is not None:
        moves = np.abs(np.asarray(maps)).sum(axis=0).max() >= MIN_MOTION
        return carry_along_flow(image, maps) if moves else None
    return paste_along_tracks(image, tracks, region=region) if len(moving_tracks(tracks)) else None
