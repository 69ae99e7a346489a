"""The motion brush: painted regions that move along the drags, as a dense motion input.

DragNUWA's Adaptive Training (paper Sec. 3.4) first trains on dense optical flow, then on sparse
tracks, so the model reads both in the same layout ``[T, 2, H, W]``. A drag says where one point
goes; a brush says which pixels go with it. :func:`brush_maps` turns a painted mask and the tracks
into the dense field a rigidly moving region would have: every painted region (a connected
component of the mask) moves along the track that starts inside it, everything else stays
still. Motion init then moves exactly the painted pixels (``motion_init.paste_regions``), where a
plain drag cuts out a disc or a GrabCut guess.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dragnuwa.errors import UserError
from dragnuwa.motion_init import MIN_MOTION


def load_brush(path: str | Path) -> np.ndarray:
    """A brush mask file -> ``bool [H, W]`` (:func:`as_mask` reads it): white on black, or a painted
    layer with transparency exported from an editor. A missing file or a non-image is a ``UserError``."""
    from dragnuwa.video import read_image

    return as_mask(read_image(path, "brush mask"), str(path))


def as_mask(brush, name: str = "the brush mask") -> np.ndarray:
    """A brush as given -> ``bool [H, W]``, True where painted: a file (:func:`load_brush`), a bool
    array, a greyscale / RGB array (painted where at least half bright; uint8 or floats in 0..1),
    or an RGBA array with transparency (painted where at least half opaque, as an editor's layer)."""
    if isinstance(brush, (str, Path)):
        return load_brush(brush)
    arr = np.asarray(brush)
    values = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0)
    if values.ndim == 3 and values.shape[2] in (3, 4):
        transparent = values.shape[2] == 4 and values[..., 3].min() < 1.0
        values = values[..., 3] if transparent else values[..., :3].mean(axis=2)
    if values.ndim != 2 or values.size == 0:
        raise UserError(f"{name} must be H x W (or an RGB/RGBA image), got shape {arr.shape}")
    mask = values >= 0.5
    if not mask.any():
        raise UserError(f"{name} has nothing painted (white on black, or opaque where it has transparency)")
    return mask


def region_labels(mask: np.ndarray) -> np.ndarray:
    """Connected painted regions (8-connected): ``int32 [H, W]`` labels, 0 = unpainted."""
    _, labels = cv2.connectedComponents(np.asarray(mask, np.uint8), connectivity=8)
    return labels.astype(np.int32)


def _label_at(labels: np.ndarray, point) -> int:
    """The region under ``point`` (x, y): its pixel's label, else the one most of its 3x3
    neighbourhood has (a click on a region's edge still picks it); 0 when none."""
    H, W = labels.shape
    col, row = int(np.floor(point[0])), int(np.floor(point[1]))
    if 0 <= col < W and 0 <= row < H and labels[row, col]:
        return int(labels[row, col])
    around = labels[max(0, row - 1):row + 2, max(0, col - 1):col + 2]
    found = around[around > 0]
    return int(np.bincount(found).argmax()) if found.size else 0


def brush_regions(mask: np.ndarray, tracks: np.ndarray,
                  drop_outside: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """Painted ``mask bool [H, W]`` and ``tracks [N, T, 2]`` (both at the model's resolution) -> the
    moving tracks ``[M, T, 2]`` and the part of the painting each one moves (``bool [H, W]``).

    A moving track moves the painted region (connected component) it starts in; a region with
    several moving tracks is split between them, each pixel going with the nearest start (two
    touching objects painted in one stroke, each dragged its own way). Anchors and regions no
    moving track starts in stay. A moving track that starts outside every region is a
    ``UserError``: the brush says what moves, so paint that object too, or drag without it; with
    ``drop_outside`` (tracks read off a video, not drawn) it is left out instead.
    """
    mask = np.asarray(mask, bool)
    tracks = np.asarray(tracks, np.float64)
    labels = region_labels(mask)
    moving, owners = [], []
    for i, track in enumerate(tracks):
        if np.abs(track - track[0]).max() < MIN_MOTION:
            continue  # an anchor: unpainted or painted, its pixels stay
        label = _label_at(labels, track[0])
        if label == 0 and drop_outside:
            continue
        if label == 0:
            raise UserError(f"track {i} (0-based) starts outside every painted region of the brush: "
                            f"paint what it moves, or drag without the brush")
        moving.append(track)
        owners.append(label)
    ys, xs = np.mgrid[0:mask.shape[0], 0:mask.shape[1]].astype(np.float64) + 0.5
    regions = []
    for track, label in zip(moving, owners):
        region = labels == label
        for other, other_label in zip(moving, owners):
            if other_label == label and other is not track:
                nearer = np.hypot(xs - other[0, 0], ys - other[0, 1]) < np.hypot(xs - track[0, 0], ys - track[0, 1])
                region &= ~nearer
        regions.append(region)
    return np.asarray(moving, np.float64).reshape(-1, tracks.shape[1], 2), regions


def brush_maps(tracks: np.ndarray, regions: list[np.ndarray]) -> np.ndarray:
    """Each of ``regions`` (``bool [H, W]``) moved rigidly along its track (``[M, T, 2]``) -> the dense
    maps ``float32 [T, 2, H, W]`` of that motion; everything else is still.

    Map t holds each pixel's motion t-1 -> t at its frame t-1 place, as ``trajectory.flow_to_maps``
    stores dense flow, so ``cumulative_displacement`` recovers each region's offset. Where moved
    regions overlap, the later one is in front, as in ``motion_init.paste_regions``.
    """
    tracks = np.asarray(tracks, np.float64)
    H, W = regions[0].shape
    T = tracks.shape[1]
    maps = np.zeros((T, 2, H, W), np.float32)
    for track, region in zip(tracks, regions):
        offset = track - track[0]
        for t in range(1, T):
            shift = np.float32([[1, 0, offset[t - 1, 0]], [0, 1, offset[t - 1, 1]]])
            # Where the region is at frame t-1 (translated, bilinear; half-covered pixels count).
            at = cv2.warpAffine(region.astype(np.float32), shift, (W, H), flags=cv2.INTER_LINEAR, borderValue=0) >= 0.5
            maps[t, :, at] = (offset[t] - offset[t - 1]).astype(np.float32)
    return maps


def fit_brush(mask: np.ndarray, image_size: tuple[int, int], size: tuple[int, int], fit: str) -> np.ndarray:
    """A mask painted on the given image (``image_size=(W, H)``; another size with the same aspect
    ratio is rescaled) -> ``bool`` at the model's ``size=(W, H)``, cropped/padded like the image."""
    from dragnuwa.video import fit_image

    mask = np.asarray(mask, bool)
    (img_w, img_h), (h, w) = image_size, mask.shape
    if abs(w / h - img_w / img_h) > 0.01 * img_w / img_h:
        raise UserError(f"the brush mask is {w}x{h} but the image is {img_w}x{img_h}: paint it on the image, "
                        f"at its size or its aspect ratio")
    values = cv2.resize(mask.astype(np.float32), (img_w, img_h), interpolation=cv2.INTER_LINEAR)
    fitted, _ = fit_image(values, size, fit)
    fitted = fitted >= 0.5
    if not fitted.any():
        raise UserError("the brush's painted area vanishes at the model's resolution (or is cropped away): "
                        "paint a larger region")
    return fitted
