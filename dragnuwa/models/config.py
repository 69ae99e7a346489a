"""Typed model configs and named presets (`tiny` for tests, `small` bundled CPU model, `small_f2` the
same on finer latents, `base` for GPUs).

YAML/JSON is only the serialisation: ``config_to_dict`` / ``config_from_dict`` (which rejects
unknown keys and wrong types with a ``UserError`` naming the key).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from dragnuwa.config_io import dataclass_from_dict
from dragnuwa.errors import UserError


@dataclass
class AutoencoderConfig:
    channels: tuple[int, ...] = (32, 64, 64)  # one stride-2 stage between consecutive entries
    latent_channels: int = 8
    scale: float = 1.0  # multiplies latents to ~unit variance (set after autoencoder training)
    # The decoder also attends to the video's first frame (models/reference.py; not in the paper;
    # tried on the bundled model, not adopted: docs/training.md).
    reference: bool = False
    # The decoder also reads where each track is in the frame it decodes (models/track_decoder.py;
    # not in the paper; fitted to the model's own samples: docs/training.md).
    tracks: bool = False

    @property
    def factor(self) -> int:
        return 2 ** (len(self.channels) - 1)


@dataclass
class UNetConfig:
    channels: tuple[int, ...] = (64, 128, 192)  # one UNet resolution per entry
    attention_levels: tuple[int, ...] = (1, 2)  # levels with spatial self-/text cross-/temporal attention
    heads: int = 4
    text_dim: int = 384  # MiniLM token states
    groups: int = 16
    traj_channels: int = 32  # first stage width of the trajectory encoder


@dataclass
class ModelConfig:
    name: str = "small"
    height: int = 64
    width: int = 64
    frames: int = 14
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    sigma_data: float = 0.5
    # Sampling defaults.
    steps: int = 20
    sampler: str = "dpmpp_2m"
    text_guidance: float = 1.5
    traj_guidance: float = 2.0
    # Start sampling at this sigma from the noised cut-and-paste animation along the tracks
    # (``dragnuwa.motion_init``, SDEdit); 0 = from pure noise, as in the paper.
    motion_init: float = 0.0
    fps: float = 8.0
    # Independent condition dropout during training (paper Sec. 3.3), also enabling guidance.
    p_drop_text: float = 0.1
    p_drop_image: float = 0.1
    p_drop_traj: float = 0.1
    # Also give the model each frame's displacement from frame 0 (the per-frame maps chained, see
    # ``trajectory_encoder.cumulative_displacement``): into the trajectory encoder and, pooled, into
    # the UNet input. Not in the paper; without it a small model must integrate the per-frame steps
    # itself and, on a CPU budget, never learned to (docs/architecture.md). False = paper-exact input.
    traj_cumulative: bool = False


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(name="tiny", height=32, width=32, frames=4,
                        autoencoder=AutoencoderConfig(channels=(8, 16, 16), latent_channels=4),
                        unet=UNetConfig(channels=(16, 32), attention_levels=(1,), heads=2, groups=4,
                                        traj_channels=8), steps=4, traj_cumulative=True),
    "small": ModelConfig(traj_cumulative=True),
    # `small` on a 2x autoencoder (32x32x4 latents): the true clips through it score 0.10x a static
    # video's trajectory error, against 0.22x through the 4x one, whose floor is above issue #4's
    # 0.20 target (scripts/autoencoder_yardstick.py). About 4x the UNet work per step; not trained yet.
    "small_f2": ModelConfig(name="small_f2", autoencoder=AutoencoderConfig(channels=(32, 64), latent_channels=4),
                            traj_cumulative=True),
    "base": ModelConfig(name="base", height=256, width=256, frames=16,
                        autoencoder=AutoencoderConfig(channels=(64, 128, 256, 256), latent_channels=8),
                        unet=UNetConfig(channels=(192, 384, 576, 768), attention_levels=(1, 2, 3), heads=8,
                                        groups=32, traj_channels=64), steps=30, traj_cumulative=True),
}


def get_preset(name: str) -> ModelConfig:
    """A fresh copy of a named preset."""
    if name not in PRESETS:
        raise UserError(f"unknown model preset {name!r}; available: {', '.join(PRESETS)}")
    return config_from_dict(config_to_dict(PRESETS[name]))


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict) -> ModelConfig:
    """Rebuild a ``ModelConfig`` from its dict form (validated)."""
    return dataclass_from_dict(ModelConfig, data, "model")
