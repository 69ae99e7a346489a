"""Training the frame autoencoder on procedural frames and real-photo crops.

The autoencoder is trained alone (reconstruction loss), then frozen for video training.
After training, ``scale`` is set to 1 / std of the latents so diffusion sees ~unit variance.
The result is a model file (`save_model`) whose ``autoencoder.*`` weights later runs load.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dragnuwa.errors import UserError, atomic_write_text, check_output
from dragnuwa.training.config import AutoencoderTrainConfig, load_config, to_yaml

HELD_OUT_SEED = 2_000_000  # procedural seeds for the PSNR check, never used in training


def frame_batch(rng: np.random.Generator, n: int, size: tuple[int, int], photo_fraction: float,
                first_seed: int = 0, frames: int = 0):
    """``n`` frames ``[n, 3, H, W]`` in [-1, 1]: random frames of random procedural clips, some photo
    crops. ``frames`` > 0: also each one's first frame (a reference decoder's input), the frames then
    drawn from ``frames``-frame clips, and a photo's first frame a crop of it shifted as a camera pan
    would -> ``(frames, first frames)``."""
    import cv2

    from dragnuwa.data.synthetic import PHOTOS, _photo, render_clip
    from dragnuwa.video import to_tensor

    out, first = [], []
    for _ in range(n):
        if rng.random() < photo_fraction:
            img = _photo(list(PHOTOS)[rng.integers(len(PHOTOS))])
            c = int(min(img.shape[:2]) * rng.uniform(0.15, 1.0))
            y, x = rng.integers(0, img.shape[0] - c + 1), rng.integers(0, img.shape[1] - c + 1)
            out.append(cv2.resize(img[y:y + c, x:x + c], size, interpolation=cv2.INTER_AREA))
            if frames:  # the first frame some way back along a pan (up to 15% of the crop), in the photo
                y0, x0 = (int(np.clip(v + rng.integers(-c // 7, c // 7 + 1), 0, m - c))
                          for v, m in ((y, img.shape[0]), (x, img.shape[1])))
                first.append(cv2.resize(img[y0:y0 + c, x0:x0 + c], size, interpolation=cv2.INTER_AREA))
        else:
            clip = render_clip(first_seed + int(rng.integers(0, 900_000)), max(2, frames), size)
            out.append(clip.frames[int(rng.integers(0, len(clip.frames)))])
            first.append(clip.frames[0])
    if frames:
        return to_tensor(np.stack(out)), to_tensor(np.stack(first))
    return to_tensor(np.stack(out))


def held_out_psnr(ae, size: tuple[int, int], n: int = 64) -> float:
    """PSNR (dB) on frames of held-out procedural clips (a reference decoder given their first frames)."""
    from dragnuwa.data.synthetic import render_clip
    from dragnuwa.models.autoencoder import psnr
    from dragnuwa.video import to_tensor

    clips = [render_clip(HELD_OUT_SEED + i, 2, size).frames for i in range(n)]
    frames, first = (to_tensor(np.stack([c[k] for c in clips])) for k in (1, 0))
    with torch.no_grad():
        return psnr(ae(frames, first), frames)


def train_autoencoder(cfg: AutoencoderTrainConfig, resume: bool = False) -> Path:
    from dragnuwa.models.autoencoder import reconstruction_loss
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA, load_model, save_model
    from dragnuwa.models.track_decoder import PLANES

    out = Path(cfg.out_dir)
    check_output(out, folder=True, what="out_dir")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", to_yaml(cfg))
    mcfg = get_preset(cfg.model)
    mcfg.autoencoder.reference = cfg.reference
    mcfg.autoencoder.tracks = cfg.tracks
    model = DragNUWA(mcfg)
    if cfg.init:
        from dragnuwa.training.checkpoint import load_weights_into

        src = load_weights_into(model, cfg.init, prefix="autoencoder.")
        if cfg.reference and not src.autoencoder.reference:
            model.autoencoder.reference_encoder.copy_encoder(model.autoencoder.encoder)  # a new reference decoder
    elif cfg.decoder_only:
        raise UserError("decoder_only needs init: the model file whose encoder to keep")
    ae = model.autoencoder
    reference = model.cfg.autoencoder.reference  # also when init brought a reference decoder
    tracks = model.cfg.autoencoder.tracks  # the same for a track decoder
    size = (model.cfg.width, model.cfg.height)
    ae.encoder.requires_grad_(not cfg.decoder_only)
    opt = torch.optim.AdamW([p for p in ae.parameters() if p.requires_grad], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr * 0.05)
    step = 0
    ckpt = out / "checkpoint.pt"
    if resume:
        if not ckpt.is_file():
            raise UserError(f"no autoencoder checkpoint to resume in {out}")
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        ae.load_state_dict(state["ae"]), opt.load_state_dict(state["opt"]), sched.load_state_dict(state["sched"])
        step = state["step"]
    pairs, n_pairs = None, 0
    if cfg.samples_from:  # the video model's own latents -> true frames (training/sample_pairs.py)
        from dragnuwa.training.sample_pairs import load_or_build_sample_pairs, pair_batch

        pairs = load_or_build_sample_pairs(out / "sample_pairs.pt", cfg.samples_from, cfg.sample_clips,
                                           cfg.sample_seed, cfg.sample_steps)
        n_pairs = max(1, round(cfg.batch_size * cfg.sample_share))
        if tracks:
            from dragnuwa.training.sample_pairs import scene_tracks

            pairs["tracks"] = scene_tracks(len(pairs["z"]), cfg.sample_seed, model.cfg.frames, size)
    log = out / "log.jsonl"
    bar = tqdm(total=cfg.steps, initial=step, desc="autoencoder", unit="step")
    t0 = time.time()
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step])
        # (latents, target frames, loss weights, first frames, track planes): sampled pairs, then
        # fresh frames through the encoder, whose round trip keeps the decoder sharp on clean latents
        # (a track decoder sees no tracks with them, as when the trajectory is dropped).
        parts = []
        if pairs is not None:
            parts.append(pair_batch(pairs, n_pairs, torch.Generator().manual_seed(cfg.seed * 1_000_003 + step),
                                    cfg.moving_weight))
        if cfg.batch_size > n_pairs:
            # A plain decoder's frames come as before: of 2-frame clips, with no first frames to render.
            x, first = (frame_batch(rng, cfg.batch_size - n_pairs, size, cfg.photo_fraction, frames=model.cfg.frames)
                        if reference else (frame_batch(rng, cfg.batch_size - n_pairs, size, cfg.photo_fraction), None))
            with torch.set_grad_enabled(not cfg.decoder_only):
                z = ae.encode(x)
            no_tracks = torch.zeros(len(x), PLANES, *x.shape[-2:]) if tracks else None
            parts.append((z, x, torch.ones_like(x[:, :1]), first, no_tracks))
        z, target, weight, first, planes = zip(*parts)
        z, target, weight = torch.cat(z), torch.cat(target), torch.cat(weight)
        recon = ae.decode(z, torch.cat(first) if reference else None, torch.cat(planes) if tracks else None)
        loss = reconstruction_loss(recon, target, weight if cfg.moving_weight else None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.log_every == 0:
            with open(log, "a") as fh:
                fh.write(json.dumps({"step": step, "loss": loss.item(), "sec": time.time() - t0}) + "\n")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            from dragnuwa.errors import atomic_path

            with atomic_path(ckpt) as tmp:
                torch.save({"ae": ae.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                            "step": step}, tmp)
    bar.close()
    # Latent scale for unit variance (stored in the config and the buffer); kept with a frozen encoder.
    if cfg.decoder_only:
        scale = float(ae.scale)
    else:
        with torch.no_grad():
            z = ae.encoder(frame_batch(np.random.default_rng(123), 64, size, 0.0))
            scale = float(1.0 / z.std())
    ae.scale.fill_(scale)
    model.cfg.autoencoder.scale = scale
    value = held_out_psnr(ae, size)
    final = save_model(out / "model.safetensors", model, extra={"psnr_held_out": value, "steps": step})
    atomic_write_text(out / "metrics.json", json.dumps({"psnr_held_out_db": value, "latent_scale": scale,
                                                        "steps": step}) + "\n")
    print(f"autoencoder: held-out PSNR {value:.2f} dB, latent scale {scale:.3f}")
    load_model(final)  # fail now, not later, if the file does not round-trip
    return final


def train_autoencoder_from_config(config_path, resume=False, max_steps=None, out_dir=None, init=None,
                                  decoder_only=False) -> Path:
    """`dragnuwa train-autoencoder`."""
    cfg = load_config(config_path, AutoencoderTrainConfig)
    if init is not None:
        cfg.init = init
    cfg.decoder_only = cfg.decoder_only or decoder_only
    if max_steps is not None:
        cfg.steps = max_steps
    if out_dir is not None:
        cfg.out_dir = out_dir
    from dragnuwa.paths import check_run_paths
    from dragnuwa.training.config import run_paths

    check_run_paths(*run_paths(cfg, config_path))
    path = train_autoencoder(cfg, resume=resume)
    print(path)
    return path
