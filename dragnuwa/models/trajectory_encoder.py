"""Trajectory encoder (paper Sec. 3.3, Multiscale Fusion): displacement maps -> one feature per UNet level.

Stride-2 spatial convs bring the maps to the latent resolution, then each UNet level gets its
own stage (conv + temporal conv over frames), with stride-2 convs between levels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from dragnuwa.models.blocks import TemporalConv
from dragnuwa.models.config import ModelConfig


class TrajectoryEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.unet.traj_channels
        g = min(4, c)
        # Maps are in pixels; divide by ~1/16 of the image so typical motion is O(1).
        self.norm_scale = max(cfg.height, cfg.width) / 16.0
        down = [nn.Conv2d(2, c, 3, padding=1), nn.SiLU()]
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

    def forward(self, maps: torch.Tensor) -> list[torch.Tensor]:
        """``[B, T, 2, H, W]`` maps -> list of ``[B*T, C, h_l, w_l]`` features, one per UNet level."""
        frames = maps.shape[1]
        h = self.stem(rearrange(maps, "b t c h w -> (b t) c h w") / self.norm_scale)
        feats = []
        for i, (level, temporal) in enumerate(zip(self.levels, self.temporal)):
            h = temporal(level(h), frames)
            feats.append(h)
            if i < len(self.between):
                h = F.silu(self.between[i](h))
        return feats
