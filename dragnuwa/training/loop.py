"""The training loop (Adaptive Training, paper Sec. 3.4), readable in one sitting.

Stage 1 trains with dense optical flow as the trajectory input; stage 2 continues from the
stage-1 weights (``init``) with 1..N sparse sampled tracks. Each condition is dropped
independently (``ModelConfig.p_drop_*``, ~10%) so any combination works at inference and
classifier-free guidance is possible. Runs single-process on CPU or under ``accelerate launch``.

Exact resume: the data order and all randomness are functions of (seed, step, rank), and the
optimizer / scheduler / RNG state is checkpointed with the weights.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from dragnuwa.errors import UserError, atomic_write_text
from dragnuwa.training.config import TrainConfig, load_config, to_yaml


def build_dataset(cfg: TrainConfig, model_cfg):
    from dragnuwa.data.dataset import ClipFolder, SyntheticClips

    size = (model_cfg.width, model_cfg.height)
    if cfg.data.source == "folder":
        return ClipFolder(cfg.data.root, model_cfg.frames, size, cfg.stage, cfg.data.max_tracks)
    return SyntheticClips(cfg.data.first_seed, cfg.data.count, model_cfg.frames, size, cfg.stage, cfg.data.max_tracks)


def batch_at(dataset, step: int, batch_size: int, rank: int, world: int) -> dict:
    """The batch of ``step`` for ``rank``: a deterministic walk over the dataset."""
    n = len(dataset)
    idx = [((step * world + rank) * batch_size + j) % n for j in range(batch_size)]
    items = [dataset[i] for i in idx]
    return {"video": torch.stack([it["video"] for it in items]), "text": [it["text"] for it in items],
            "maps": torch.stack([it["maps"] for it in items])}


def plot_losses(log_path: Path, png_path: Path) -> None:
    """Loss curve PNG from the JSONL log (raw and smoothed), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dragnuwa.errors import atomic_path

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    steps = [r["step"] for r in rows]
    losses = [r["loss"] for r in rows]
    smooth, acc = [], losses[0]
    for v in losses:
        acc = 0.9 * acc + 0.1 * v
        smooth.append(acc)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, losses, alpha=0.3, label="loss")
    ax.plot(steps, smooth, label="smoothed")
    ax.set_xlabel("step"), ax.set_ylabel("EDM loss"), ax.set_yscale("log"), ax.legend()
    ax.set_title(png_path.parent.name)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


class _Objective(torch.nn.Module):
    """EDM loss as a module forward (what accelerate / DDP wrap)."""

    def __init__(self, denoiser):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x0, cond, generator):
        return self.denoiser.loss(x0, cond, generator=generator)


def train(cfg: TrainConfig, resume: bool = False, model=None, dataset=None, text_encoder=None) -> Path:
    """Train per ``cfg``; returns the exported EMA model file. ``model``/``dataset``/``text_encoder``
    may be injected (tests); otherwise they are built from the config."""
    from accelerate import Accelerator

    from dragnuwa.diffusion.preconditioning import EDMDenoiser
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import Cond, DragNUWA, save_model
    from dragnuwa.models.text_encoder import shared_text_encoder
    from dragnuwa.training.checkpoint import load_checkpoint, load_weights_into, save_checkpoint
    from dragnuwa.training.ema import EMA

    out = Path(cfg.out_dir)
    ckpt = out / "checkpoint"
    if not resume and (ckpt / "state.pt").exists():
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out-dir")
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                              cpu=not torch.cuda.is_available())
    rank, world = accelerator.process_index, accelerator.num_processes
    torch.manual_seed(cfg.seed)

    # Model: trained autoencoder (frozen), optional init from an earlier stage.
    if model is None:
        model = DragNUWA(get_preset(cfg.model))
        if cfg.autoencoder:
            load_weights_into(model, cfg.autoencoder, prefix="autoencoder.")
        if cfg.init:
            load_weights_into(model, cfg.init)
    elif cfg.init:
        load_weights_into(model, cfg.init)
    model.autoencoder.requires_grad_(False)
    dataset = dataset if dataset is not None else build_dataset(cfg, model.cfg)
    text_encoder = text_encoder or shared_text_encoder()

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
    ema = EMA(model, cfg.ema_decay)
    step = load_checkpoint(ckpt, model, ema.model, optimizer, scheduler) if resume else 0
    # The loss is the module's forward so DistributedDataParallel sees it and syncs gradients.
    objective = _Objective(EDMDenoiser(model, model.cfg.sigma_data, p_mean=cfg.p_mean, p_std=cfg.p_std))
    objective, optimizer = accelerator.prepare(objective, optimizer)
    mcfg = model.cfg

    log_path = out / "log.jsonl"
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", to_yaml(cfg))
        if not resume and log_path.exists():
            log_path.unlink()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"stage {cfg.stage}", unit="step",
               disable=not accelerator.is_main_process)
    t_last = time.time()
    while step < cfg.steps:
        # Every random draw of this step comes from a generator keyed by (seed, step, rank).
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 97 + rank)
        total = 0.0
        for micro in range(cfg.grad_accum):
            batch = batch_at(dataset, step * cfg.grad_accum + micro, cfg.batch_size, rank, world)
            with torch.no_grad():
                x0 = model.autoencoder.encode(batch["video"])  # [B, T, C, h, w]
                text, mask = text_encoder.encode(batch["text"])
            b = x0.shape[0]
            cond = Cond(text, mask, x0[:, 0], batch["maps"]).drop(
                torch.rand(b, generator=gen) >= mcfg.p_drop_text,
                torch.rand(b, generator=gen) >= mcfg.p_drop_image,
                torch.rand(b, generator=gen) >= mcfg.p_drop_traj)
            with accelerator.accumulate(objective), accelerator.autocast():
                loss = objective(x0, cond, gen)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad()
            total += loss.item() / cfg.grad_accum
        scheduler.step()
        ema.update(model, step)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{total:.4f}")
        if accelerator.is_main_process and (step % cfg.log_every == 0 or step == cfg.steps):
            now = time.time()
            row = {"step": step, "loss": total, "lr": scheduler.get_last_lr()[0],
                   "sec_per_step": (now - t_last) / cfg.log_every}
            t_last = now
            with open(log_path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(ckpt, model, ema.model, optimizer, scheduler, step)
                plot_losses(log_path, out / "loss.png")
    bar.close()
    final = out / "model.safetensors"
    if accelerator.is_main_process:
        save_model(final, ema.model, extra={"stage": cfg.stage, "steps": step})
    accelerator.wait_for_everyone()
    return final


def train_from_config(config_path, stage=None, init=None, resume=False, max_steps=None, out_dir=None) -> Path:
    """`dragnuwa train`: load the YAML config, apply command-line overrides, train."""
    cfg = load_config(config_path)
    if stage is not None:
        cfg.stage = stage
    if init is not None:
        cfg.init = init
    if max_steps is not None:
        cfg.steps = max_steps
    if out_dir is not None:
        cfg.out_dir = out_dir
    if cfg.stage == 2 and not cfg.init and not resume:
        print("note: stage 2 without --init starts from scratch (the paper continues from stage 1)")
    path = train(cfg, resume=resume)
    print(path)
    return path
