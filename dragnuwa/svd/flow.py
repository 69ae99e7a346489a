"""The official DragNUWA 1.5 trajectory -> flow recipe (the ``flow`` input of the SVD backend).

Written from reading the official demo (ProjectNUWA/DragNUWA at 759ec255, ``DragNUWA_demo.py``
``Drag.run`` / ``Drag.forward_sample`` and ``DragNUWA_net.py`` ``get_gaussian_kernel`` / ``Args``);
no code is copied. The recipe, in order:

1. Points are clicked ``[x, y]`` pixels. The demo maps them to the model's size with
   ``int(x * width / 576)`` (truncation), so the points are whole pixels.
2. A one-click track ``p`` becomes ``[p, p + (1, 1)]``: the official "anchor" drifts 1 px down-right
   over the clip (the quirk the published model was run with).
3. Each track is resampled by PCHIP to ``frames`` points at ``t = linspace(0, 1, n_clicks)``.
4. For step ``i = 0 .. frames-2`` the displacement ``p_{i+1} - p_i`` is written at the pixel
   ``(int(y_i), int(x_i))`` of map ``i`` (a later track overwrites an earlier one there).
5. Each map is spread by the unnormalised Gaussian ``exp(-((i-99)^2 + (j-99)^2) / 800)`` (199 px,
   sigma 20, peak 1), per channel with zero padding, so a blob's peak is the displacement.
6. A zero map is put in front: ``frames`` maps ``[frames, 2, H, W]`` (dx, dy in pixels).

This is the paper's Trajectory Sampler output format (arXiv 2308.08089, Sec. 3.1, "Gaussian
filter") with the sizes of the released 1.5 code. The Gaussian is applied separably (two 1-D
passes), which equals the 2-D convolution of the official ``nn.Conv2d`` because the kernel is an
outer product of two 1-D Gaussians.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.linalg import toeplitz

from ..errors import UserError

#: The size and Gaussian the published DragNUWA 1.5 model was trained and demonstrated with.
OFFICIAL_WIDTH, OFFICIAL_HEIGHT, OFFICIAL_FRAMES = 576, 320, 14
OFFICIAL_KERNEL_SIZE, OFFICIAL_SIGMA = 199, 20.0

ANCHOR_MODES = ("official", "still")


def gaussian_kernel_1d(kernel_size: int = OFFICIAL_KERNEL_SIZE,
                       sigma: float = OFFICIAL_SIGMA) -> np.ndarray:
    """The unnormalised 1-D Gaussian ``exp(-(k - c)^2 / (2 sigma^2))``, ``c = (size-1)/2`` (peak 1).

    Its outer product with itself is the official 2-D kernel (``get_gaussian_kernel``)."""
    k = np.arange(kernel_size, dtype=np.float64) - (kernel_size - 1) / 2.0
    return np.exp(-(k ** 2) / (2.0 * sigma ** 2))


def gaussian_kernel_2d(kernel_size: int = OFFICIAL_KERNEL_SIZE,
                       sigma: float = OFFICIAL_SIGMA) -> np.ndarray:
    """The official full 2-D kernel ``[size, size]`` (peak 1, sum 2513.27 at 199 / 20)."""
    g = gaussian_kernel_1d(kernel_size, sigma)
    return np.outer(g, g)


def _band_matrix(n: int, kernel: np.ndarray) -> np.ndarray:
    """``[n, n]`` matrix M with ``M[a, b] = kernel[c + b - a]`` (zero outside the kernel): one 1-D
    'same' correlation with zero padding as a matrix (the kernel is symmetric, so also a convolution)."""
    c = (len(kernel) - 1) // 2
    offsets = np.arange(n)
    col = np.where(offsets <= c, kernel[np.clip(c - offsets, 0, len(kernel) - 1)], 0.0)
    row = np.where(offsets <= len(kernel) - 1 - c,
                   kernel[np.clip(c + offsets, 0, len(kernel) - 1)], 0.0)
    return toeplitz(col, row)


def gaussian_spread(maps: np.ndarray, kernel_size: int = OFFICIAL_KERNEL_SIZE,
                    sigma: float = OFFICIAL_SIGMA) -> np.ndarray:
    """Spread sparse displacement maps ``[..., H, W]`` by the unnormalised Gaussian, separably.

    Two 1-D passes (along x, then along y), each a banded matrix product with zero padding; only
    the rows that hold a splatted point enter the first pass, so sparse drag maps cost almost
    nothing. Equal to the official 2-D ``Conv2d(padding=size//2)`` within float rounding
    (tested to 1e-5). Returns float32 of the input's shape."""
    maps = np.asarray(maps)
    *lead, h, w = maps.shape
    g = gaussian_kernel_1d(kernel_size, sigma)
    along_x = _band_matrix(w, g)          # [W, W]: row pass  out_row = row @ along_x
    along_y = _band_matrix(h, g)          # [H, H]: column pass  out = along_y @ rows
    flat = maps.reshape(-1, h, w).astype(np.float64)
    out = np.zeros_like(flat)
    for k, m in enumerate(flat):
        rows = np.flatnonzero(np.any(m != 0, axis=1))
        if rows.size == 0:
            continue
        out[k] = along_y[:, rows] @ (m[rows] @ along_x)
    return out.reshape(*lead, h, w).astype(np.float32)


def gaussian_spread_2d(maps: np.ndarray, kernel_size: int = OFFICIAL_KERNEL_SIZE,
                       sigma: float = OFFICIAL_SIGMA) -> np.ndarray:
    """Reference: the official full 2-D depthwise convolution (torch ``conv2d``, zero padding).

    Slow (199 x 199 taps per pixel); kept for tests and the benchmark."""
    import torch

    maps = np.asarray(maps, dtype=np.float32)
    *lead, h, w = maps.shape
    x = torch.from_numpy(maps.reshape(-1, 1, h, w))
    kernel = torch.from_numpy(gaussian_kernel_2d(kernel_size, sigma).astype(np.float32))
    with torch.no_grad():
        y = torch.nn.functional.conv2d(x, kernel[None, None], padding=kernel_size // 2)
    return y.numpy().reshape(*lead, h, w)


def _as_points(track, index: int) -> np.ndarray:
    try:
        pts = np.asarray(track, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"track {index}: points must be [x, y] numbers") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise UserError(f"track {index}: expected a list of one or more [x, y] points")
    if not np.all(np.isfinite(pts)):
        raise UserError(f"track {index}: a point is not a finite number")
    return pts


def resample_track(points: np.ndarray, frames: int) -> np.ndarray:
    """PCHIP through the clicks at ``t = linspace(0, 1, n)`` evaluated at ``frames`` even times
    (the official ``interpolate_trajectory``). PCHIP does not overshoot, so the path stays
    inside the clicks' bounding box."""
    t = np.linspace(0.0, 1.0, len(points))
    new_t = np.linspace(0.0, 1.0, frames)
    return np.stack([PchipInterpolator(t, points[:, 0])(new_t),
                     PchipInterpolator(t, points[:, 1])(new_t)], axis=1)


def official_tracks(tracks: Sequence, width: int = OFFICIAL_WIDTH, height: int = OFFICIAL_HEIGHT,
                    frames: int = OFFICIAL_FRAMES, *, source_size: tuple[int, int] | None = None,
                    anchors: str = "official") -> list[np.ndarray]:
    """Steps 1-3 of the recipe: each track as ``[frames, 2]`` float64 (x, y) at ``width x height``.

    ``source_size`` = (w, h) of the image the points refer to (default: ``width x height``); the
    points are mapped like the official demo, ``int(x * width / w)``. ``anchors``: "official"
    (a one-point track becomes a drag to (+1, +1), what the published model saw) or "still"
    (the project's anchor: the point stays put; its displacement is zero, which the flow input
    cannot tell apart from no track at all, so it only blanks other tracks at that pixel;
    different from the official model's training)."""
    if anchors not in ANCHOR_MODES:
        raise UserError(f"anchors must be one of {', '.join(ANCHOR_MODES)}, not {anchors!r}")
    if frames < 2:
        raise UserError(f"frames must be at least 2, got {frames}")
    if not tracks:
        raise UserError("no tracks given")
    src_w, src_h = source_size if source_size is not None else (width, height)
    out = []
    for n, track in enumerate(tracks):
        pts = _as_points(track, n)
        for k, (x, y) in enumerate(pts):
            if not (0 <= x < src_w and 0 <= y < src_h):
                raise UserError(f"track {n} point {k} ({x:g}, {y:g}) is outside the "
                                f"{src_w}x{src_h} image")
        # The demo's rescale: int() truncation toward zero (the points are >= 0 here).
        pts = np.floor(pts * np.array([width / src_w, height / src_h]))
        if len(pts) == 1:
            step = 1.0 if anchors == "official" else 0.0
            pts = np.concatenate([pts, pts + step], axis=0)
        out.append(resample_track(pts, frames))
    return out


def splat_tracks(paths: Sequence[np.ndarray], width: int, height: int) -> np.ndarray:
    """Step 4: float32 ``[frames-1, 2, H, W]`` with each step's displacement at ``int()`` of its
    start point; tracks are written in order, so a later track overwrites an earlier one."""
    frames = len(paths[0])
    maps = np.zeros((frames - 1, 2, height, width), dtype=np.float32)
    for path in paths:
        for i in range(frames - 1):
            x, y = int(path[i, 0]), int(path[i, 1])
            # A path starting on the last column/row may end one pixel past it (the +1 quirk);
            # the start points stay inside because PCHIP does not overshoot its clicks.
            maps[i, :, min(y, height - 1), min(x, width - 1)] = path[i + 1] - path[i]
    return maps


def official_flow(tracks: Sequence, width: int = OFFICIAL_WIDTH, height: int = OFFICIAL_HEIGHT,
                  frames: int = OFFICIAL_FRAMES, *, source_size: tuple[int, int] | None = None,
                  anchors: str = "official", kernel_size: int = OFFICIAL_KERNEL_SIZE,
                  sigma: float = OFFICIAL_SIGMA) -> np.ndarray:
    """The official DragNUWA 1.5 flow input for ``tracks`` (lists of ``[x, y]`` points).

    Returns float32 ``[frames, 2, height, width]``: channel 0 = dx, 1 = dy in pixels, map 0 all
    zero, map t the Gaussian-spread displacement of every track from frame t-1 to t at the track's
    frame t-1 position (the project's displacement-map convention, DESIGN.md).

    Any size that is a multiple of 64 uses the same recipe at that size: points are mapped from
    ``source_size`` (default: the same size) as the demo does, and the Gaussian keeps the
    official 199 px / sigma 20 (the official code did not scale it with the size; pass
    ``kernel_size``/``sigma`` to change it). ``anchors`` is documented in ``official_tracks``.
    """
    for name, v in (("width", width), ("height", height)):
        if v <= 0 or v % 64:
            raise UserError(f"{name} {v} is not a positive multiple of 64")
    paths = official_tracks(tracks, width, height, frames, source_size=source_size,
                            anchors=anchors)
    maps = gaussian_spread(splat_tracks(paths, width, height), kernel_size, sigma)
    zero = np.zeros((1, 2, height, width), dtype=np.float32)
    return np.concatenate([zero, maps], axis=0)


def official_kernel_matches(weight: np.ndarray, atol: float = 1e-5) -> bool:
    """Whether a stored ``guassian_filter.weight`` ``[2, 1, 199, 199]`` equals the analytic kernel."""
    weight = np.asarray(weight, dtype=np.float64)
    size = weight.shape[-1]
    if weight.ndim != 4 or weight.shape[-2] != size:
        return False
    ref = gaussian_kernel_2d(size, OFFICIAL_SIGMA)
    return bool(np.all(np.abs(weight - ref[None, None]) <= atol * max(1.0, math.fabs(ref.max()))))
