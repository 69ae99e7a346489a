"""``DragNUWASVDUNet``: diffusers' Stable Video Diffusion UNet with DragNUWA 1.5's flow conditioning.

The UNet of DragNUWA 1.5 is SVD's ``VideoUNet`` plus a flow encoder and a flow modulation in the
first ResBlock of every down and up level (arXiv 2308.08089, Sec. 3.2 "Multiscale Fusion"; the
official ``VideoUNet_flow``). This class is diffusers' ``UNetSpatioTemporalConditionModel`` with
those parts added (``flow_encoder.py``), so it keeps diffusers' parameter names, ``from_pretrained``
/ ``save_pretrained``, attention processors and gradient checkpointing.

Mapping of the official call to this one (``VideoUNet_flow.forward`` -> ``forward``):

- ``x [B*T, 8, h, w]`` -> ``sample [B, T, 8, h, w]``;
- ``timesteps`` (``c_noise = 0.25 ln sigma``, one per frame) -> ``timestep`` ``[B]``, the same value;
- ``context [B*T, 1, D]`` -> ``encoder_hidden_states [B, 1, D]`` (constant over a video's frames);
- ``y = [emb(fps_id) | emb(motion_bucket_id) | emb(cond_aug)]`` -> ``added_time_ids [B, 3] =
  (fps_id, motion_bucket_id, cond_aug)``: diffusers' ``add_time_proj`` (flip_sin_to_cos, no shift)
  computes exactly the official ``timestep_embedding`` (cos first, ``f_i = 10000^(-i/128)``). The
  official demo passes ``fps_id = 4`` as is (diffusers' SVD pipeline passes ``fps - 1``).
- ``flow [B, T, 2, 8h, 8w]`` in pixels, the same.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.resnet import ResnetBlock2D, SpatioTemporalResBlock, TemporalResnetBlock
from diffusers.models.unets.unet_spatio_temporal_condition import (
    UNetSpatioTemporalConditionModel,
    UNetSpatioTemporalConditionOutput,
)

from dragnuwa.svd.flow_encoder import DragFlowEncoder, FlowResnetBlock2D

# sgm's ResBlocks use GroupNorm32 (eps 1e-5) everywhere; diffusers' SVD blocks use 1e-6 in some of them.
RESNET_EPS = 1e-5
# The embedding size of each of SVD's added conditions (fps id, motion bucket id, noise augmentation):
# the official conditioner's ConcatTimestepEmbedderND(outdim=256).
ADDED_ID_DIM = 256

# DragNUWA 1.5's VideoUNet_flow arguments (the official DragNUWA_net.Args.network_config, filled in
# with the constructor's defaults).
OFFICIAL_FULL_ARGS: dict[str, Any] = {
    "in_channels": 8, "model_channels": 320, "out_channels": 4, "num_res_blocks": 2,
    "attention_resolutions": [4, 2, 1], "dropout": 0.0, "channel_mult": [1, 2, 4, 4], "conv_resample": True,
    "dims": 2, "num_classes": "sequential", "use_checkpoint": True, "num_heads": -1, "num_head_channels": 64,
    "num_heads_upsample": -1, "use_scale_shift_norm": False, "resblock_updown": False, "transformer_depth": 1,
    "transformer_depth_middle": None, "context_dim": 1024, "time_downup": False, "time_context_dim": None,
    "extra_ff_mix_layer": True, "use_spatial_context": True, "merge_strategy": "learned_with_images",
    "merge_factor": 0.5, "spatial_transformer_attn_type": "softmax-xformers", "video_kernel_size": [3, 1, 1],
    "use_linear_in_transformer": True, "adm_in_channels": 768, "disable_temporal_crossattention": False,
    "max_ddpm_temb_period": 10000, "flow_dim_scale": 1,
}


def diffusers_config_from_official(args: Mapping[str, Any]) -> dict[str, Any]:
    """The ``DragNUWASVDUNet`` config equal to the official ``VideoUNet_flow(**args)``.

    Raises ``ValueError`` naming an argument this port does not implement (a value the official
    DragNUWA 1.5 never uses, such as scale-shift norm or conv-resample off).
    """
    a = {**{k: v for k, v in OFFICIAL_FULL_ARGS.items() if k not in ("in_channels", "model_channels",
                                                                         "out_channels", "num_res_blocks",
                                                                         "attention_resolutions")},
         **dict(args)}
    required = ("in_channels", "model_channels", "out_channels", "num_res_blocks", "attention_resolutions",
                "context_dim")
    missing = [k for k in required if k not in a or a[k] is None]
    if missing:
        raise ValueError(f"the official UNet arguments lack {', '.join(missing)}")
    supported = {
        "dims": 2, "num_classes": "sequential", "use_scale_shift_norm": False, "resblock_updown": False,
        "time_downup": False, "extra_ff_mix_layer": True, "use_spatial_context": True,
        "merge_strategy": "learned_with_images", "use_linear_in_transformer": True,
        "disable_temporal_crossattention": False, "max_ddpm_temb_period": 10000, "conv_resample": True,
    }
    for key, value in supported.items():
        if a[key] != value:
            raise ValueError(f"official UNet argument {key}={a[key]!r} is not supported (DragNUWA 1.5 uses {value!r})")
    if list(a["video_kernel_size"]) != [3, 1, 1]:
        raise ValueError(f"official UNet argument video_kernel_size={a['video_kernel_size']!r} is not supported")
    if a["time_context_dim"] not in (None, a["context_dim"]):
        raise ValueError("official UNet argument time_context_dim must be None (use_spatial_context takes context_dim)")

    mc, mult = int(a["model_channels"]), list(a["channel_mult"])
    if mult[0] != 1:
        raise ValueError("channel_mult must start with 1 (the official flow stem has model_channels outputs)")
    levels = len(mult)
    block_out = [mc * m for m in mult]
    attn = [2 ** level in set(a["attention_resolutions"]) for level in range(levels)]
    depth = a["transformer_depth"]
    depth = [int(depth)] * levels if isinstance(depth, int) else [int(d) for d in depth]
    if a["transformer_depth_middle"] not in (None, depth[-1]):
        raise ValueError("transformer_depth_middle must equal the last level's transformer_depth")
    if a["num_head_channels"] == -1:
        heads = [int(a["num_heads"])] * levels
    else:
        heads = [c // int(a["num_head_channels"]) for c in block_out]
    adm = int(a["adm_in_channels"])
    if adm % ADDED_ID_DIM:
        raise ValueError(f"adm_in_channels {adm} is not a multiple of {ADDED_ID_DIM} (one embedding per added id)")
    return {
        "in_channels": int(a["in_channels"]),
        "out_channels": int(a["out_channels"]),
        "down_block_types": [("CrossAttnDownBlockSpatioTemporal" if at else "DownBlockSpatioTemporal") for at in attn],
        "up_block_types": [("CrossAttnUpBlockSpatioTemporal" if at else "UpBlockSpatioTemporal")
                           for at in reversed(attn)],
        "block_out_channels": block_out,
        "addition_time_embed_dim": ADDED_ID_DIM,
        "projection_class_embeddings_input_dim": adm,
        "layers_per_block": int(a["num_res_blocks"]),
        "cross_attention_dim": int(a["context_dim"]),
        "transformer_layers_per_block": depth,
        "num_attention_heads": heads,
        "flow_dim_scale": int(a["flow_dim_scale"]),
    }


class DragNUWASVDUNet(UNetSpatioTemporalConditionModel):
    """Stable Video Diffusion's UNet conditioned on a dense drag flow (DragNUWA 1.5).

    The config is diffusers' ``UNetSpatioTemporalConditionModel`` config plus ``flow_dim_scale``
    (flow-encoder channels = level channels / flow_dim_scale; 1 in DragNUWA 1.5). Build it from the
    official constructor arguments with ``from_official_config``; load a converted checkpoint with
    ``from_pretrained(folder, subfolder="unet")`` (``dragnuwa convert``).
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 8,
        out_channels: int = 4,
        down_block_types: Sequence[str] = ("CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
                                           "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types: Sequence[str] = ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal",
                                         "CrossAttnUpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels: Sequence[int] = (320, 640, 1280, 1280),
        addition_time_embed_dim: int = 256,
        projection_class_embeddings_input_dim: int = 768,
        layers_per_block: int | Sequence[int] = 2,
        cross_attention_dim: int | Sequence[int] = 1024,
        transformer_layers_per_block: int | Sequence[int] = 1,
        num_attention_heads: int | Sequence[int] = (5, 10, 20, 20),
        num_frames: int = 25,
        flow_dim_scale: int = 1,
    ):
        super().__init__(
            sample_size=sample_size, in_channels=in_channels, out_channels=out_channels,
            down_block_types=tuple(down_block_types), up_block_types=tuple(up_block_types),
            block_out_channels=tuple(block_out_channels), addition_time_embed_dim=addition_time_embed_dim,
            projection_class_embeddings_input_dim=projection_class_embeddings_input_dim,
            layers_per_block=layers_per_block, cross_attention_dim=cross_attention_dim,
            transformer_layers_per_block=transformer_layers_per_block, num_attention_heads=num_attention_heads,
            num_frames=num_frames,
        )
        self.flow_encoder = DragFlowEncoder(block_out_channels, flow_dim_scale)
        # The first resnet of every down level and of every up level gets the flow modulation; up
        # level i is UNet level L-1-i and reads flow stage L-1-i.
        levels = len(block_out_channels)
        self._flow_blocks: list[tuple[int, FlowResnetBlock2D]] = []
        for level, block in enumerate(self.down_blocks):
            self._add_modulation(block.resnets[0], level, block_out_channels[level] // flow_dim_scale)
        for i, block in enumerate(self.up_blocks):
            level = levels - 1 - i
            self._add_modulation(block.resnets[0], level, block_out_channels[level] // flow_dim_scale)
        for module in self.modules():
            if isinstance(module, (ResnetBlock2D, TemporalResnetBlock)):
                module.norm1.eps = module.norm2.eps = RESNET_EPS

    def _add_modulation(self, resnet: SpatioTemporalResBlock, level: int, flow_channels: int) -> None:
        old = resnet.spatial_res_block
        new = FlowResnetBlock2D(
            flow_channels=flow_channels, in_channels=old.in_channels, out_channels=old.out_channels,
            temb_channels=old.time_emb_proj.in_features, eps=RESNET_EPS,
        )
        resnet.spatial_res_block = new
        self._flow_blocks.append((level, new))

    @staticmethod
    def config_from_official(unet_constructor_args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """This class's config for the official ``VideoUNet_flow(**unet_constructor_args)`` (default:
        the full-size DragNUWA 1.5 UNet); see ``diffusers_config_from_official``."""
        return diffusers_config_from_official(unet_constructor_args or OFFICIAL_FULL_ARGS)

    @classmethod
    def from_official_config(cls, unet_constructor_args: Mapping[str, Any] | None = None, **kwargs) -> "DragNUWASVDUNet":
        """A randomly initialised UNet with the architecture of ``VideoUNet_flow(**unet_constructor_args)``
        (default: the full-size DragNUWA 1.5 one). ``kwargs`` go to the constructor unchanged."""
        return cls(**cls.config_from_official(unet_constructor_args), **kwargs)

    def encode_flow(self, flow: torch.Tensor) -> list[torch.Tensor]:
        """The flow encoder's features, one ``[B, T, C_k, h/2^k, w/2^k]`` tensor per UNet level.

        ``flow`` is ``[B, T, 2, 8h, 8w]`` in pixels (channel 0 = dx, 1 = dy). The features do not
        depend on the timestep: compute them once per video and pass them as ``flow_features`` to
        every denoising step (and both halves of classifier-free guidance, which share the flow).
        """
        if flow.ndim != 5 or flow.shape[2] != 2:
            raise ValueError(f"flow must be [batch, frames, 2, height, width], got {tuple(flow.shape)}")
        param = self.conv_in.weight
        return self.flow_encoder(flow.to(device=param.device, dtype=param.dtype))

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        added_time_ids: torch.Tensor,
        flow: torch.Tensor | None = None,
        return_dict: bool = True,
        flow_features: Sequence[torch.Tensor] | None = None,
    ) -> UNetSpatioTemporalConditionOutput | tuple:
        """One denoising step (diffusers' SVD UNet forward plus the flow).

        Args:
            sample: ``[B, T, in_channels, h, w]`` (noisy latents scaled by c_in, concatenated with
                the conditioning frame's latents).
            timestep: ``[B]`` or a scalar, the EDM ``c_noise = 0.25 ln sigma``.
            encoder_hidden_states: ``[B, 1, cross_attention_dim]`` (CLIP image embedding).
            added_time_ids: ``[B, 3]`` = (fps id, motion bucket id, noise augmentation).
            flow: ``[B, T, 2, 8h, 8w]`` drag flow in pixels; or give ``flow_features`` from
                ``encode_flow`` instead (either may be batched once and broadcast over a doubled
                guidance batch: a batch of ``B/2`` is repeated).
        Returns:
            ``UNetSpatioTemporalConditionOutput`` with ``sample`` ``[B, T, out_channels, h, w]``, or
            a tuple when ``return_dict`` is False.
        """
        if flow_features is None:
            if flow is None:
                raise ValueError("DragNUWASVDUNet needs `flow` or `flow_features`")
            flow_features = self.encode_flow(flow)
        flow_features = list(flow_features)
        if len(flow_features) != len(self.flow_encoder.stages):
            raise ValueError(f"expected {len(self.flow_encoder.stages)} flow feature maps, got {len(flow_features)}")
        batch, frames = sample.shape[:2]
        for k, f in enumerate(flow_features):
            if f.shape[1] != frames:
                raise ValueError(f"flow has {f.shape[1]} frames, the sample {frames}")
            if f.shape[0] != batch:
                if batch % f.shape[0]:
                    raise ValueError(f"flow batch {f.shape[0]} does not divide the sample batch {batch}")
                f = f.repeat(batch // f.shape[0], 1, 1, 1, 1)
            flow_features[k] = f.to(device=sample.device, dtype=sample.dtype)
        # diffusers' blocks call their resnets without extra arguments, so each modulated block
        # reads its level's features from itself; they stay set until the next call (gradient
        # checkpointing recomputes the block during backward).
        for level, block in self._flow_blocks:
            block.flow_features = flow_features[level]
        return super().forward(sample, timestep, encoder_hidden_states, added_time_ids, return_dict=return_dict)
