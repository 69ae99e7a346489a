"""EDM preconditioning: the model seen only as ``D(x, sigma, cond)``.

Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
Table 1: D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)), with the
log-normal training distribution of sigma and the loss weighting lambda(sigma) (Sec. 5).
"""

from __future__ import annotations

import torch
from torch import nn


class EDMDenoiser(nn.Module):
    def __init__(self, net: nn.Module, sigma_data: float = 0.5, p_mean: float = -1.2, p_std: float = 1.2):
        super().__init__()
        self.net, self.sigma_data, self.p_mean, self.p_std = net, sigma_data, p_mean, p_std

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond) -> torch.Tensor:
        """D(x, sigma, cond): the denoised estimate of ``x`` ``[B, ...]`` at noise level ``sigma`` ``[B]``."""
        sd = self.sigma_data
        s = sigma.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        c_skip = sd ** 2 / (s ** 2 + sd ** 2)
        c_out = s * sd / (s ** 2 + sd ** 2).sqrt()
        c_in = 1 / (sd ** 2 + s ** 2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip * x + c_out * self.net(c_in * x, c_noise.flatten(), cond).to(x.dtype)

    def loss(self, x0: torch.Tensor, cond, generator: torch.Generator | None = None) -> torch.Tensor:
        """EDM training loss: ln(sigma) ~ N(P_mean, P_std^2), weight (sigma^2 + sd^2) / (sigma sd)^2."""
        b = x0.shape[0]
        rnd = torch.randn(b, generator=generator, device=x0.device)
        sigma = (rnd * self.p_std + self.p_mean).exp()
        noise = torch.randn(x0.shape, generator=generator, device=x0.device) * sigma.reshape(-1, *([1] * (x0.ndim - 1)))
        weight = (sigma ** 2 + self.sigma_data ** 2) / (sigma * self.sigma_data) ** 2
        denoised = self(x0 + noise, sigma, cond)
        per_sample = ((denoised.float() - x0.float()) ** 2).flatten(1).mean(1)
        return (weight * per_sample).mean()
