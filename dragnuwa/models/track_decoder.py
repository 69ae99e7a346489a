"""A decoder that also reads the tracks (not in the paper): where each point should be in the
frame being decoded, and where it started.

The diffusion model's samples move dragged objects about 80% of the way and smear them
(docs/model_card.md); the plain decoder renders those latents as they are. Given the tracks, the
decoder can render an object whose latent lies short of its track where the track says it is.
Each frame's tracks become six *track planes* at the frame's resolution (``track_planes``); a
small conv stem reads them, and zero-initialised convolutions add its features after each of the
decoder's residual blocks (``TrackInjection``), so a decoder given this input starts as the plain
decoder exactly and is fitted like run 10 (``samples_from`` pairs, ``tracks: true`` in an autoencoder
config; docs/training.md). Frames with no tracks (a dropped trajectory, a dense motion input, the
fresh frames of its training) get zero planes, which it learns to decode as before.

Measured with the bundled model (run 11, docs/training.md): on the 100 held-out clips the default's
trajectory error goes from 0.24x to 0.197x a static video, the model alone's from 0.55x to 0.47x.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PLANES = 6  # heat at the frame's points, their displacement from frame 0 (x, y); the same at frame 0's
PLANE_SIGMA = 1.5  # Gaussian spread of a point, in pixels at 64 px (scaled with the frame)
DISPLACEMENT_SCALE = 8.0  # displacements are divided by this (pixels at 64 px) to be about unit size


def track_planes(tracks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Tracks ``[N, T, 2]`` (pixels of an ``height x width`` frame) -> ``float32 [T, 6, H, W]``.

    For frame t: a Gaussian bump (peak 1, the largest where bumps overlap) at each point's
    position in frame t, and that bump times the point's displacement since frame 0 (x, y; summed
    where bumps overlap); then the same three at each point's frame-0 position, so the decoder
    knows both where an object should be and where it came from. No tracks -> all zero."""
    tracks = np.asarray(tracks, np.float32)
    T = tracks.shape[1] if tracks.ndim == 3 else 1
    out = np.zeros((T, PLANES, height, width), np.float32)
    if tracks.ndim != 3 or len(tracks) == 0:
        return out
    size = max(height, width) / 64
    sigma, scale = PLANE_SIGMA * size, DISPLACEMENT_SCALE * size
    ys = np.arange(height, dtype=np.float32) + 0.5  # pixel centres (dragnuwa.trajectory's convention)
    xs = np.arange(width, dtype=np.float32) + 0.5
    for point in tracks:  # tracks are few; each is a separable Gaussian per frame
        disp = (point - point[0]) / scale  # [T, 2]
        for k, where in enumerate((point, np.repeat(point[:1], T, axis=0))):
            gy = np.exp(-(ys[None, :] - where[:, 1:2]) ** 2 / (2 * sigma**2))  # [T, H]
            gx = np.exp(-(xs[None, :] - where[:, 0:1]) ** 2 / (2 * sigma**2))  # [T, W]
            bump = gy[:, :, None] * gx[:, None, :]  # [T, H, W]
            out[:, 3 * k] = np.maximum(out[:, 3 * k], bump)
            out[:, 3 * k + 1] += bump * disp[:, 0, None, None]
            out[:, 3 * k + 2] += bump * disp[:, 1, None, None]
    return out


class TrackInjection(nn.Module):
    """Track planes -> features added to the decoder after each residual block (one per
    resolution, the stem's features average-pooled to it). The output convolutions start at zero."""

    def __init__(self, channels: list[int], hidden: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(PLANES, hidden, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU())
        self.out = nn.ModuleList(nn.Conv2d(hidden, c, 3, padding=1) for c in channels)
        for conv in self.out:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        """``planes [B, 6, H, W]`` -> the stem's features ``[B, hidden, H, W]``, once per decode."""
        return self.stem(planes)

    def add(self, block: int, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``x`` (the output of the decoder's ``block``-th residual block) plus the stem's
        ``features`` average-pooled to its size, through that block's zero-initialised conv."""
        return x + self.out[block](F.adaptive_avg_pool2d(features, x.shape[-2:]))
