"""The first frame as a reference for the decoder (not in the paper; ``AutoencoderConfig.reference``).

A per-frame conv decoder can only render what the latents hold, and 4x latents hold objects' colour
and place but lose their texture and edges, which is where a point tracker (and a viewer) looks.
The given first image holds that detail for everything the video shows. A reference decoder lets
each frame's features attend to the first frame's features at each lower decoder resolution, so a
moved object can copy its texture from where it was. The attention's output projection starts at
zero: a reference decoder fine-tuned from a plain one starts as that decoder, and the encoder, the
latent space and any video model trained on it stay as they are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def position_encoding(channels: int, h: int, w: int, device=None) -> torch.Tensor:
    """2D sinusoidal position features ``[channels, h, w]`` (half for y, half for x) over grid
    cells, wavelengths from 2 pi to 200 pi cells: a query prefers keys near its own place."""
    quarter = max(1, channels // 4)
    freq = torch.exp(-math.log(100.0) * torch.arange(quarter, device=device) / quarter)
    ys, xs = torch.arange(h, device=device).float(), torch.arange(w, device=device).float()
    ay, ax = ys[:, None] * freq, xs[:, None] * freq  # [h, q], [w, q]
    py = torch.cat([ay.sin(), ay.cos()], 1).T[:, :, None].expand(-1, h, w)
    px = torch.cat([ax.sin(), ax.cos()], 1).T[:, None, :].expand(-1, h, w)
    pe = torch.cat([py, px])
    return F.pad(pe, (0, 0, 0, 0, 0, channels - pe.shape[0]))


class ReferenceAttention(nn.Module):
    """Cross-attention from a frame's decoder features to the reference's at the same resolution,
    both with position features added (content finds its match, position breaks ties between
    look-alike regions), added back residually; zero at initialisation."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        g = min(8, channels)
        self.heads = heads
        self.norm_q, self.norm_kv = nn.GroupNorm(g, channels), nn.GroupNorm(g, channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Conv2d(channels, 2 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        pe = position_encoding(c, h, w, x.device).to(x.dtype)
        q = self.q(self.norm_q(x) + pe)
        k, v = self.kv(self.norm_kv(ref) + pe).chunk(2, dim=1)

        def heads(t):  # [b, c, h, w] -> [b, heads, h*w, c / heads]
            return t.reshape(b, self.heads, c // self.heads, h * w).transpose(2, 3)

        o = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return x + self.out(o.transpose(2, 3).reshape(b, c, h, w))


class ReferenceEncoder(nn.Module):
    """The first frame -> its features at each lower decoder resolution (a trunk shaped like the
    autoencoder's encoder, its own weights): ``[full/2^(n-1), ..., full/2]``, lowest first, with the
    channels the decoder has there."""

    def __init__(self, channels: tuple[int, ...], block):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, padding=1), block(channels[0]))
        self.down = nn.ModuleList(nn.Sequential(nn.Conv2d(a, b, 4, stride=2, padding=1), block(b))
                                  for a, b in zip(channels[:-1], channels[1:]))

    def copy_encoder(self, encoder: nn.Sequential) -> None:
        """Start from an autoencoder's trained encoder trunk (same shapes, up to its latent head):
        the attention's keys then start from features that already describe the frame, not noise."""
        blocks = list(encoder)
        self.stem.load_state_dict(nn.Sequential(*blocks[:2]).state_dict())
        for k, stage in enumerate(self.down):
            stage.load_state_dict(nn.Sequential(*blocks[2 + 2 * k:4 + 2 * k]).state_dict())

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x, feats = self.stem(image), []
        for stage in self.down:
            x = stage(x)
            feats.append(x)
        return feats[::-1]
