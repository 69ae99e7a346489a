"""Stable Video Diffusion's training objective (EDM, v-prediction preconditioning).

SVD (Blattmann et al. 2023, arXiv 2311.15127, Sec. 3 / App. D) is trained in the EDM framework
(Karras et al. 2022, arXiv 2206.00364) with sgm's ``VScalingWithEDMcNoise`` preconditioning and
``sigma_data = 1`` (the latents are scaled to unit std by the VAE's 0.18215). For a noise level s:

    c_in = 1 / sqrt(s^2 + 1)      c_out = -s / sqrt(s^2 + 1)
    c_skip = 1 / (s^2 + 1)        c_noise = 0.25 ln s

``D(x; s) = F(c_in x, c_noise) * c_out + x * c_skip`` (the official DragNUWA 1.5 ``Denoiser``,
``../shared/nuwa15/README.md``). The loss is sgm's ``StandardDiffusionLoss`` with ``EDMWeighting``:
``w(s) = (s^2 + sigma_data^2) / (s sigma_data)^2 = (s^2 + 1) / s^2``, so that
``w |D - x0|^2 = |F - v|^2`` with unit weight at every noise level: the network regresses the
v-target. Noise levels are log-normal, ``ln s ~ N(P_mean, P_std^2)`` (sgm's ``EDMSampling``). SVD's
fine-tuning shifted the schedule toward high noise; we use ``P_mean = 0.7, P_std = 1.6``, the values
the open SVD fine-tuning scripts use (e.g. SVD_Xtend); both are config fields.
"""

from __future__ import annotations

import torch

#: SVD's data std in latent space (sgm ``EDMWeighting(sigma_data=1.0)``; VScalingWithEDMcNoise assumes 1).
SIGMA_DATA = 1.0
P_MEAN, P_STD = 0.7, 1.6


def sample_sigmas(batch: int, generator: torch.Generator, p_mean: float = P_MEAN, p_std: float = P_STD) -> torch.Tensor:
    """Training noise levels ``[batch]``: ``exp(p_mean + p_std * N(0, 1))`` (sgm ``EDMSampling``)."""
    return (p_mean + p_std * torch.randn(batch, generator=generator)).exp()


def precondition(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(c_in, c_out, c_skip, c_noise)`` for ``sigma`` (any shape; VScalingWithEDMcNoise)."""
    s2 = sigma ** 2 + 1.0
    return s2.rsqrt(), -sigma * s2.rsqrt(), 1.0 / s2, 0.25 * sigma.log()


def loss_weight(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """EDM's loss weight ``(s^2 + sd^2) / (s sd)^2`` (sgm ``EDMWeighting``)."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


def denoised(net_out: torch.Tensor, noisy: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``D = F * c_out + x * c_skip``; ``sigma`` ``[B]`` broadcast over ``[B, T, C, h, w]``."""
    _, c_out, c_skip, _ = precondition(sigma.reshape(-1, *([1] * (noisy.ndim - 1))))
    return net_out * c_out + noisy * c_skip


def edm_loss(net_out: torch.Tensor, noisy: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``w(s) * mean |D - x0|^2`` (sgm ``StandardDiffusionLoss``, l2), in fp32."""
    d = denoised(net_out.float(), noisy.float(), sigma.float())
    per_video = ((d - x0.float()) ** 2).flatten(1).mean(1)
    return (loss_weight(sigma.float()) * per_video).mean()
