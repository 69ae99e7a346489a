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

from dragnuwa.errors import UserError, atomic_write_text, check_output
from dragnuwa.training.config import TrainConfig, load_config, to_yaml, validate


def build_dataset(cfg: TrainConfig, model_cfg):
    from dragnuwa.data.dataset import ClipFolder, SyntheticClips

    size = (model_cfg.width, model_cfg.height)
    if cfg.data.shards:  # streamed (dragnuwa/data/shard_stream.py), procedural clips mixed in
        from dragnuwa.data.shard_stream import ShardClips

        synthetic = SyntheticClips(cfg.data.first_seed, cfg.data.count, model_cfg.frames, size, cfg.stage,
                                   cfg.data.max_tracks) if cfg.data.synthetic_fraction > 0 else None
        return ShardClips(cfg.data.shards, model_cfg.frames, size, cfg.stage, cfg.data.max_tracks, cfg.seed,
                          synthetic, cfg.data.synthetic_fraction)
    if cfg.data.source == "folder":
        return ClipFolder(cfg.data.root, model_cfg.frames, size, cfg.stage, cfg.data.max_tracks)
    return SyntheticClips(cfg.data.first_seed, cfg.data.count, model_cfg.frames, size, cfg.stage, cfg.data.max_tracks,
                          animation=cfg.motion_init > 0, changed=cfg.changed_weight > 0)


def batch_at(dataset, step: int, batch_size: int, rank: int, world: int) -> dict:
    """The batch of ``step`` for ``rank``: a deterministic walk over the dataset. A dataset with
    ``sample(i, epoch)`` (``ClipFolder``) is told which pass over it this is, to vary what it draws."""
    n = len(dataset)
    passes = [divmod((step * world + rank) * batch_size + j, n) for j in range(batch_size)]
    if hasattr(dataset, "sample"):
        items = [dataset.sample(i, epoch) for epoch, i in passes]
    else:
        items = [dataset[i] for _, i in passes]
    batch = {"video": torch.stack([it["video"] for it in items]), "text": [it["text"] for it in items],
             "maps": torch.stack([it["maps"] for it in items])}
    for key in ("animation", "changed"):
        if key in items[0]:
            batch[key] = torch.stack([it[key] for it in items])
    return batch


class _Batches(torch.utils.data.Dataset):
    """Micro-batch k of the run (``batch_at``) as one item, so DataLoader workers can render ahead
    while the order stays a pure function of k (exact resume holds with any ``workers``)."""

    def __init__(self, dataset, batch_size: int, rank: int, world: int, first: int, last: int):
        self.dataset, self.batch_size, self.rank, self.world = dataset, batch_size, rank, world
        self.first, self.last = first, last

    def __len__(self) -> int:
        return self.last - self.first

    def __getitem__(self, k: int) -> dict:
        return batch_at(self.dataset, self.first + k, self.batch_size, self.rank, self.world)


def budget_spent(accelerator, t_start: float, max_minutes: float) -> bool:
    """Whether the run's wall-clock budget (``max_minutes``; 0: none) is spent. Any process out of time
    stops them all, at the same step (the reduce is a sync, so only several processes pay for it)."""
    out = max_minutes > 0 and time.time() - t_start > 60 * max_minutes
    if max_minutes > 0 and accelerator.num_processes > 1:
        flag = torch.tensor([float(out)], device=accelerator.device)
        out = accelerator.reduce(flag, "max").item() > 0
    return bool(out)


def _worker_init(_):
    import cv2

    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would oversubscribe


def micro_batches(dataset, cfg: TrainConfig, start_step: int, rank: int, world: int):
    """Iterator over the micro-batches from ``start_step`` on; ``cfg.workers`` processes render them."""
    if hasattr(dataset, "micro_batches"):  # a stream (shards) splits itself over ranks and workers
        yield from dataset.micro_batches(cfg.batch_size, start_step * cfg.grad_accum, cfg.steps * cfg.grad_accum,
                                         rank, world, cfg.workers)
        return
    items = _Batches(dataset, cfg.batch_size, rank, world, start_step * cfg.grad_accum, cfg.steps * cfg.grad_accum)
    if cfg.workers == 0:
        yield from (items[k] for k in range(len(items)))
        return
    # spawn, not fork: a child forked after OpenCV/OpenMP ran threads in this process can deadlock.
    loader = torch.utils.data.DataLoader(items, batch_size=None, shuffle=False, num_workers=cfg.workers,
                                         worker_init_fn=_worker_init, prefetch_factor=4,
                                         multiprocessing_context="spawn", pin_memory=torch.cuda.is_available())
    it = iter(loader)
    try:
        yield from it
    finally:
        # An early stop (time budget) ends the workers now, not amid interpreter exit. A worker whose
        # rendered batches are still queued, never to be read, can abort as it exits (PyTorch, with
        # large shared-memory tensors in flight); nothing is lost, so that is not reported as an error.
        try:
            it._shutdown_workers()
        except RuntimeError as err:
            if "killed by signal" not in str(err):
                raise
        del it


