"""Typed config of Adaptive Training on the SVD backend (``backend: svd`` in a training YAML)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dragnuwa.config_io import dataclass_from_dict
from dragnuwa.errors import UserError


@dataclass
class SVDDataConfig:
    # "synthetic": procedural clips rendered on the fly (index i = scene seed first_seed + i);
    # "shards": `dragnuwa prepare` output (WebDataset tars; ``shards`` is a folder, glob or brace list).
    source: str = "synthetic"
    shards: str = ""
    first_seed: int = 0
    count: int = 900_000
    max_tracks: int = 8  # stage 2 draws 1..max_tracks tracks, weighted by motion (paper Sec. 3.2)


@dataclass
class SVDTrainConfig:
    backend: str = "svd"
    stage: int = 1  # 1: dense flow, 2: sparse tracks spread by the Gaussian (paper Sec. 3.4)
    # Where the UNet starts: a Stable Video Diffusion folder or hub id (its unet/; the flow encoder and
    # modulation start fresh, the modulation at zero), a converted DragNUWA 1.5 folder, or an earlier
    # run's folder (stage 2 from stage 1).
    init: str = ""
    # The VAE, CLIP image encoder and feature extractor (a Stable Video Diffusion folder or hub id);
    # "" = init's, or the svd an earlier run (init) recorded.
    svd: str = ""
    data: SVDDataConfig = field(default_factory=SVDDataConfig)
    width: int = 576
    height: int = 320
    frames: int = 14
    # What trains: LoRA of this rank on attention + feed-forward (0: none), the flow encoder and modulation.
    lora_rank: int = 32
    lora_alpha: float = 0.0  # 0: = lora_rank (scale 1, as DragNUWA 1.5's own LoRA)
    train_flow: bool = True
    # Text (off by default): "" off, "minilm" (the bundled encoder), or a CLIP text encoder folder / hub id.
    text: str = ""
    # Condition dropout, each independent (paper Sec. 3.3), so guidance can scale each one.
    p_drop_image: float = 0.1
    p_drop_traj: float = 0.1
    p_drop_text: float = 0.1
    # SVD's micro-conditioning, as the official DragNUWA 1.5 demo passes it at inference.
    fps_id: int = 4
    motion_bucket_id: int = 4
    cond_aug: float = 0.02
    # Noise levels ln(sigma) ~ N(p_mean, p_std^2) (dragnuwa/svd/edm.py).
    p_mean: float = 0.7
    p_std: float = 1.6
    # Stage 2's Gaussian (px); 0 = the official 20 px at 576x320, scaled with the training size.
    flow_sigma: float = 0.0
    steps: int = 10_000
    batch_size: int = 1
    grad_accum: int = 1
    lr: float = 1e-4
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    optimizer: str = "adamw"  # "adamw" or "adamw8bit" (bitsandbytes; falls back to adamw without it)
    mixed_precision: str = "bf16"  # "no" or "bf16" (frozen weights stored in bf16, trained ones in fp32)
    gradient_checkpointing: bool = True
    save_dtype: str = "fp16"  # dtype of the exported unet/ weights: fp32, fp16 or bf16
    ckpt_every: int = 500
    log_every: int = 10
    seed: int = 0
    out_dir: str = "runs/svd_stage1"
    workers: int = 0  # DataLoader processes preparing batches ahead (0: in the training process)
    max_minutes: float = 0.0


def validate(cfg: SVDTrainConfig) -> None:
    """Raise ``UserError`` naming the first bad value."""
    if cfg.backend != "svd":
        raise UserError(f"backend must be 'svd' here, got {cfg.backend!r}")
    if cfg.stage not in (1, 2):
        raise UserError(f"stage must be 1 or 2, got {cfg.stage}")
    if cfg.data.source not in ("synthetic", "shards"):
        raise UserError(f"data.source must be 'synthetic' or 'shards', got {cfg.data.source!r}")
    if cfg.data.source == "shards" and not cfg.data.shards:
        raise UserError("data.source shards needs data.shards (a folder or glob of `dragnuwa prepare` tars)")
    for name in ("width", "height"):
        v = getattr(cfg, name)
        if v <= 0 or v % 64:
            raise UserError(f"{name} must be a positive multiple of 64, got {v}")
    if cfg.frames < 2:
        raise UserError(f"frames must be at least 2, got {cfg.frames}")
    for name in ("steps", "batch_size", "grad_accum", "log_every", "ckpt_every"):
        if getattr(cfg, name) <= 0:
            raise UserError(f"{name} must be positive, got {getattr(cfg, name)}")
    if cfg.lr <= 0 or cfg.lora_rank < 0 or cfg.data.max_tracks < 1:
        raise UserError(f"lr must be > 0, lora_rank >= 0 and data.max_tracks >= 1, got {cfg.lr}, "
                        f"{cfg.lora_rank} and {cfg.data.max_tracks}")
    if cfg.lora_rank == 0 and not cfg.train_flow and not cfg.text:
        raise UserError("nothing to train: lora_rank is 0, train_flow is false and text is off")
    for name in ("p_drop_image", "p_drop_traj", "p_drop_text", "ema_decay"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise UserError(f"{name} must be in [0, 1], got {getattr(cfg, name)}")
    if cfg.optimizer not in ("adamw", "adamw8bit"):
        raise UserError(f"optimizer must be 'adamw' or 'adamw8bit', got {cfg.optimizer!r}")
    if cfg.mixed_precision not in ("no", "bf16"):
        raise UserError(f"mixed_precision must be 'no' or 'bf16', got {cfg.mixed_precision!r}")
    if cfg.save_dtype not in ("fp32", "fp16", "bf16"):
        raise UserError(f"save_dtype must be fp32, fp16 or bf16, got {cfg.save_dtype!r}")
    if cfg.flow_sigma < 0 or cfg.p_std <= 0 or cfg.cond_aug < 0 or cfg.workers < 0 or cfg.max_minutes < 0:
        raise UserError("flow_sigma, cond_aug, workers and max_minutes must be >= 0 and p_std > 0")


def load_svd_config(path: str | Path) -> SVDTrainConfig:
    """Read a ``backend: svd`` YAML into ``SVDTrainConfig`` (unknown key or bad value -> UserError)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"config {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    cfg = dataclass_from_dict(SVDTrainConfig, data, path.name)
    validate(cfg)
    return cfg


def to_yaml(cfg: SVDTrainConfig) -> str:
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
