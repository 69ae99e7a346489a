"""Training configs: typed dataclasses; YAML is only their serialisation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dragnuwa.config_io import dataclass_from_dict
from dragnuwa.errors import UserError


@dataclass
class DataConfig:
    source: str = "synthetic"  # "synthetic" (rendered on the fly) or "folder" (dragnuwa synth output)
    root: str = ""
    first_seed: int = 0  # training seeds start here; evaluation uses seeds >= 1_000_000
    count: int = 900_000
    max_tracks: int = 8
    # `dragnuwa prepare` shards to stream ("DIR/*.tar"; dragnuwa/data/shard_stream.py); with them,
    # synthetic_fraction of the samples are procedural clips from the source above (0: shards only).
    shards: str = ""
    synthetic_fraction: float = 0.0


@dataclass
class TrainConfig:
    # "small": the project's own model (this config); "svd": DragNUWA on Stable Video Diffusion, whose
    # YAML is read as dragnuwa.svd.train_config.SVDTrainConfig (config_backend picks it).
    backend: str = "small"
    model: str = "small"  # preset name
    stage: int = 1  # 1: dense flow maps, 2: sparse sampled tracks (paper Sec. 3.4)
    autoencoder: str = ""  # model file whose trained autoencoder weights are used (frozen)
    init: str = ""  # model file to start from (stage 2 from stage 1)
    # Take only the trajectory encoder and UNet from ``init``, where they fit (a model on another
    # autoencoder, e.g. `small_f2` from the bundled `small`; checkpoint.transplant_networks).
    init_networks_only: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    steps: int = 1000
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 2e-4
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    # Training noise levels: ln(sigma) ~ N(p_mean, p_std^2) (EDM, Karras et al. 2022, Sec. 5). Where
    # objects go is decided at high sigma; video models shift p_mean up (SVD uses 0.7).
    p_mean: float = -1.2
    p_std: float = 1.2
    # EDM's sigma_data (Table 1) for this run, written into the exported model's config; 0 keeps
    # the preset's (0.5), or the init's when a run continues from ``init`` (its weights were trained
    # under it). It should be the std of the training data: the latents are scaled to ~1.
    sigma_data: float = 0.0
    # Motion-init training (not in the paper; docs/training.md): a share of each batch is noised
    # from the clip's cut-and-paste animation as SDEdit sampling from sigma = motion_init would
    # (EDMDenoiser.loss), so the model fixes the animation instead of pulling it back. 0: off.
    motion_init: float = 0.0
    motion_init_fraction: float = 0.5
    # Extra loss weight where a frame shows another surface than frame 0 (moved objects and the
    # background they uncover, where the ghost lives; not in the paper; docs/training.md). 0: off.
    changed_weight: float = 0.0
    mixed_precision: str = "bf16"  # "no" or "bf16"
    ckpt_every: int = 200
    log_every: int = 10
    seed: int = 0
    out_dir: str = "runs/train"
    workers: int = 0  # DataLoader processes rendering batches ahead (0: in the training process)
    max_minutes: float = 0.0  # wall-clock budget: stop, checkpoint and export when spent (0: none)


@dataclass
class AutoencoderTrainConfig:
    model: str = "small"
    steps: int = 1500
    batch_size: int = 16
    lr: float = 1e-3
    photo_fraction: float = 0.25  # share of real-photo crops among training frames
    ckpt_every: int = 250
    log_every: int = 25
    seed: int = 0
    out_dir: str = "runs/autoencoder"
    init: str = ""  # model file whose autoencoder to start from ("" = from scratch)
    # Train the decoder only: the encoder and latent scale stay, so the latent space (and any
    # diffusion model trained on it) stays valid while reconstructions get sharper.
    decoder_only: bool = False
    # Decode the video model's own samples (decoder_only): a video model file whose generations on
    # training scenes (its default sampler start; every 3rd from pure noise) are paired with the
    # true clips, and `sample_share` of each batch's frames comes from those pairs.
    samples_from: str = ""
    sample_clips: int = 600
    sample_share: float = 0.75
    sample_seed: int = 200_000  # first training scene of the pairs (training seeds are 0..899,999)
    sample_steps: int = 10
    # The loss on a pair's pixels that differ from its clip's first frame (what moved, and where the
    # tracker looks; sample_pairs.moving_mask) weighs 1 + moving_weight; 0 = every pixel alike.
    moving_weight: float = 0.0
    # A reference decoder (models/reference.py): every decoded frame also sees its clip's first
    # frame. With decoder_only and init, it starts as init's decoder (its attention starts at zero).
    reference: bool = False
    # A track decoder (models/track_decoder.py): every decoded frame also reads where its clip's
    # tracks are in it (the pairs' scene tracks; zero for fresh frames). Starts as init's decoder.
    tracks: bool = False


def config_backend(path: str | Path) -> str:
    """The ``backend`` a training YAML names ("small" when none): which typed config and loop read it.
    An unreadable file says "small", and ``load_config`` then reports what is wrong with it."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return "small"
    backend = data.get("backend", "small") if isinstance(data, dict) else "small"
    return backend if isinstance(backend, str) else "small"


