"""Frame autoencoder (the paper's image autoencoder): a small deterministic conv AE.

Each stride-2 stage halves the resolution (``factor = 2 ** (len(channels) - 1)``). Latents are
multiplied by ``config.scale`` (set from the latent std after training) so diffusion sees
roughly unit variance. With ``config.reference`` the decoder also attends to the video's first
frame (``models/reference.py``); with ``config.tracks`` it also reads where the tracks are in each
frame (``models/track_decoder.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dragnuwa.models.config import AutoencoderConfig
from dragnuwa.models.reference import ReferenceAttention, ReferenceEncoder
from dragnuwa.models.track_decoder import PLANES, TrackInjection


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
        if cfg.reference:
            # After each decoder block below full resolution (the full-resolution one is left out: its
            # attention would cost (H*W)^2 and the 2x-lower one already carries 2x2 pixels a token).
            self.attend_after = [i for i, m in enumerate(self.decoder) if isinstance(m, _Res)][:-1]
            self.reference_encoder = ReferenceEncoder(ch, _Res)
            self.reference_attention = nn.ModuleList(ReferenceAttention(self.decoder[i].block[2].out_channels)
                                                     for i in self.attend_after)
        if cfg.tracks:
            self.track_after = [i for i, m in enumerate(self.decoder) if isinstance(m, _Res)]
            self.track_injection = TrackInjection([self.decoder[i].block[2].out_channels for i in self.track_after])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Frames ``[B, 3, H, W]`` (or ``[B, T, 3, H, W]``) in [-1, 1] -> scaled latents."""
        if x.ndim == 5:
            b = x.shape[0]
            return self.encode(x.flatten(0, 1)).unflatten(0, (b, -1))
        return self.encoder(x) * self.scale

    def decode(self, z: torch.Tensor, ref: torch.Tensor | None = None,
               planes: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled latents ``[B, C, h, w]`` (or ``[B, T, C, h, w]``) -> frames in ~[-1, 1].

        ``ref``: the first frame ``[B, 3, H, W]`` in [-1, 1] of each video (of each frame, for 4-D
        ``z``), for a reference decoder (``config.reference``). ``planes``: each frame's track
        planes (``track_decoder.track_planes``), shaped like ``z`` with 6 channels at the frames'
        resolution, for a track decoder (``config.tracks``; None: zero planes, no tracks). A plain
        decoder decodes frames from their latents alone."""
        b = z.shape[0]
        feats = None
        if ref is not None and self.cfg.reference:
            if ref.ndim != 4 or ref.shape[0] != b or ref.shape[1] != 3:
                raise ValueError(f"reference frames {tuple(ref.shape)} do not match latents {tuple(z.shape)}")
            feats = self.reference_encoder(ref.to(z.dtype))  # once per video, not per frame
        if self.cfg.tracks:
            if planes is None:  # no tracks: zero planes, as a track decoder is trained to take them
                f = self.cfg.factor
                planes = z.new_zeros(*z.shape[:-3], PLANES, z.shape[-2] * f, z.shape[-1] * f)
            if planes.ndim != z.ndim or planes.shape[: z.ndim - 3] != z.shape[: z.ndim - 3]:
                raise ValueError(f"track planes {tuple(planes.shape)} do not match latents {tuple(z.shape)}")
        else:
            planes = None
        if z.ndim == 5:
            t = z.shape[1]
            feats = None if feats is None else [f.repeat_interleave(t, dim=0) for f in feats]
            planes = None if planes is None else planes.flatten(0, 1)
            return self._decode(z.flatten(0, 1), feats, planes).unflatten(0, (b, t))
        return self._decode(z, feats, planes)

    def _decode(self, z: torch.Tensor, feats: list[torch.Tensor] | None,
                planes: torch.Tensor | None = None) -> torch.Tensor:
        x = z / self.scale
        if feats is None and planes is None:
            return self.decoder(x)
        attend = {} if feats is None else dict(zip(self.attend_after, zip(self.reference_attention, feats)))
        track = {} if planes is None else {i: k for k, i in enumerate(self.track_after)}
        features = None if planes is None else self.track_injection(planes.to(x.dtype))
        for i, layer in enumerate(self.decoder):
            x = layer(x)
            if i in attend:
                attention, feat = attend[i]
                x = attention(x, feat)
            if i in track:
                x = self.track_injection.add(track[i], x, features)
        return x

    def forward(self, x: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(x), ref)


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
