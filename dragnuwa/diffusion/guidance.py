"""Classifier-free guidance with separate scales for text and trajectory.

Each condition is dropped independently in training (paper Sec. 3.3), so the model knows
D(x | image), D(x | image, text) and D(x | image, text, trajectory). Guidance composes them
(the nested two-scale form of InstructPix2Pix, Brooks et al. 2023, Eq. 3):

    D = D(img) + s_text (D(img, text) - D(img)) + s_traj (D(img, text, traj) - D(img, text))

The three passes run as one batch of 3B. Scales (1, 1) reduce to the single conditional pass.
Conditions are any object with ``drop(keep_text, keep_image, keep_traj)`` (bool ``[B]`` masks,
True = keep) and a static ``cat(list)``, e.g. ``dragnuwa.models.dragnuwa.Cond``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _batched_sigma(sigma: torch.Tensor, batch: int, repeats: int, device) -> torch.Tensor:
    """A scalar or ``[B]`` sigma as ``[repeats * B]`` on ``device``."""
    sigma = torch.as_tensor(sigma, device=device).reshape(-1).expand(batch)
    return sigma.repeat(repeats)


@dataclass
class MultiCondGuider:
    """Two-scale classifier-free guidance: ``text_scale`` on the prompt, ``traj_scale`` on the tracks."""

    text_scale: float = 1.0
    traj_scale: float = 1.0

    def __call__(self, D, cond) -> Denoise:
        """Return ``denoise(x, sigma)`` for the samplers, closing over ``D(x, sigma, cond)`` and ``cond``."""
        if self.text_scale == 1.0 and self.traj_scale == 1.0:
            return NoGuidance()(D, cond)
        cache: dict = {}

        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            b = x.shape[0]
            if "cond" not in cache:  # built once, with masks on the device of the data
                on = torch.ones(b, dtype=torch.bool, device=x.device)
                off = torch.zeros_like(on)
                image_only = cond.drop(keep_text=off, keep_image=on, keep_traj=off)
                image_text = cond.drop(keep_text=on, keep_image=on, keep_traj=off)
                cache["cond"] = type(cond).cat([image_only, image_text, cond])
            out = D(torch.cat([x, x, x]), _batched_sigma(sigma, b, 3, x.device), cache["cond"])
            d_img, d_text, d_all = out.chunk(3)
            return d_img + self.text_scale * (d_text - d_img) + self.traj_scale * (d_all - d_text)

        return denoise


@dataclass
class NoGuidance:
    """The plain conditional pass D(x | image, text, trajectory)."""

    def __call__(self, D, cond) -> Denoise:
        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return D(x, _batched_sigma(sigma, x.shape[0], 1, x.device), cond)

        return denoise
