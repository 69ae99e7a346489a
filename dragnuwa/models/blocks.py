"""Building blocks of the pseudo-3D video UNet: ResBlocks (spatial + temporal conv), attention.

Video features are folded as ``[B*T, C, h, w]``; temporal layers unfold T. Temporal parts are
zero-initialised residuals so a block starts as a per-frame image block.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(c_noise: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the noise level ``c_noise`` [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=c_noise.device) / half)
    args = c_noise.float()[:, None] * 1000.0 * freqs[None]  # c_noise = ln(sigma)/4 is small: stretch it
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class TemporalConv(nn.Module):
    """Conv over frames only (kernel 3 in T), zero-initialised residual."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.conv = zero_init(nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0)))

    def forward(self, h: torch.Tensor, frames: int) -> torch.Tensor:
        x = rearrange(F.silu(self.norm(h)), "(b t) c h w -> b c t h w", t=frames)
        return h + rearrange(self.conv(x), "b c t h w -> (b t) c h w")


class ResBlock(nn.Module):
    """Pseudo-3D ResBlock: two spatial 3x3 convs with the time embedding, then a temporal conv.

    With ``modulated=True`` it is a stage's first block and takes trajectory features:
    ``h = h + GroupNorm(h) * gamma + beta`` with zero-initialised gamma/beta (paper Sec. 3.3,
    Multiscale Fusion), so an untrained trajectory branch leaves the output unchanged.
    """

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, traj_channels: int | None = None):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = zero_init(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.temporal = TemporalConv(cout, groups)
        self.traj_norm = nn.GroupNorm(groups, cout, affine=False) if traj_channels else None
        self.gamma = zero_init(nn.Conv2d(traj_channels, cout, 3, padding=1)) if traj_channels else None
        self.beta = zero_init(nn.Conv2d(traj_channels, cout, 3, padding=1)) if traj_channels else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: int, traj: torch.Tensor | None = None):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        h = self.temporal(self.skip(x) + h, frames)
        if self.gamma is not None and traj is not None:
            h = h + self.traj_norm(h) * self.gamma(traj) + self.beta(traj)
        return h


class Attention(nn.Module):
    """Multi-head attention over tokens ``[N, L, C]`` with an optional context (cross-attention)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.out = zero_init(nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        h = self.norm(x)
        q = self.q(h)
        k, v = self.kv(h if context is None else context).chunk(2, dim=-1)
        q, k, v = (rearrange(a, "n l (h d) -> n h l d", h=self.heads) for a in (q, k, v))
        attn_mask = mask[:, None, None, :] if mask is not None else None
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return x + self.out(rearrange(o, "n h l d -> n l (h d)"))


class SpatioTemporalAttention(nn.Module):
    """Spatial self-attention, text cross-attention, then temporal attention at one resolution."""

    def __init__(self, dim: int, heads: int, text_dim: int):
        super().__init__()
        self.spatial = Attention(dim, heads)
        self.cross = Attention(dim, heads, context_dim=text_dim)
        self.temporal = Attention(dim, heads)

    def forward(self, h: torch.Tensor, frames: int, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        bt, c, hh, ww = h.shape
        x = rearrange(h, "n c h w -> n (h w) c")
        x = self.spatial(x)
        ctx = text.repeat_interleave(frames, dim=0)
        x = self.cross(x, ctx, text_mask.repeat_interleave(frames, dim=0))
        x = rearrange(x, "(b t) l c -> (b l) t c", t=frames)
        x = self.temporal(x)
        return rearrange(x, "(b h w) t c -> (b t) c h w", h=hh, w=ww)
