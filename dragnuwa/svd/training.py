"""Adaptive Training on Stable Video Diffusion (paper Sec. 3.4 on the SVD backend), in one loop.

Fine-tunes ``DragNUWASVDUNet`` from a Stable Video Diffusion folder / hub id, a converted DragNUWA
1.5 folder, or an earlier run (``init``). Trained: the flow encoder, the flow modulation, LoRA on
the UNet's attention and feed-forward layers (``dragnuwa/svd/lora.py``) and, when ``text`` is on,
the text adapter (``dragnuwa/svd/text.py``); everything else is frozen. Stage 1 feeds dense flow,
stage 2 sparse tracks spread by the official Gaussian (``train_data.py``). The loss is SVD's own
EDM objective (``edm.py``); image, trajectory and text are dropped independently for guidance.

A run folder holds:
- ``unet/`` (config.json + safetensors): the EMA weights with the LoRA merged, the layout
  ``dragnuwa convert`` writes, so ``dragnuwa generate --model RUN --svd SVD`` loads it;
- ``text_adapter/`` when text is on; ``dragnuwa_svd_train.json`` (stage, steps, the svd source);
- ``checkpoint/``: the trained parameters unmerged, their EMA, the optimizer, scheduler, step and
  RNG, for an exact resume (every random draw is keyed by (seed, step, rank, micro-batch)).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from dragnuwa.errors import UserError, atomic_path, atomic_write_text, check_output
from dragnuwa.svd import edm
from dragnuwa.svd.train_config import SVDTrainConfig, load_svd_config, to_yaml, validate

RUN_INFO = "dragnuwa_svd_train.json"
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# ----------------------------------------------------------------------------- model parts

@dataclass
class Parts:
    unet: torch.nn.Module
    vae: torch.nn.Module
    image_encoder: torch.nn.Module
    image_mean: list
    image_std: list
    text_projection: torch.nn.Module | None = None


def sources(cfg: SVDTrainConfig) -> tuple[str, str]:
    """(UNet source, SVD parts source) of a run: ``svd`` defaults to what ``init`` recorded, else ``init``."""
    if not cfg.init:
        raise UserError("init is empty: name a Stable Video Diffusion folder / hub id, a converted DragNUWA "
                        "1.5 folder or an earlier run to start from")
    svd = cfg.svd
    info = Path(cfg.init) / RUN_INFO
    if not svd and info.is_file():
        svd = json.loads(info.read_text()).get("svd", "")
    return cfg.init, svd or cfg.init


def _load(load, source: str, subfolder: str, what: str, **kw):
    try:
        return load(source, subfolder=subfolder, **kw)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"cannot load {what} from {source!r} ({subfolder}/): {first[:160]}; give a local "
                        f"folder or a hub id already downloaded (offline here)") from None


def load_parts(cfg: SVDTrainConfig) -> Parts:
    """The UNet (``init``; a plain SVD UNet gets a fresh flow encoder and zero modulation), and the
    frozen VAE and CLIP image encoder of the SVD source."""
    import logging

    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from dragnuwa.svd.unet import DragNUWASVDUNet

    init, svd = sources(cfg)
    # A plain SVD UNet lacks the flow keys; diffusers logs them as newly initialised, as intended.
    level = logging.getLogger("diffusers.models.modeling_utils").level
    logging.getLogger("diffusers.models.modeling_utils").setLevel(logging.ERROR)
    try:
        unet = _load(DragNUWASVDUNet.from_pretrained, init, "unet", "the UNet", low_cpu_mem_usage=False,
                     torch_dtype=torch.float32)
    finally:
        logging.getLogger("diffusers.models.modeling_utils").setLevel(level)
    vae = _load(AutoencoderKLTemporalDecoder.from_pretrained, svd, "vae", "the VAE", torch_dtype=torch.float32)
    image_encoder = _load(CLIPVisionModelWithProjection.from_pretrained, svd, "image_encoder",
                          "the CLIP image encoder")
    fe = _load(CLIPImageProcessor.from_pretrained, svd, "feature_extractor", "the feature extractor")
    return Parts(unet, vae.eval().requires_grad_(False), image_encoder.eval().requires_grad_(False),
                 list(fe.image_mean), list(fe.image_std))


def flow_parameter_names(unet) -> list[str]:
    """The flow encoder's and the modulation's parameters (official ``flow_blocks``, ``flow_cond_norm``,
    ``flow_gamma_*``, ``flow_beta_*``)."""
    return [k for k, _ in unet.named_parameters()
            if k.startswith("flow_encoder.") or any(f".{p}" in k for p in ("flow_cond_norm.", "flow_gamma_", "flow_beta_"))]


def prepare_trainable(parts: Parts, cfg: SVDTrainConfig, text_dim: int | None) -> dict[str, torch.nn.Parameter]:
    """Freeze everything, then add and unfreeze what trains -> ``{name: parameter}`` (the UNet's
    names; the text projection's under ``text_projection.``)."""
    from dragnuwa.svd.lora import add_lora
    from dragnuwa.svd.text import install_text_adapter, load_text_adapter, text_parameters

    unet = parts.unet
    unet.requires_grad_(False)
    if cfg.text:
        loaded = load_text_adapter(cfg.init, unet) if Path(cfg.init).is_dir() else None
        if loaded is not None and loaded[1] != cfg.text:
            raise UserError(f"{cfg.init} was trained with text encoder {loaded[1]!r}, this config names {cfg.text!r}")
        parts.text_projection = loaded[0] if loaded else install_text_adapter(unet, text_dim)
    if cfg.lora_rank:
        add_lora(unet, cfg.lora_rank, cfg.lora_alpha or None)  # peft freezes all but the adapter
    names = [k for k, p in unet.named_parameters() if ".lora_" in k]
    if cfg.train_flow:
        names += flow_parameter_names(unet)
    if cfg.text:
        names += list(text_parameters(unet))
    named = dict(unet.named_parameters())
    trained = {k: named[k] for k in names}
    if parts.text_projection is not None:
        trained.update({f"text_projection.{k}": p for k, p in parts.text_projection.named_parameters()})
    for p in named.values():
        p.requires_grad_(False)
    for p in trained.values():
        p.requires_grad_(True)
    return trained


def enable_checkpointing(unet) -> int:
    """Gradient checkpointing over the whole UNet: diffusers' (ResBlocks and spatial transformer
    blocks) plus every temporal transformer block, which diffusers leaves out and whose activations
    (a feed-forward over 14 frames at every position) dominate a video step's memory. The blocks keep
    their names, so the state dict is unchanged. Returns the temporal blocks wrapped."""
    from diffusers.models.attention import TemporalBasicTransformerBlock
    from torch.utils.checkpoint import checkpoint

    unet.enable_gradient_checkpointing()
    n = 0
    for module in unet.modules():
        if isinstance(module, TemporalBasicTransformerBlock) and not hasattr(module, "_plain_forward"):
            module._plain_forward = module.forward

            def forward(*args, _inner=module._plain_forward, **kwargs):
                if torch.is_grad_enabled():
                    return checkpoint(_inner, *args, use_reentrant=False, **kwargs)
                return _inner(*args, **kwargs)

            module.forward = forward
            n += 1
    return n


class ParamEMA:
    """Exponential moving average of the trained parameters only (the frozen ones never change)."""

    def __init__(self, params: dict[str, torch.nn.Parameter], decay: float):
        self.decay = decay
        self.shadow = {k: p.detach().clone().float() for k, p in params.items()}

    @torch.no_grad()
    def update(self, params: dict[str, torch.nn.Parameter], step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # warm-up, as dragnuwa.training.ema
        keys = list(self.shadow)
        torch._foreach_lerp_([self.shadow[k] for k in keys], [params[k].detach().float() for k in keys], 1 - d)


# ----------------------------------------------------------------------------- one step

class Objective(torch.nn.Module):
    """SVD's EDM loss on one prepared batch, as a module forward (what accelerate / DDP wrap)."""

    def __init__(self, unet, text_projection=None):
        super().__init__()
        self.unet, self.text_projection = unet, text_projection

    def forward(self, x0, noisy, sigma, cond_latent, image_embeds, time_ids, flow, text=None, text_mask=None):
        from dragnuwa.svd.text import hidden_states_with_text

        c_in, _, _, c_noise = edm.precondition(sigma)
        frames = x0.shape[1]
        sample = torch.cat([noisy * c_in.view(-1, 1, 1, 1, 1), cond_latent[:, None].expand(-1, frames, -1, -1, -1)], 2)
        tokens = self.text_projection(text, text_mask) if self.text_projection is not None else None
        ehs = hidden_states_with_text(image_embeds, tokens)
        out = self.unet(sample, c_noise, ehs, time_ids, flow=flow, return_dict=False)[0]
        return edm.edm_loss(out, noisy, x0, sigma)


def clip_image_embeds(image_encoder, frame0: torch.Tensor, mean, std) -> torch.Tensor:
    """CLIP embedding of the clean first frame ``[B, 3, H, W]`` in [-1, 1] -> ``[B, 1, D]`` (the
    SVD pipeline's preprocessing: antialiased resize, [0, 1], the feature extractor's mean/std)."""
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing

    size = image_encoder.config.image_size
    x = (_resize_with_antialiasing(frame0.float(), (size, size)) + 1.0) / 2.0
    x = (x - torch.tensor(mean, device=x.device).view(1, 3, 1, 1)) / torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return image_encoder(x.to(image_encoder.dtype)).image_embeds[:, None].float()


@torch.no_grad()
def prepare_batch(parts: Parts, batch: dict, cfg: SVDTrainConfig, gen: torch.Generator, device, text_encoder=None):
    """Encode a batch and draw its noise and condition dropout (all from ``gen``) -> Objective's kwargs."""
    video = batch["video"].to(device)                                       # [B, T, 3, H, W]
    b, t = video.shape[:2]
    vae = parts.vae
    # The posterior's mode, scaled to unit std (SVD's 0.18215): its spread is far below the noise
    # levels trained, and the mode keeps a clip's target the same at every visit.
    x0 = vae.encode(video.flatten(0, 1).to(vae.dtype)).latent_dist.mode()
    x0 = (x0 * vae.config.scaling_factor).float().unflatten(0, (b, t))
    keep_img, keep_traj, keep_text = [(torch.rand(b, generator=gen) >= p).to(device) for p in
                                      (cfg.p_drop_image, cfg.p_drop_traj, cfg.p_drop_text)]
    cond_noise = torch.randn(video[:, 0].shape, generator=gen).to(device)
    cond_latent = vae.encode((video[:, 0] + cfg.cond_aug * cond_noise).to(vae.dtype)).latent_dist.mode().float()
    image_embeds = clip_image_embeds(parts.image_encoder, video[:, 0], parts.image_mean, parts.image_std)
    # A dropped image is all zeros in both places, as SVD's unconditional pass (and the official one).
    cond_latent = cond_latent * keep_img.view(-1, 1, 1, 1)
    image_embeds = image_embeds * keep_img.view(-1, 1, 1)
    flow = batch["flow"].to(device).float() * keep_traj.view(-1, 1, 1, 1, 1)
    sigma = edm.sample_sigmas(b, gen, cfg.p_mean, cfg.p_std).to(device)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    noisy = x0 + sigma.view(-1, 1, 1, 1, 1) * noise
    time_ids = torch.tensor([[cfg.fps_id, cfg.motion_bucket_id, cfg.cond_aug]], device=device).repeat(b, 1)
    out = dict(x0=x0, noisy=noisy, sigma=sigma, cond_latent=cond_latent, image_embeds=image_embeds,
               time_ids=time_ids, flow=flow)
    if text_encoder is not None:
        prompts = [p if k else "" for p, k in zip(batch["text"], keep_text.tolist())]
        tokens, mask = text_encoder.encode(prompts)
        out.update(text=tokens.to(device).float(), text_mask=mask.to(device))
    return out


# ----------------------------------------------------------------------------- data

def build_dataset(cfg: SVDTrainConfig):
    from dragnuwa.svd.train_data import SyntheticSVDClips

    d = cfg.data
    return SyntheticSVDClips(d.first_seed, d.count, cfg.frames, cfg.width, cfg.height, cfg.stage, d.max_tracks,
                             cfg.flow_sigma)


def _stack(items: list[dict]) -> dict:
    return {"video": torch.stack([it["video"] for it in items]), "text": [it["text"] for it in items],
            "flow": torch.stack([it["flow"] for it in items])}


class _IndexedBatches(torch.utils.data.Dataset):
    """Micro-batch k of the run as one item: a deterministic walk over an indexable dataset."""

    def __init__(self, dataset, batch_size, rank, world, first, last):
        self.dataset, self.batch_size, self.rank, self.world = dataset, batch_size, rank, world
        self.first, self.last = first, last

    def __len__(self):
        return self.last - self.first

    def __getitem__(self, k):
        n, k = len(self.dataset), self.first + k
        return _stack([self.dataset[((k * self.world + self.rank) * self.batch_size + j) % n]
                       for j in range(self.batch_size)])


def micro_batches(cfg: SVDTrainConfig, dataset, start_step: int, rank: int, world: int):
    """Micro-batches from ``start_step`` on, for this rank."""
    first, last = start_step * cfg.grad_accum, cfg.steps * cfg.grad_accum
    if dataset is None and cfg.data.source == "shards":
        from dragnuwa.svd.train_data import ShardItems

        items = ShardItems(cfg.data.shards, cfg, rank, world, skip=first * cfg.batch_size)
        stream = iter(items) if cfg.workers == 0 else iter(torch.utils.data.DataLoader(
            items, batch_size=None, num_workers=cfg.workers, prefetch_factor=2, multiprocessing_context="spawn"))
        for _ in range(last - first):
            yield _stack([next(stream) for _ in range(cfg.batch_size)])
        return
    items = _IndexedBatches(dataset if dataset is not None else build_dataset(cfg), cfg.batch_size, rank, world,
                            first, last)
    if cfg.workers == 0:
        yield from (items[k] for k in range(len(items)))
        return
    yield from torch.utils.data.DataLoader(items, batch_size=None, num_workers=cfg.workers, prefetch_factor=2,
                                           multiprocessing_context="spawn")


# ----------------------------------------------------------------------------- saving

def save_checkpoint(folder: Path, trained, ema: ParamEMA, optimizer, scheduler, step: int) -> None:
    """Trained parameters (unmerged) and their EMA as safetensors, then ``state.pt`` last: a
    checkpoint is complete iff ``state.pt`` names the step of the weights."""
    from safetensors.torch import save_file

    from dragnuwa.training.checkpoint import rng_state

    folder.mkdir(parents=True, exist_ok=True)
    for name, tensors in (("trainable", {k: p.detach() for k, p in trained.items()}), ("ema", ema.shadow)):
        with atomic_path(folder / f"{name}.safetensors") as tmp:
            save_file({k: v.float().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                      metadata={"step": str(step)})
    with atomic_path(folder / "state.pt") as tmp:
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng_state()}, tmp)


def load_checkpoint(folder: Path, trained, ema: ParamEMA, optimizer, scheduler) -> int:
    from safetensors.torch import load_file

    from dragnuwa.training.checkpoint import set_rng_state

    if not (folder / "state.pt").is_file():
        raise UserError(f"no checkpoint to resume in {folder} (missing state.pt)")
    state = torch.load(folder / "state.pt", map_location="cpu", weights_only=False)
    weights, shadow = load_file(str(folder / "trainable.safetensors")), load_file(str(folder / "ema.safetensors"))
    if set(weights) != set(trained):
        raise UserError(f"{folder} was saved with other trained parameters (another lora_rank, text or "
                        f"train_flow?): e.g. {sorted(set(weights) ^ set(trained))[0]}")
    with torch.no_grad():
        for k, p in trained.items():
            p.copy_(weights[k])
            ema.shadow[k].copy_(shadow[k])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return int(state["step"])


def export(folder: Path, parts: Parts, ema: ParamEMA, cfg: SVDTrainConfig, step: int) -> Path:
    """Write ``folder/unet/`` (EMA weights, LoRA merged: what ``dragnuwa convert`` writes), the text
    adapter when there is one, and the run info (stage, steps, the svd source)."""
    from safetensors.torch import save_file

    from dragnuwa.svd.lora import merged_state_dict
    from dragnuwa.svd.text import save_text_adapter

    dtype = _DTYPES[cfg.save_dtype]
    state = merged_state_dict(parts.unet, replace=ema.shadow, dtype=dtype)
    unet_dir = folder / "unet"
    unet_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(unet_dir / "diffusion_pytorch_model.safetensors") as tmp:
        save_file({k: v.cpu() for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
    config = {k: v for k, v in dict(parts.unet.config).items() if not k.startswith("_")}
    import diffusers

    config = {"_class_name": type(parts.unet).__name__, "_diffusers_version": diffusers.__version__, **config}
    atomic_write_text(unet_dir / "config.json", json.dumps(config, indent=2, default=list) + "\n")
    if parts.text_projection is not None:
        proj = {k.removeprefix("text_projection."): v for k, v in ema.shadow.items() if k.startswith("text_projection.")}
        unet_text = {f"unet.{k}": v for k, v in ema.shadow.items() if ".processor." in k}
        save_text_adapter(folder, parts.unet, parts.text_projection, cfg.text,
                          params={**unet_text, **{f"proj.{k}": v for k, v in proj.items()}}, dtype=dtype)
    _, svd = sources(cfg)
    svd = str(Path(svd).resolve()) if Path(svd).exists() else svd  # a later stage may run elsewhere
    info = {"stage": cfg.stage, "steps": step, "init": cfg.init, "svd": svd, "lora_rank": cfg.lora_rank,
            "text": cfg.text, "width": cfg.width, "height": cfg.height, "frames": cfg.frames,
            "fps_id": cfg.fps_id, "motion_bucket_id": cfg.motion_bucket_id, "cond_aug": cfg.cond_aug}
    atomic_write_text(folder / RUN_INFO, json.dumps(info, indent=2) + "\n")
    return folder


# ----------------------------------------------------------------------------- the loop

def _optimizer(params, cfg: SVDTrainConfig, verbose: bool):
    if cfg.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        except (ImportError, RuntimeError) as e:
            if verbose:
                print(f"note: 8-bit AdamW needs bitsandbytes ({type(e).__name__}); using torch AdamW")
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train(cfg: SVDTrainConfig, resume: bool = False, parts: Parts | None = None, dataset=None,
          text_encoder=None) -> Path:
    """Train per ``cfg`` -> the run folder (``unet/`` exported). ``parts``, ``dataset`` and
    ``text_encoder`` may be injected (tests); otherwise they are built from the config."""
    from accelerate import Accelerator

    from dragnuwa.svd.text import text_encoder as make_text_encoder
    from dragnuwa.training.loop import budget_spent, plot_losses

    validate(cfg)
    out = Path(cfg.out_dir)
    check_output(out, folder=True, what="out_dir")
    ckpt = out / "checkpoint"
    if not resume and (ckpt / "state.pt").exists():
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out-dir")
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                              cpu=not torch.cuda.is_available())
    rank, world, dev = accelerator.process_index, accelerator.num_processes, accelerator.device
    main = accelerator.is_main_process
    torch.manual_seed(cfg.seed)  # LoRA's A and the text keys start the same on every rank

    parts = parts or load_parts(cfg)
    if cfg.text and text_encoder is None:
        text_encoder = make_text_encoder(cfg.text)
    text_encoder = text_encoder.to(dev) if cfg.text else None
    trained = prepare_trainable(parts, cfg, getattr(text_encoder, "dim", None))
    # Frozen weights in bf16 under bf16 (half the memory); the trained ones stay fp32 for the optimizer.
    weight_dtype = torch.bfloat16 if cfg.mixed_precision == "bf16" else torch.float32
    parts.unet.to(dev, weight_dtype)
    parts.image_encoder.to(dev, weight_dtype)
    parts.vae.to(dev)
    for p in trained.values():
        p.data = p.data.float()
    if parts.text_projection is not None:
        parts.text_projection.to(dev)
    if cfg.gradient_checkpointing:
        enable_checkpointing(parts.unet)
    parts.unet.train()

    params = list(trained.values())
    optimizer = _optimizer(params, cfg, main)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
    ema = ParamEMA(trained, cfg.ema_decay)
    step = load_checkpoint(ckpt, trained, ema, optimizer, scheduler) if resume else 0
    objective, optimizer = accelerator.prepare(Objective(parts.unet, parts.text_projection), optimizer)
    if main and not cfg.text and (Path(cfg.init) / "text_adapter").is_dir():
        print(f"note: {cfg.init} has a text adapter; text is off in this config, so this run drops it")
    if main:
        n_train = sum(p.numel() for p in params)
        n_all = sum(p.numel() for p in parts.unet.parameters()) + sum(p.numel() for p in parts.vae.parameters())
        print(f"svd stage {cfg.stage}: training {n_train / 1e6:.2f}M of {n_all / 1e6:.1f}M parameters "
              f"(LoRA rank {cfg.lora_rank}, flow {'on' if cfg.train_flow else 'off'}, text {cfg.text or 'off'})")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", to_yaml(cfg))
    log_path = out / "log.jsonl"
    if main and not resume and log_path.exists():
        log_path.unlink()

    bar = tqdm(total=cfg.steps, initial=step, desc=f"svd stage {cfg.stage}", unit="step", disable=not main)
    batches = micro_batches(cfg, dataset, step, rank, world)
    t_start = t_last = time.time()
    logged = step
    while step < cfg.steps:
        total = torch.zeros((), device=dev)
        for micro in range(cfg.grad_accum):
            gen = torch.Generator().manual_seed(((cfg.seed * 1_000_003 + step) * 97 + rank) * 31 + micro)
            inputs = prepare_batch(parts, next(batches), cfg, gen, dev, text_encoder)
            with accelerator.accumulate(objective), accelerator.autocast():
                loss = objective(**inputs)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            total += loss.detach() / cfg.grad_accum
        scheduler.step()
        ema.update(trained, step)
        step += 1
        bar.update(1)
        out_of_time = budget_spent(accelerator, t_start, cfg.max_minutes)
        if main and (step % cfg.log_every == 0 or step == cfg.steps or out_of_time):
            now = time.time()
            row = {"step": step, "loss": total.item(), "lr": scheduler.get_last_lr()[0],
                   "sec_per_step": (now - t_last) / (step - logged)}
            t_last, logged = now, step
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            with open(log_path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        if step % cfg.ckpt_every == 0 or step == cfg.steps or out_of_time:
            accelerator.wait_for_everyone()
            if main:
                save_checkpoint(ckpt, trained, ema, optimizer, scheduler, step)
                plot_losses(log_path, out / "loss.png")
        if out_of_time:
            bar.write(f"time budget of {cfg.max_minutes:g} min reached at step {step}")
            break
    batches.close()
    bar.close()
    if main:
        export(out, parts, ema, cfg, step)
    accelerator.wait_for_everyone()
    return out


def train_from_config(config_path, stage=None, init=None, resume=False, max_steps=None, out_dir=None,
                      batch_size=None, workers=None, max_minutes=None) -> Path:
    """`dragnuwa train --config C.yaml` for a ``backend: svd`` config: overrides, then ``train``."""
    cfg = load_svd_config(config_path)
    for name, value in (("stage", stage), ("init", init), ("steps", max_steps), ("out_dir", out_dir),
                        ("batch_size", batch_size), ("workers", workers), ("max_minutes", max_minutes)):
        if value is not None:
            setattr(cfg, name, value)
    validate(cfg)
    from dragnuwa.paths import check_run_paths

    out = Path(cfg.out_dir)
    writes = [out / n for n in ("config.yaml", "log.jsonl", "loss.png", RUN_INFO)] + [out / "unet" / n for n in (
        "config.json", "diffusion_pytorch_model.safetensors")] + [out / "text_adapter" / "config.json"]
    reads = [Path(src) / n for src in sources(cfg) for n in ("unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                                                                "text_adapter/config.json", RUN_INFO)]
    check_run_paths({"--config": config_path, "--init": reads}, {"--out-dir": writes})
    if cfg.stage == 2 and not resume and not (Path(cfg.init) / RUN_INFO).is_file():
        print("note: stage 2 usually continues from a stage-1 run (--init RUN); starting from "
              f"{cfg.init or 'nothing'}")
    path = train(cfg, resume=resume)
    print(path)
    return path
