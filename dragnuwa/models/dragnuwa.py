"""The DragNUWA network F (raw, before EDM preconditioning), its conditions, and weight files.

``DragNUWA.forward(x_in, c_noise, cond)`` fuses the three controls (paper Sec. 3.3): the text
tokens by cross-attention, the first-frame latent concatenated on every frame, and the
displacement maps through the trajectory encoder into every UNet resolution (with
``cfg.traj_cumulative``, also their displacement from frame 0, pooled into the UNet input).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from dragnuwa.errors import UserError, atomic_path
from dragnuwa.models.autoencoder import Autoencoder
from dragnuwa.models.config import ModelConfig, config_from_dict, config_to_dict
from dragnuwa.models.trajectory_encoder import TrajectoryEncoder, cumulative_displacement
from dragnuwa.models.unet import VideoUNet


@dataclass
class Cond:
    """The three controls for a batch: text tokens ``[B, L, D]`` + mask ``[B, L]``, the first-frame
    latent ``[B, C, h, w]`` and displacement maps ``[B, T, 2, H, W]`` (pixels)."""

    text: torch.Tensor
    text_mask: torch.Tensor
    image: torch.Tensor
    maps: torch.Tensor

    def drop(self, keep_text: torch.Tensor, keep_image: torch.Tensor, keep_traj: torch.Tensor) -> "Cond":
        """Zero the dropped conditions (bool ``[B]`` masks, True = keep). Used for training
        dropout (~10% each, independent) and as the null condition of guidance."""
        def m(x, keep):
            return x * keep.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        return Cond(m(self.text, keep_text), self.text_mask & keep_text[:, None], m(self.image, keep_image),
                    m(self.maps, keep_traj))

    @staticmethod
    def cat(conds: list["Cond"]) -> "Cond":
        return Cond(*(torch.cat([getattr(c, f) for c in conds]) for f in ("text", "text_mask", "image", "maps")))

    def to(self, device) -> "Cond":
        return Cond(self.text.to(device), self.text_mask.to(device), self.image.to(device), self.maps.to(device))

    def __len__(self) -> int:
        return self.text.shape[0]


class DragNUWA(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.autoencoder = Autoencoder(cfg.autoencoder)
        self.trajectory_encoder = TrajectoryEncoder(cfg)
        self.unet = VideoUNet(cfg)
        self._traj_memo: tuple | None = None

    def trajectory_inputs(self, maps: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Trajectory features per UNet level (Multiscale Fusion, paper Sec. 3.3) and, with
        ``traj_cumulative``, the pooled displacement from frame 0 -> ``(features, pooled [B, T, 2, h, w])``.

        Both depend on the maps alone, not on the noisy latents or sigma, so at inference (grad off)
        they are computed once per maps tensor and reused by every sampler step (~20% of a step).
        The memo holds that tensor, so a new or edited one can never hit it by a reused address.
        """
        memo, version = self._traj_memo, _version(maps)
        if memo is not None and not torch.is_grad_enabled() and memo[0] is maps and memo[1] == version:
            return memo[2]
        b = maps.shape[0]
        cumulative = pooled = None
        if self.cfg.traj_cumulative:
            cumulative = cumulative_displacement(maps)
            f = self.cfg.autoencoder.factor
            pooled = F.avg_pool2d(rearrange(cumulative, "b t c h w -> (b t) c h w"), f)
            pooled = rearrange(pooled, "(b t) c h w -> b t c h w", b=b) / self.trajectory_encoder.cum_scale
        out = (self.trajectory_encoder(maps, cumulative), pooled)
        self._traj_memo = None if torch.is_grad_enabled() or version is None else (maps, version, out)
        return out

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond: Cond) -> torch.Tensor:
        """The network F of EDM: ``x_in [B, T, C, h, w]``, ``c_noise [B]`` -> ``[B, T, C, h, w]``."""
        b, t = x_in.shape[:2]
        image = cond.image[:, None].expand(-1, t, -1, -1, -1)
        traj, pooled = self.trajectory_inputs(cond.maps)
        inputs = [x_in, image] + ([pooled] if pooled is not None else [])
        x = rearrange(torch.cat(inputs, dim=2), "b t c h w -> (b t) c h w")
        # A zero token that is always attended keeps cross-attention defined for the null prompt.
        pad = torch.zeros_like(cond.text[:, :1])
        text = torch.cat([pad, cond.text], dim=1)
        mask = torch.cat([torch.ones_like(cond.text_mask[:, :1]), cond.text_mask], dim=1)
        out = self.unet(x, c_noise, t, text, mask, traj)
        return rearrange(out, "(b t) c h w -> b t c h w", b=b)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        f = self.cfg.autoencoder.factor
        return self.cfg.autoencoder.latent_channels, self.cfg.height // f, self.cfg.width // f


def _version(t: torch.Tensor) -> int | None:
    """The tensor's in-place edit counter (None for inference-mode tensors, which keep none)."""
    try:
        return t._version
    except RuntimeError:
        return None


def save_model(path: str | Path, model: DragNUWA, half: bool = False, extra: dict | None = None,
               only: str = "") -> Path:
    """Write the weights as safetensors (config JSON in the metadata), atomically; with ``only``, just
    the weights whose names start with it (a part for training, read back by ``read_model_file``)."""
    from safetensors.torch import save_file

    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu()
             for k, v in model.state_dict().items() if k.startswith(only)}
    meta = {"format": "dragnuwa", "config": json.dumps(config_to_dict(model.cfg)), "extra": json.dumps(extra or {})}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return Path(path)


def read_model_file(path: str | Path, need_config: bool = True) -> tuple[ModelConfig | None, dict]:
    """A model file's config (from its metadata) and its tensors, as stored; it may hold only some
    of a model's weights (e.g. the autoencoder's, for training). Missing, corrupt or foreign files
    raise ``UserError`` with one line."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise UserError(f"corrupt model file {path}: {str(e).splitlines()[0][:120]}") from None
    if meta.get("format") != "dragnuwa" or "config" not in meta:
        if need_config:
            raise UserError(f"{path} is not a dragnuwa model file (no config in its metadata)")
        return None, state
    return config_from_dict(json.loads(meta["config"])), state


def load_model(path: str | Path, cfg: ModelConfig | None = None) -> DragNUWA:
    """Read a model file written by ``save_model``; the model is in eval mode, fp32.

    Missing, corrupt or mismatching files raise ``UserError`` with one line.
    """
    stored, state = read_model_file(path, need_config=cfg is None)
    model = DragNUWA(cfg or stored)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as e:
        first = [line.strip() for line in str(e).splitlines() if line.strip()][1:2] or [str(e)[:120]]
        raise UserError(f"model file {path} does not match the config: {first[0][:160]}") from None
    return model.eval()
