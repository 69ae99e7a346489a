"""EDM preconditioning: the model seen only as ``D(x, sigma, cond)``.

Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
Table 1: D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)), with the
log-normal training distribution of sigma and the loss weighting lambda(sigma) (Sec. 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EDMScalings:
    """The four Table 1 coefficients at a batch of noise levels, each broadcastable against ``x``."""

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor  # [B], the network's noise-level input


def edm_scalings(sigma: torch.Tensor, sigma_data: float, ndim: int) -> EDMScalings:
    """Karras et al. 2022, Table 1 ("Ours"): unit-variance network input and target for every sigma.

    ``sigma`` is ``[B]``; the first three coefficients are shaped ``[B, 1, ...]`` for an ``ndim``-d x.
    """
    sd2 = sigma_data ** 2
    s = sigma.reshape(-1, *([1] * (ndim - 1)))
    return EDMScalings(c_skip=sd2 / (s ** 2 + sd2), c_out=s * sigma_data / (s ** 2 + sd2).sqrt(),
                       c_in=1 / (s ** 2 + sd2).sqrt(), c_noise=sigma.reshape(-1).log() / 4)


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (Table 1): the effective
    weight lambda c_out^2 on F's error is 1 at every noise level."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


class EDMDenoiser(nn.Module):
    """``D(x, sigma, cond)`` around a raw network ``net(x_in, c_noise, cond) -> like x_in``.

    ``x`` is a latent video ``[B, T, C, h, w]`` (any ``[B, ...]`` works), ``sigma`` is ``[B]`` or a
    scalar. ``net`` is registered as a submodule when it is an ``nn.Module``.
    """

    def __init__(self, net, sigma_data: float = 0.5, p_mean: float = -1.2, p_std: float = 1.2):
        super().__init__()
        self.net, self.sigma_data, self.p_mean, self.p_std = net, sigma_data, p_mean, p_std

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond) -> torch.Tensor:
        """D(x, sigma, cond): the denoised estimate of ``x`` at noise level ``sigma`` (Table 1)."""
        # Samplers keep sigmas on the CPU; scalings must live with x (and in its precision).
        sigma = torch.as_tensor(sigma, device=x.device).to(torch.float32).reshape(-1).expand(x.shape[0])
        k = edm_scalings(sigma, self.sigma_data, x.ndim)
        f = self.net((k.c_in * x).to(x.dtype), k.c_noise, cond)
        return (k.c_skip * x + k.c_out * f.to(torch.float32)).to(x.dtype)

    def sample_sigma(self, batch: int, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
        """Training noise levels: ln(sigma) ~ N(P_mean, P_std^2) (Sec. 5, Table 1)."""
        gen_device = generator.device if generator is not None else device
        rnd = torch.randn(batch, generator=generator, device=gen_device).to(device)
        return (rnd * self.p_std + self.p_mean).exp()

    def loss(self, x0: torch.Tensor, cond, generator: torch.Generator | None = None,
             per_sample: bool = False, guide: torch.Tensor | None = None,
             guided: torch.Tensor | None = None, sigma_start: float = 1.0,
             weight: torch.Tensor | None = None):
        """EDM training loss E[lambda(sigma) ||D(x0 + n, sigma) - x0||^2] (Eq. 2 with Table 1).

        Returns the scalar mean over the batch, or ``(mean, per-sample [B], sigma [B])`` when
        ``per_sample``. The squared error is averaged over each sample's elements, so the optimal
        denoiser of data with std ``sigma_data`` scores exactly 1.

        Motion-init training (not in the paper): for the samples marked ``guided`` ``[B]`` the
        input is what SDEdit sampling from ``guide`` (latents like ``x0``, a rough animation) at
        ``sigma_start`` shows the model. An ideal ODE step keeps the guide's share of the clean part
        at sigma / sigma_start, so the input is ``x0 + (sigma / sigma_start) (guide - x0) + sigma n``
        with ln sigma uniform over [ln(sigma_start / 20), ln sigma_start] (where the schedule of
        ``start_at`` runs), and the target is still ``x0``: the model learns to correct the guide's
        errors instead of trusting them or pulling moved content back to the first frame.

        ``weight`` (broadcastable against ``x0``, e.g. ``[B, T, 1, h, w]``; not in the paper) weights
        the squared error per element, normalised per sample so its mean weight is 1 and the loss
        keeps its scale.
        """
        b = x0.shape[0]
        shape = (-1, *([1] * (x0.ndim - 1)))
        sigma = self.sample_sigma(b, generator, x0.device)
        # Draw on the generator's device (a CPU generator with CUDA data is the usual case).
        gen_device = generator.device if generator is not None else x0.device
        noise = torch.randn(x0.shape, generator=generator, device=gen_device).to(x0.device, x0.dtype)
        clean = x0
        if guide is not None:
            u = torch.rand(b, generator=generator, device=gen_device).to(x0.device)
            guided = guided.to(x0.device)
            sigma = torch.where(guided, sigma_start * 20.0 ** -u, sigma)
            share = torch.where(guided, sigma / sigma_start, torch.zeros_like(sigma)).reshape(shape)
            clean = x0 + share.to(x0.dtype) * (guide - x0)
        noisy = clean + noise * sigma.reshape(shape).to(x0.dtype)
        denoised = self(noisy, sigma, cond)
        sq = (denoised.float() - x0.float()) ** 2
        if weight is not None:
            w = weight.float().expand_as(sq).flatten(1)
            err = (w * sq.flatten(1)).sum(1) / w.sum(1)
        else:
            err = sq.flatten(1).mean(1)
        losses = edm_loss_weight(sigma, self.sigma_data) * err
        return (losses.mean(), losses, sigma) if per_sample else losses.mean()
