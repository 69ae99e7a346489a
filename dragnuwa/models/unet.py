"""Pseudo-3D video UNet with Multiscale Fusion (paper Sec. 3.3).

At every resolution of the down and up paths, the stage's first ResBlock is modulated by the
trajectory features of that resolution; text enters by cross-attention at the attention levels;
the first-frame latent is concatenated to the input on every frame (done by ``DragNUWA``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dragnuwa.models.blocks import ResBlock, SpatioTemporalAttention, timestep_embedding, zero_init
from dragnuwa.models.config import ModelConfig


class VideoUNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        u = cfg.unet
        ch, g, tc = u.channels, u.groups, u.traj_channels
        lat = cfg.autoencoder.latent_channels
        self.base = ch[0]
        emb = 4 * ch[0]
        self.time_mlp = nn.Sequential(nn.Linear(ch[0], emb), nn.SiLU(), nn.Linear(emb, emb))
        # noisy latent + first-frame latent (+ pooled displacement from frame 0, 2 channels)
        self.conv_in = nn.Conv2d(2 * lat + (2 if cfg.traj_cumulative else 0), ch[0], 3, padding=1)
        with torch.no_grad():  # the trajectory channels start at zero, as the modulation layers do
            self.conv_in.weight[:, 2 * lat:] = 0

        def attn(i, c):
            return SpatioTemporalAttention(c, u.heads, u.text_dim) if i in u.attention_levels else None

        self.down_res, self.down_attn, self.down_sample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        cin = ch[0]
        for i, c in enumerate(ch):
            self.down_res.append(ResBlock(cin, c, emb, g, tc))  # first block of the stage: modulated
            self.down_attn.append(attn(i, c) or nn.Identity())
            self.down_sample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(ch) - 1 else nn.Identity())
            cin = c
        self.mid_res1 = ResBlock(ch[-1], ch[-1], emb, g)
        self.mid_attn = SpatioTemporalAttention(ch[-1], u.heads, u.text_dim)
        self.mid_res2 = ResBlock(ch[-1], ch[-1], emb, g)
        self.up_res, self.up_attn, self.up_sample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(ch))):
            c = ch[i]
            self.up_res.append(ResBlock(cin + c, c, emb, g, tc))  # modulated, takes the skip
            self.up_attn.append(attn(i, c) or nn.Identity())
            nxt = ch[i - 1] if i > 0 else c
            self.up_sample.append(nn.Conv2d(c, nxt, 3, padding=1) if i > 0 else nn.Identity())
            cin = nxt
        self.out = nn.Sequential(nn.GroupNorm(g, ch[0]), nn.SiLU(), zero_init(nn.Conv2d(ch[0], lat, 3, padding=1)))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, frames: int, text: torch.Tensor,
                text_mask: torch.Tensor, traj: list[torch.Tensor]) -> torch.Tensor:
        """``x [B*T, 2C (+2), h, w]``, ``c_noise [B]``, text ``[B, L, D]``, traj features per level -> ``[B*T, C, h, w]``."""
        emb = self.time_mlp(timestep_embedding(c_noise, self.base)).repeat_interleave(frames, dim=0)
        h = self.conv_in(x)
        skips = []
        for i, (res, att, down) in enumerate(zip(self.down_res, self.down_attn, self.down_sample)):
            h = res(h, emb, frames, traj[i])
            if not isinstance(att, nn.Identity):
                h = att(h, frames, text, text_mask)
            skips.append(h)
            h = down(h)
        h = self.mid_res2(self.mid_attn(self.mid_res1(h, emb, frames), frames, text, text_mask), emb, frames)
        n = len(skips)
        for j, (res, att, up) in enumerate(zip(self.up_res, self.up_attn, self.up_sample)):
            i = n - 1 - j
            h = res(torch.cat([h, skips[i]], dim=1), emb, frames, traj[i])
            if not isinstance(att, nn.Identity):
                h = att(h, frames, text, text_mask)
            if i > 0:
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)
