"""Noise-level discretisations (small swappable classes, one method each)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, Eq. 5: n noise levels from sigma_max to sigma_min, then a final 0."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    inv = sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return torch.cat([inv ** rho, torch.zeros(1, dtype=torch.float64)]).float()


@dataclass
class KarrasDiscretization:
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def __call__(self, n: int) -> torch.Tensor:
        return karras_sigmas(n, self.sigma_min, self.sigma_max, self.rho)
