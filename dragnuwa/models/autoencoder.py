"""Frame autoencoder (the paper's image autoencoder): a small deterministic conv AE.

Each stride-2 stage halves the resolution (``factor = 2 ** (len(channels) - 1)``). Latents are
multiplied by ``config.scale`` (set from the latent std after training) so diffusion sees
roughly unit variance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dragnuwa.models.config import AutoencoderConfig


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        g = min(8, c)
        self.block = nn.Sequential(nn.GroupNorm(g, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
                                   nn.GroupNorm(g, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return x + self.block(x)


class Autoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        enc = [nn.Conv2d(3, ch[0], 3, padding=1), _Res(ch[0])]
        for a, b in zip(ch[:-1], ch[1:]):
            enc += [nn.Conv2d(a, b, 4, stride=2, padding=1), _Res(b)]
        enc += [nn.GroupNorm(min(8, ch[-1]), ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], cfg.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Conv2d(cfg.latent_channels, ch[-1], 3, padding=1), _Res(ch[-1])]
        for a, b in zip(ch[::-1][:-1], ch[::-1][1:]):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, b, 3, padding=1), _Res(b)]
        dec += [nn.GroupNorm(min(8, ch[0]), ch[0]), nn.SiLU(), nn.Conv2d(ch[0], 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.register_buffer("scale", torch.tensor(float(cfg.scale)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Frames ``[B, 3, H, W]`` (or ``[B, T, 3, H, W]``) in [-1, 1] -> scaled latents."""
        if x.ndim == 5:
            b = x.shape[0]
            return self.encode(x.flatten(0, 1)).unflatten(0, (b, -1))
        return self.encoder(x) * self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``[B, C, h, w]`` (or ``[B, T, C, h, w]``) -> frames in ~[-1, 1]."""
        if z.ndim == 5:
            b = z.shape[0]
            return self.decode(z.flatten(0, 1)).unflatten(0, (b, -1))
        return self.decoder(z / self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """L1 plus MSE: L1 keeps edges sharp, MSE is what PSNR measures. ``weight`` (broadcast to the
    frames, e.g. ``[B, 1, H, W]``) makes it a weighted mean over pixels."""
    d = recon - target
    if weight is None:
        return d.abs().mean() + d.square().mean()
    weight = weight.expand_as(d)
    return (weight * (d.abs() + d.square())).sum() / weight.sum()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of frames in [-1, 1]."""
    mse = F.mse_loss(a.clamp(-1, 1), b.clamp(-1, 1)).item()
    return float(10 * torch.log10(torch.tensor(4.0 / max(mse, 1e-12))))