def plot_losses(log_path: Path, png_path: Path) -> None:
    """Loss curve PNG from the JSONL log (raw and smoothed), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dragnuwa.errors import atomic_path

    if not log_path.is_file():
        return
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

    def forward(self, x0, cond, generator, guide=None, guided=None, sigma_start=1.0, weight=None):
        return self.denoiser.loss(x0, cond, generator=generator, guide=guide, guided=guided, sigma_start=sigma_start,
                                  weight=weight)


def train(cfg: TrainConfig, resume: bool = False, model=None, dataset=None, text_encoder=None) -> Path:
    """Train per ``cfg``; returns the exported EMA model file. ``model``/``dataset``/``text_encoder``
    may be injected (tests); otherwise they are built from the config."""
    from accelerate import Accelerator

    from dragnuwa.diffusion.preconditioning import EDMDenoiser
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import Cond, DragNUWA, save_model
    from dragnuwa.models.text_encoder import shared_text_encoder
    from dragnuwa.training.checkpoint import load_checkpoint, load_weights_into, save_checkpoint, transplant_networks
    from dragnuwa.training.ema import EMA

    out = Path(cfg.out_dir)
    check_output(out, folder=True, what="out_dir")  # before the model and the data are built
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
    if cfg.init and cfg.init_networks_only:
        fresh = transplant_networks(model, cfg.init)
        if accelerator.is_main_process:
            print(f"init: trajectory encoder and UNet from {cfg.init}; left fresh: {', '.join(fresh) or 'none'}")
    elif cfg.init:
        load_weights_into(model, cfg.init)
    model.autoencoder.requires_grad_(False)
    if cfg.sigma_data > 0:
        if cfg.init and not cfg.init_networks_only and model.cfg.sigma_data != cfg.sigma_data \
                and accelerator.is_main_process:
            print(f"note: {cfg.init} was trained with sigma_data {model.cfg.sigma_data:g}; this run changes it "
                  f"to {cfg.sigma_data:g}, so its network must re-learn its output scale")
        model.cfg.sigma_data = cfg.sigma_data  # before the EMA copy, so the exported model carries it
    dataset = dataset if dataset is not None else build_dataset(cfg, model.cfg)
    text_encoder = (text_encoder or shared_text_encoder()).to(accelerator.device)
    if accelerator.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if cfg.workers == 0 and accelerator.is_main_process:
            print("note: workers 0 renders every clip in the training process, which will leave the GPU "
                  "waiting; set --workers (about one per spare CPU core)")

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
    ema = EMA(model, cfg.ema_decay)
    step = load_checkpoint(ckpt, model, ema.model, optimizer, scheduler) if resume else 0
    # The loss is the module's forward so DistributedDataParallel sees it and syncs gradients.
    objective = _Objective(EDMDenoiser(model, model.cfg.sigma_data, p_mean=cfg.p_mean, p_std=cfg.p_std))
    objective, optimizer = accelerator.prepare(objective, optimizer)
    ema.model.to(accelerator.device)  # prepare() moved the model; its average lives beside it
    mcfg = model.cfg

    log_path = out / "log.jsonl"
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", to_yaml(cfg))
        if not resume and log_path.exists():
            log_path.unlink()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"stage {cfg.stage}", unit="step",
               disable=not accelerator.is_main_process)
    t_last = t_start = time.time()
    logged = step
    batches = micro_batches(dataset, cfg, step, rank, world)
    dev = accelerator.device
    waited = 0.0  # seconds spent waiting for batches since the last log row
    while step < cfg.steps:
        # Every random draw of this step comes from a generator keyed by (seed, step, rank).
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 97 + rank)
        total = torch.zeros((), device=dev)
        for micro in range(cfg.grad_accum):
            t_wait = time.time()
            batch = next(batches)
            waited += time.time() - t_wait
            with torch.no_grad():
                x0 = model.autoencoder.encode(batch["video"].to(dev, non_blocking=True))  # [B, T, C, h, w]
                text, mask = text_encoder.encode(batch["text"])
            b = x0.shape[0]
            keep = [(torch.rand(b, generator=gen) >= p).to(dev) for p in
                    (mcfg.p_drop_text, mcfg.p_drop_image, mcfg.p_drop_traj)]
            cond = Cond(text, mask, x0[:, 0], batch["maps"].to(dev, non_blocking=True)).drop(*keep)
            guide = guided = None
            if cfg.motion_init > 0:
                # As at inference: motion init only with both the image and the trajectory kept.
                with torch.no_grad():
                    guide = model.autoencoder.encode(batch["animation"].to(dev, non_blocking=True))
                guided = (torch.rand(b, generator=gen) < cfg.motion_init_fraction).to(dev) & keep[1] & keep[2]
            weight = None
            if cfg.changed_weight > 0:
                # The share of each latent cell that changed surface, at the latent grid.
                f = mcfg.autoencoder.factor
                changed = torch.nn.functional.avg_pool2d(batch["changed"].to(dev), f)  # [B, T, h, w]
                weight = 1 + cfg.changed_weight * changed[:, :, None]
            with accelerator.accumulate(objective), accelerator.autocast():
                loss = objective(x0, cond, gen, guide, guided, cfg.motion_init, weight)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad()
            total += loss.detach() / cfg.grad_accum  # no .item() here: a sync every step idles the GPU
        scheduler.step()
        ema.update(model, step)
        step += 1
        bar.update(1)
        # A wall-clock budget (e.g. a lent GPU): stop here, checkpoint and export as at the last step.
        out_of_time = budget_spent(accelerator, t_start, cfg.max_minutes)
        if accelerator.is_main_process and (step % cfg.log_every == 0 or step == cfg.steps or out_of_time):
            now = time.time()
            total = total.item()
            bar.set_postfix(loss=f"{total:.4f}")
            # data_wait: the share of the wall clock spent waiting for rendered batches; near 1 means
            # the data workers, not the model, bound the speed (docs/training.md).
            row = {"step": step, "loss": total, "lr": scheduler.get_last_lr()[0],
                   "sec_per_step": (now - t_last) / (step - logged), "data_wait": waited / max(now - t_last, 1e-9)}
            t_last, logged, waited = now, step, 0.0
            with open(log_path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        if step % cfg.ckpt_every == 0 or step == cfg.steps or out_of_time:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(ckpt, model, ema.model, optimizer, scheduler, step)
                plot_losses(log_path, out / "loss.png")
        if out_of_time:
            bar.write(f"time budget of {cfg.max_minutes:g} min reached at step {step}")
            break
    batches.close()
    bar.close()
    final = out / "model.safetensors"
    if accelerator.is_main_process:
        save_model(final, ema.model, extra={"stage": cfg.stage, "steps": step})
    accelerator.wait_for_everyone()
    return final


def train_from_config(config_path, stage=None, init=None, resume=False, max_steps=None, out_dir=None,
                      batch_size=None, workers=None, max_minutes=None) -> Path:
    """`dragnuwa train`: load the YAML config, apply command-line overrides, train. A config with
    ``backend: svd`` trains DragNUWA on Stable Video Diffusion (dragnuwa/svd/training.py)."""
    from dragnuwa.training.config import config_backend

    if config_backend(config_path) == "svd":
        from dragnuwa.svd.training import train_from_config as train_svd

        return train_svd(config_path, stage=stage, init=init, resume=resume, max_steps=max_steps, out_dir=out_dir,
                         batch_size=batch_size, workers=workers, max_minutes=max_minutes)
    cfg = load_config(config_path)
    for name, value in (("batch_size", batch_size), ("workers", workers), ("max_minutes", max_minutes)):
        if value is not None:
            setattr(cfg, name, value)
    validate(cfg)
    if stage is not None:
        cfg.stage = stage
    if init is not None:
        cfg.init = init
    if max_steps is not None:
        cfg.steps = max_steps
    if out_dir is not None:
        cfg.out_dir = out_dir
    from dragnuwa.paths import check_run_paths
    from dragnuwa.training.config import run_paths

    check_run_paths(*run_paths(cfg, config_path))
    if cfg.stage == 2 and not cfg.init and not resume:
        print("note: stage 2 without --init starts from scratch (the paper continues from stage 1)")
    path = train(cfg, resume=resume)
    print(path)
    return path
