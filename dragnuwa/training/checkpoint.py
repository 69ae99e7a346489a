"""Atomic checkpoints: weights (safetensors, via save_model) + optimizer/RNG state (.pt).

A run folder holds ``checkpoint/model.safetensors``, ``checkpoint/ema.safetensors`` and
``checkpoint/state.pt``; ``state.pt`` is written last, so a checkpoint is complete iff it exists
and names the same step as the weights' metadata.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from dragnuwa.errors import UserError, atomic_path
from dragnuwa.models.dragnuwa import load_model, read_model_file, save_model


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(folder: Path, model, ema_model, optimizer, scheduler, step: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder / "model.safetensors", model, extra={"step": step})
    save_model(folder / "ema.safetensors", ema_model, extra={"step": step})
    with atomic_path(folder / "state.pt") as tmp:
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng_state()}, tmp)


def load_checkpoint(folder: Path, model, ema_model, optimizer, scheduler) -> int:
    """Restore everything saved by ``save_checkpoint``; returns the step to continue from."""
    state_path = folder / "state.pt"
    if not state_path.is_file():
        raise UserError(f"no checkpoint to resume in {folder} (missing state.pt)")
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for a damaged pickle
        raise UserError(f"corrupt checkpoint state {state_path}: {e.__class__.__name__}") from None
    for target, name in ((model, "model.safetensors"), (ema_model, "ema.safetensors")):
        loaded = load_model(folder / name, cfg=target.cfg)
        target.load_state_dict(loaded.state_dict())
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return int(state["step"])


# ModelConfig fields that set how the model samples by default, not what it is.
SAMPLING_DEFAULTS = ("steps", "sampler", "text_guidance", "traj_guidance", "motion_init", "fps")


def load_weights_into(model, path: str | Path, prefix: str = ""):
    """Copy weights from a model file into ``model`` (only keys starting with ``prefix``) -> the
    file's ``ModelConfig``. The file may hold only those weights: `offline_gpu_train.sh prepare`
    carries an autoencoder so."""
    src_cfg, stored = read_model_file(path)
    if prefix in ("", "autoencoder."):  # these loads bring the autoencoder
        # The latent scale is set by autoencoder training; keep the config (saved with the model) in step.
        model.cfg.autoencoder.scale = src_cfg.autoencoder.scale
        # A reference or track decoder (models/reference.py, models/track_decoder.py) comes with its
        # kind. The other way round, a plain decoder's weights load into one, whose extra inputs add
        # nothing until trained.
        grown = [k for k in ("reference", "tracks")
                 if getattr(src_cfg.autoencoder, k) and not getattr(model.cfg.autoencoder, k)]
        if grown:
            from dragnuwa.models.autoencoder import Autoencoder

            for k in grown:
                setattr(model.cfg.autoencoder, k, True)
            model.autoencoder = Autoencoder(model.cfg.autoencoder)
    if prefix == "":
        # A fine-tune keeps the sampling defaults chosen for the model it starts from (export_model.py
        # re-chooses them), rather than falling back to the preset's.
        for name in SAMPLING_DEFAULTS:
            setattr(model.cfg, name, getattr(src_cfg, name))
        # The weights were trained under the source's preconditioning; the same scalings keep them valid.
        model.cfg.sigma_data = src_cfg.sigma_data
    state = {k: v.float() if v.is_floating_point() else v for k, v in stored.items() if k.startswith(prefix)}
    if not state:
        raise UserError(f"{path} holds no weights under {prefix!r}")
    state = _widen_inputs(state, model.state_dict())
    try:
        missing = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise UserError(f"{path} does not match the model: {str(e).splitlines()[-1].strip()[:160]}") from None
    wrong = [k for k in state if k in missing.unexpected_keys]
    if wrong:
        raise UserError(f"{path} does not match the model: unexpected key {wrong[0]}")
    return src_cfg


def save_autoencoder_only(src: str | Path, out: str | Path) -> Path:
    """The autoencoder's weights of model file ``src`` alone, with its config, as ``out`` (~1 MB for
    the small presets, against 33 MB with the rest): what a training config's ``autoencoder`` needs
    (``load_weights_into``), small enough to carry to an offline GPU machine."""
    return save_model(out, load_model(src), extra={"from": str(src)}, only="autoencoder.")


def transplant_networks(model, path: str | Path) -> list[str]:
    """Start ``model`` from the trajectory encoder and UNet of the model file at ``path``, which may use
    another autoencoder (other latent channels or size): every weight of the same name and shape is
    copied, and the rest keep their fresh initialisation, e.g. the UNet's first and last convs (their
    channels follow the latents) and a trajectory-encoder stride stage that finer latents do not need.
    The autoencoder and its latent scale are never touched. Returns the names left fresh."""
    src = {k: v for k, v in load_model(path).state_dict().items() if not k.startswith("autoencoder.")}
    own = model.state_dict()
    same = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    if not same:
        raise UserError(f"{path} shares no weights with the model: not a dragnuwa model of this architecture")
    model.load_state_dict(same, strict=False)
    return sorted(k for k in own if not k.startswith("autoencoder.") and k not in same)


def _widen_inputs(state: dict, target: dict) -> dict:
    """Let a model with extra input channels start from one without them (e.g. ``traj_cumulative``).

    A conv weight that matches except for more input channels is copied into the leading channels
    and the new ones are zero, so the widened model computes exactly what the source did.
    """
    out = dict(state)
    for k, v in state.items():
        t = target.get(k)
        if (t is not None and v.ndim == 4 and t.ndim == 4 and t.shape[1] > v.shape[1]
                and t.shape[0] == v.shape[0] and t.shape[2:] == v.shape[2:]):
            wide = torch.zeros_like(t)
            wide[:, :v.shape[1]] = v
            out[k] = wide
    return out
