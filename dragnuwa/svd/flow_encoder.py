"""DragNUWA 1.5's flow conditioning, in diffusers terms: the flow encoder and the modulated ResBlock.

DragNUWA (arXiv 2308.08089, Sec. 3.2, "Trajectory Sampler" / "Multiscale Fusion") feeds the dense
trajectory flow to the UNet at every resolution. The 1.5 release (DragNUWA on Stable Video
Diffusion) does it in two parts, ported here from the official ``VideoUNet_flow`` (commit 759ec255):

- ``DragFlowEncoder``: one stage per UNet level. Stage 0 (the stem) brings the flow from pixels to
  the latent resolution with three stride-2 convs; each later stage changes the channels and halves
  the size (every one of them ends in a stride-2 conv, the last included, as the official code
  does). Each spatial conv is followed by a temporal ``Conv1d`` with replicate padding.
- ``FlowResnetBlock2D``: diffusers' ``ResnetBlock2D`` with the flow modulation
  ``h = h + GroupNorm32(h) * gamma + beta`` after its first conv and before the time embedding is
  added. gamma and beta are each a 3x3 conv (C_flow -> C/4) then a temporal ``Conv1d`` (C/4 -> C).

All tensors here are laid out ``[batch, frames, channels, height, width]``; the temporal convs need
the frame axis, which diffusers' ``[batch*frames, ...]`` layout loses.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D

# GroupNorm eps of the flow encoder and of the modulation norm (official FloatGroupNorm: nn.GroupNorm default).
FLOW_NORM_EPS = 1e-5


class FrameConv2d(nn.Conv2d):
    """A 2-D conv applied to every frame of a ``[B, T, C, H, W]`` tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        y = super().forward(x.flatten(0, 1))
        return y.unflatten(0, (b, t))


class TemporalConv1d(nn.Conv1d):
    """A 1-D conv along the frames of a ``[B, T, C, H, W]`` tensor, at every pixel independently.

    The official flow layers pad the frame axis by replicating the end frames (``padding_mode=
    'replicate'``), unlike the UNet's own temporal Conv3d, which pads with zeros.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                         padding_mode="replicate")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        y = x.permute(0, 3, 4, 2, 1).reshape(b * h * w, c, t)
        y = super().forward(y)
        return y.reshape(b, h, w, -1, t).permute(0, 4, 3, 1, 2)


class FloatGroupNorm(nn.GroupNorm):
    """GroupNorm that computes in its parameters' dtype (the official ``FloatGroupNorm``), for any
    number of leading dimensions: ``[..., C, H, W]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        y = F.group_norm(x.reshape(-1, *x.shape[-3:]).to(self.weight.dtype), self.num_groups,
                         self.weight, self.bias, self.eps)
        return y.reshape(*lead, *y.shape[1:]).to(x.dtype)


class DragFlowEncoder(nn.Module):
    """Encodes a flow ``[B, T, 2, 8h, 8w]`` (pixels) into one feature map per UNet level.

    Stage k gives ``[B, T, block_out_channels[k] // flow_dim_scale, h / 2^k, w / 2^k]``; input
    level k and output level k of the UNet both read stage k.

    Layer indices inside each stage follow the official ``flow_blocks`` (the stem has no parameters
    at 3 and 7, which are SiLUs), so the checkpoint maps one to one.
    """

    def __init__(self, block_out_channels: Sequence[int], flow_dim_scale: int = 1, in_channels: int = 2,
                 norm_groups: int = 8):
        super().__init__()
        c = block_out_channels[0] // flow_dim_scale
        c4, c2 = c // 4, c // 2
        stem = nn.Sequential(
            FrameConv2d(in_channels, c4, 3, stride=2, padding=1), TemporalConv1d(c4, c4),
            FloatGroupNorm(norm_groups, c4, eps=FLOW_NORM_EPS), nn.SiLU(),
            FrameConv2d(c4, c2, 3, stride=2, padding=1), TemporalConv1d(c2, c2),
            FloatGroupNorm(norm_groups, c2, eps=FLOW_NORM_EPS), nn.SiLU(),
            FrameConv2d(c2, c, 3, stride=2, padding=1), TemporalConv1d(c, c),
        )
        stages = [stem]
        for out in block_out_channels[1:]:
            o = out // flow_dim_scale
            stages.append(nn.Sequential(
                FloatGroupNorm(norm_groups, c, eps=FLOW_NORM_EPS), nn.SiLU(),
                FrameConv2d(c, o, 3, padding=1), TemporalConv1d(o, o),
                # The official `if i_f != len(channel_mult) - 1` is always true: every stage downsamples.
                FrameConv2d(o, o, 3, stride=2, padding=1),
            ))
            c = o
        self.stages = nn.ModuleList(stages)

    def forward(self, flow: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = flow
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class FlowResnetBlock2D(ResnetBlock2D):
    """diffusers' ``ResnetBlock2D`` plus DragNUWA's flow modulation (official ``ResBlockEmbed``).

    ``forward(x, temb, flow_features=None)``: ``flow_features`` is this level's flow-encoder output,
    ``[B, T, C_flow, h, w]``. When it is None, the features set by the owning UNet for the current
    call (``self.flow_features``) are used, since diffusers' blocks call their resnets without extra
    arguments.
    """

    def __init__(self, *, flow_channels: int, **kwargs):
        super().__init__(**kwargs)
        c = self.out_channels
        self.flow_cond_norm = FloatGroupNorm(32, c, eps=FLOW_NORM_EPS)
        self.flow_gamma_spatial = FrameConv2d(flow_channels, c // 4, 3, padding=1)
        self.flow_gamma_temporal = TemporalConv1d(c // 4, c)
        self.flow_beta_spatial = FrameConv2d(flow_channels, c // 4, 3, padding=1)
        self.flow_beta_temporal = TemporalConv1d(c // 4, c)
        # A fresh block starts as the plain ResBlock (the official zero_module on the temporal convs).
        for conv in (self.flow_gamma_temporal, self.flow_beta_temporal):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.flow_features: torch.Tensor | None = None

    def modulate(self, h: torch.Tensor, flow_features: torch.Tensor) -> torch.Tensor:
        """``h + GN(h) * gamma + beta`` with ``h`` ``[B*T, C, h, w]`` and the flow ``[B, T, C_f, h, w]``."""
        b, t = flow_features.shape[:2]
        if flow_features.shape[-2:] != h.shape[-2:] or b * t != h.shape[0]:
            raise ValueError(f"flow features {tuple(flow_features.shape)} do not fit the hidden states "
                             f"{tuple(h.shape)}")
        gamma = self.flow_gamma_temporal(self.flow_gamma_spatial(flow_features)).flatten(0, 1)
        beta = self.flow_beta_temporal(self.flow_beta_spatial(flow_features)).flatten(0, 1)
        return h + self.flow_cond_norm(h) * gamma.to(h.dtype) + beta.to(h.dtype)

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None,
                flow_features: torch.Tensor | None = None) -> torch.Tensor:
        flow_features = self.flow_features if flow_features is None else flow_features
        if flow_features is None:
            raise ValueError("FlowResnetBlock2D needs flow features (DragNUWASVDUNet sets them per call)")
        # The same computation as ResnetBlock2D.forward for this block's settings (no up/down, default
        # time-embedding norm), with the modulation between conv1 and the time embedding.
        h = self.conv1(self.nonlinearity(self.norm1(input_tensor)))
        h = self.modulate(h, flow_features.to(h.dtype))
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        x = input_tensor if self.conv_shortcut is None else self.conv_shortcut(input_tensor)
        return (x + h) / self.output_scale_factor
