"""ODE samplers with one signature: ``sample_X(denoise, x, sigmas, callback=None) -> x0``.

``denoise(x, sigma)`` returns the denoised estimate D(x; sigma) (guidance already applied);
``x`` starts as noise scaled by ``sigmas[0]``; ``sigmas`` ends with 0. ``callback(i, n, x,
denoised)`` is called after every step (progress bars).
"""

from __future__ import annotations

from typing import Callable

import torch

from dragnuwa.errors import UserError

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def sample_euler(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, callback=None) -> torch.Tensor:
    """Euler steps of the probability-flow ODE dx/dsigma = (x - D(x)) / sigma (Karras et al. 2022, Alg. 1 without the 2nd-order correction)."""
    n = len(sigmas) - 1
    for i in range(n):
        d = denoise(x, sigmas[i])
        x = x + (x - d) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
        if callback:
            callback(i, n, x, d)
    return x


@torch.no_grad()
def sample_heun(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, callback=None) -> torch.Tensor:
    """Heun's 2nd-order method (Karras et al. 2022, Alg. 1, = Alg. 2 with S_churn = 0).

    The trapezoidal correction averages the slopes at sigma_i and sigma_{i+1}; the last step to
    sigma = 0 stays Euler because the slope there is undefined (Alg. 1, line 7).
    """
    n = len(sigmas) - 1
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = denoise(x, s)
        dxds = (x - d) / s
        x_next = x + dxds * (s_next - s)
        if s_next > 0:
            d2 = denoise(x_next, s_next)
            x_next = x + 0.5 * (dxds + (x_next - d2) / s_next) * (s_next - s)
        x = x_next
        if callback:
            callback(i, n, x, d)
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, callback=None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in the sigma form with t = -log(sigma).

    Exact exponential integration of the linear part, x_{i+1} = (sigma_{i+1}/sigma_i) x_i -
    (e^{-h} - 1) D_i', where D_i' extrapolates the last two denoised estimates (multistep, one
    network call per step); the first step is DPM-Solver++(1) and the step to sigma = 0 returns D.
    """
    n = len(sigmas) - 1
    old = None
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = denoise(x, s)
        if s_next == 0:
            x = d
        else:
            t, t_next = -torch.log(s), -torch.log(s_next)
            h = t_next - t
            if old is None:
                x = (s_next / s) * x - torch.expm1(-h) * d
            else:
                h_last = t - (-torch.log(sigmas[i - 1]))
                r = h_last / h
                d_combined = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * old
                x = (s_next / s) * x - torch.expm1(-h) * d_combined
        old = d
        if callback:
            callback(i, n, x, d)
    return x


SAMPLERS: dict[str, Callable] = {"euler": sample_euler, "heun": sample_heun, "dpmpp_2m": sample_dpmpp_2m}


def get_sampler(name: str) -> Callable:
    """The sampler registered as ``name``; an unknown name is the user's error."""
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; available: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
