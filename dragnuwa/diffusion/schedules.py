"""Noise-level discretisations (small swappable classes in the style of sgm, one method each)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# EDM's noise range (Karras et al. 2022, Sec. 5): every schedule's default, and the highest level a
# sampler can start from (the pipeline's motion-init check).
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def karras_sigmas(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, Eq. 5: ``n`` levels from sigma_max down to sigma_min, then a final 0.

    sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho; rho = 7
    spends the steps near small sigma where the ODE curves most. Returns float32 ``[n + 1]``.
    """
    if n < 1 or not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need n >= 1 and 0 < sigma_min <= sigma_max, got {n}, {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    inv = sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return torch.cat([inv ** rho, torch.zeros(1, dtype=torch.float64)]).float()


@dataclass
class KarrasDiscretization:
    """Eq. 5 as a swappable object: ``disc(n) -> sigmas [n + 1]``."""

    sigma_min: float = SIGMA_MIN
    sigma_max: float = SIGMA_MAX
    rho: float = 7.0

    def __call__(self, n: int) -> torch.Tensor:
        return karras_sigmas(n, self.sigma_min, self.sigma_max, self.rho)


@dataclass
class LogLinearDiscretization:
    """Levels evenly spaced in log sigma (the uniform-in-t grid of DPM-Solver++, Lu et al. 2022)."""

    sigma_min: float = SIGMA_MIN
    sigma_max: float = SIGMA_MAX

    def __call__(self, n: int) -> torch.Tensor:
        if n < 1 or not 0 < self.sigma_min <= self.sigma_max:
            raise ValueError(f"need n >= 1 and 0 < sigma_min <= sigma_max, got {n}, {self.sigma_min}, {self.sigma_max}")
        logs = torch.linspace(math.log(self.sigma_max), math.log(self.sigma_min), n, dtype=torch.float64)
        return torch.cat([logs.exp(), torch.zeros(1, dtype=torch.float64)]).float()


def start_at(sigmas: torch.Tensor, sigma_start: float) -> torch.Tensor:
    """The levels of ``sigmas`` below ``sigma_start``, led by ``sigma_start`` itself: the schedule
    of SDEdit (Meng et al. 2022, Sec. 3), which noises a guide to ``sigma_start`` and solves the
    reverse process from there. The step spacing below it stays that of ``sigmas``, so fewer
    network calls are made. A ``sigma_start`` at or above ``sigmas[0]`` returns ``sigmas``."""
    if sigma_start >= float(sigmas[0]):
        return sigmas
    if sigma_start <= 0:
        raise ValueError(f"sigma_start must be positive, got {sigma_start}")
    return torch.cat([sigmas.new_tensor([sigma_start]), sigmas[sigmas < sigma_start]])