def load_config(path: str | Path, cls=TrainConfig):
    """Read a YAML config into ``cls``; a missing file, bad YAML, unknown key or bad value -> UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"config {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise UserError(f"config {path} is not valid YAML: it is not UTF-8 text") from None
    except RecursionError:
        raise UserError(f"config {path} is not a config: it is nested too deeply to read") from None
    if data is None:
        # An empty file would train every default into the default out_dir: almost surely a mistake.
        raise UserError(f"config {path} is empty: it must set at least one key (see configs/ for examples)")
    cfg = dataclass_from_dict(cls, data, path.name)
    validate(cfg)
    return cfg


def validate(cfg) -> None:
    if isinstance(cfg, TrainConfig):
        if cfg.backend != "small":
            raise UserError(f"backend must be 'small' or 'svd', got {cfg.backend!r}")
        if cfg.stage not in (1, 2):
            raise UserError(f"stage must be 1 or 2, got {cfg.stage}")
        if cfg.mixed_precision not in ("no", "bf16"):
            raise UserError(f"mixed_precision must be 'no' or 'bf16', got {cfg.mixed_precision!r}")
        if cfg.data.source not in ("synthetic", "folder"):
            raise UserError(f"data.source must be 'synthetic' or 'folder', got {cfg.data.source!r}")
        if cfg.motion_init < 0 or not 0 <= cfg.motion_init_fraction <= 1:
            raise UserError(f"motion_init must be >= 0 and motion_init_fraction in [0, 1], got "
                            f"{cfg.motion_init} and {cfg.motion_init_fraction}")
        if cfg.sigma_data < 0:
            raise UserError(f"sigma_data must be > 0 (or 0 for the preset's), got {cfg.sigma_data}")
        if cfg.changed_weight < 0:
            raise UserError(f"changed_weight must be >= 0, got {cfg.changed_weight}")
        if cfg.changed_weight > 0 and cfg.data.source != "synthetic":
            raise UserError("changed_weight needs data.source synthetic (its masks come from the renderer's layers)")
        if cfg.motion_init > 0 and cfg.data.source != "synthetic":
            raise UserError("motion_init training needs data.source synthetic (clip folders carry no animation)")
        if cfg.data.shards and (cfg.data.source != "synthetic" or not 0 <= cfg.data.synthetic_fraction < 1):
            raise UserError(f"data.shards mixes with data.source synthetic only, synthetic_fraction in [0, 1); got "
                            f"{cfg.data.source!r} and {cfg.data.synthetic_fraction}")
        if cfg.data.shards and (cfg.motion_init > 0 or cfg.changed_weight > 0):
            raise UserError("motion_init and changed_weight need the renderer's data: not with data.shards")
        if cfg.data.synthetic_fraction and not cfg.data.shards:
            raise UserError("data.synthetic_fraction mixes procedural clips into data.shards: set data.shards")
        if cfg.workers < 0 or cfg.max_minutes < 0:
            raise UserError(f"workers and max_minutes must be >= 0, got {cfg.workers} and {cfg.max_minutes}")
    if isinstance(cfg, AutoencoderTrainConfig) and cfg.moving_weight and not cfg.samples_from:
        raise UserError("moving_weight weighs the sample pairs' pixels: it needs samples_from")
    if isinstance(cfg, AutoencoderTrainConfig) and cfg.tracks and not cfg.samples_from:
        raise UserError("tracks (a track decoder) needs samples_from: its tracks are the sampled scenes'")
    if isinstance(cfg, AutoencoderTrainConfig) and cfg.samples_from:
        if not cfg.decoder_only:
            raise UserError("samples_from needs decoder_only: the encoder must keep the video model's latent space")
        if cfg.moving_weight < 0:
            raise UserError(f"moving_weight must be >= 0, got {cfg.moving_weight}")
        if cfg.sample_clips < 1 or cfg.sample_steps < 1 or not 0 < cfg.sample_share <= 1:
            raise UserError(f"sample_clips and sample_steps must be >= 1 and sample_share in (0, 1], got "
                            f"{cfg.sample_clips}, {cfg.sample_steps} and {cfg.sample_share}")
    for name in ("steps", "batch_size"):
        if getattr(cfg, name) <= 0:
            raise UserError(f"{name} must be positive, got {getattr(cfg, name)}")
    if cfg.lr <= 0:
        raise UserError(f"lr must be positive, got {cfg.lr}")


def to_yaml(cfg) -> str:
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)


def run_paths(cfg, config_path) -> tuple[dict, dict]:
    """What a training run reads and writes, for ``paths.check_run_paths``: the config and the model
    files it starts from, and the files it writes into ``out_dir`` (``--init`` must not be the
    ``model.safetensors`` it exports, say)."""
    out = Path(cfg.out_dir)
    outputs = {"--out-dir": [out / name for name in ("config.yaml", "log.jsonl", "model.safetensors")]}
    if isinstance(cfg, AutoencoderTrainConfig):
        outputs["--out-dir"] += [out / "checkpoint.pt", out / "metrics.json"]
        inputs = {"--config": config_path, "--init": cfg.init, "samples_from": cfg.samples_from}
    else:
        outputs["--out-dir"] += [out / "loss.png"] + [out / "checkpoint" / name for name in
                                                    ("model.safetensors", "ema.safetensors", "state.pt")]
        inputs = {"--config": config_path, "--init": cfg.init, "autoencoder": cfg.autoencoder}
    return inputs, outputs
