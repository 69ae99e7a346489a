"""Classifier-free guidance with separate scales for text and trajectory.

Each condition is dropped independently in training (paper Sec. 3.3), so the model knows
D(x | image), D(x | image, text) and D(x | image, text, trajectory). Guidance composes them
(as in InstructPix2Pix's two-scale guidance):

    D = D(img) + s_text (D(img, text) - D(img)) + s_traj (D(img, text, traj) - D(img, text))

The three passes run as one batch. Scales (1, 1) reduce to the single conditional pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MultiCondGuider:
    text_scale: float = 1.0
    traj_scale: float = 1.0

    def __call__(self, D, cond):
        """Return ``denoise(x, sigma)`` for the samplers, closing over ``D(x, sigma, cond)`` and ``cond``."""
        b = len(cond)
        if self.text_scale == 1.0 and self.traj_scale == 1.0:
            return lambda x, sigma: D(x, sigma.expand(b) if sigma.ndim == 0 else sigma, cond)
        on, off = torch.ones(b, dtype=torch.bool), torch.zeros(b, dtype=torch.bool)
        img_only = cond.drop(keep_text=off, keep_image=on, keep_traj=off)
        img_text = cond.drop(keep_text=on, keep_image=on, keep_traj=off)
        batched = type(cond).cat([img_only, img_text, cond])

        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            s = sigma.expand(3 * b) if sigma.ndim == 0 else sigma.repeat(3)
            d_img, d_text, d_all = D(torch.cat([x, x, x]), s, batched).chunk(3)
            return d_img + self.text_scale * (d_text - d_img) + self.traj_scale * (d_all - d_text)

        return denoise


@dataclass
class NoGuidance:
    """The plain conditional pass."""

    def __call__(self, D, cond):
        return MultiCondGuider(1.0, 1.0)(D, cond)
