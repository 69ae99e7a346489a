"""Exponential moving average of weights (the exported model is the EMA)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        # Warm-up (1 + step) / (10 + step) so early EMA is not dominated by the random init.
        d = min(self.decay, (1 + step) / (10 + step))
        # One fused kernel per dtype/device group, not one per tensor: on a GPU the per-tensor loop
        # was hundreds of launches a step.
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in model.parameters()], 1 - d)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)
