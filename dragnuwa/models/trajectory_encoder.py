"""Trajectory encoder (paper Sec. 3.3, Multiscale Fusion): displacement maps -> one feature per UNet level.

Stride-2 spatial convs bring the maps to the latent resolution, then each UNet level gets its
own stage (conv + temporal conv over frames), with stride-2 convs between levels. With
``cfg.traj_cumulative`` the stem also reads each frame's displacement from frame 0
(:func:`cumulative_displacement`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from dragnuwa.models.blocks import TemporalConv
from dragnuwa.models.config import ModelConfig


def cumulative_displacement(maps: torch.Tensor) -> torch.Tensor:
    """Per-frame maps ``[B, T, 2, H, W]`` -> displacement from frame 0, on frame 0's pixel grid.

    ``D_0 = 0``, ``D_t(x) = D_{t-1}(x) + m_t(x + D_{t-1}(x))``: every pixel is followed through the
    maps the way ``trajectory.maps_to_tracks`` follows a point (a step is stored where the point
    was in the previous frame), with bilinear reads. Dense flow gives the exact composed flow;
    a Gaussian-spread track gives its displacement so far around its start. It tells frame t
    where first-frame content goes without the network having to sum t steps itself.
    """
    b, t, _, h, w = maps.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=maps.device, dtype=maps.dtype) + 0.5,
                            torch.arange(w, device=maps.device, dtype=maps.dtype) + 0.5, indexing="ij")
    centres = torch.stack([xs, ys], dim=-1)  # [H, W, 2], continuous pixel coordinates
    size = torch.tensor([w, h], device=maps.device, dtype=maps.dtype)
    d = maps.new_zeros(b, h, w, 2)
    out = [d]
    for i in range(1, t):
        grid = (centres + d) / size * 2 - 1  # align_corners=False: -1 is the left edge of pixel 0
        step = F.grid_sample(maps[:, i], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        d = d + step.permute(0, 2, 3, 1)
        out.append(d)
    return torch.stack(out, dim=1).permute(0, 1, 4, 2, 3).contiguous()


class TrajectoryEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.unet.traj_channels
        g = min(4, c)
        # Maps are in pixels; divide by ~1/16 of the image so typical motion is O(1).
        self.norm_scale = max(cfg.height, cfg.width) / 16.0
        # Displacement from frame 0 grows over the clip: a quarter of the image is O(1).
        self.cum_scale = max(cfg.height, cfg.width) / 4.0
        self.cumulative = cfg.traj_cumulative
        down = [nn.Conv2d(4 if self.cumulative else 2, c, 3, padding=1), nn.SiLU()]
        for _ in range(int(math.log2(cfg.autoencoder.factor))):
            down += [nn.Conv2d(c, c, 4, stride=2, padding=1), nn.SiLU()]
        self.stem = nn.Sequential(*down)
        self.levels = nn.ModuleList()
        self.temporal = nn.ModuleList()
        self.between = nn.ModuleList()
        for i in range(len(cfg.unet.channels)):
            self.levels.append(nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.SiLU()))
            self.temporal.append(TemporalConv(c, g))
            if i < len(cfg.unet.channels) - 1:
                self.between.append(nn.Conv2d(c, c, 4, stride=2, padding=1))

    def forward(self, maps: torch.Tensor, cumulative: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``[B, T, 2, H, W]`` maps (and, with ``cfg.traj_cumulative``, their
        :func:`cumulative_displacement`) -> list of ``[B*T, C, h_l, w_l]`` features, one per UNet level."""
        frames = maps.shape[1]
        x = maps / self.norm_scale
        if self.cumulative:
            x = torch.cat([x, cumulative / self.cum_scale], dim=2)
        h = self.stem(rearrange(x, "b t c h w -> (b t) c h w"))
        feats = []
        for i, (level, temporal) in enumerate(zip(self.levels, self.temporal)):
            h = temporal(level(h), frames)
            feats.append(h)
            if i < len(self.between):
                h = F.silu(self.between[i](h))
        return feats
