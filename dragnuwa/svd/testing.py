"""Tiny random Stable Video Diffusion parts and a tiny DragNUWA 1.5 UNet, built from code only.

For tests, the CLI/app tests of the "svd" backend and training smoke tests: nothing is downloaded,
every build is seeded (same bytes every time) and takes well under a second. The shapes follow the
real models where the pipeline depends on them: the VAE downsamples by 8 (four levels) with 4
latent channels and SVD's scaling factor, the UNet takes 8 input channels and the 3 x 256 added
time embedding (fps id, motion bucket id, conditioning noise), and the CLIP image projection
matches the UNet's cross-attention width. The scheduler is SVD's own ``EulerDiscreteScheduler``
configuration (EDM sigmas 0.002..700, rho 7 via Karras sigmas, v-prediction).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

#: Stable Video Diffusion's ``scheduler/scheduler_config.json`` (stabilityai/stable-video-diffusion-img2vid).
SVD_SCHEDULER_CONFIG = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "sigma_max": 700.0,
    "sigma_min": 0.002,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "timestep_type": "continuous",
    "trained_betas": None,
    "use_karras_sigmas": True,
}

TINY_CONTEXT_DIM = 32   # CLIP projection width == UNet cross-attention width (1024 in SVD)


@contextlib.contextmanager
def _seeded(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def svd_scheduler():
    """SVD's Euler scheduler (``EulerDiscreteScheduler`` with the config above)."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(SVD_SCHEDULER_CONFIG)


def tiny_vae(seed: int = 0):
    """A tiny ``AutoencoderKLTemporalDecoder``: 4 levels of 32 channels (x8 downsampling), 4 latents."""
    from diffusers import AutoencoderKLTemporalDecoder

    with _seeded(seed):
        return AutoencoderKLTemporalDecoder(
            in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
            block_out_channels=(32, 32, 32, 32), layers_per_block=1, latent_channels=4,
            sample_size=64, scaling_factor=0.18215, force_upcast=True).eval()


def tiny_image_encoder(seed: int = 0, image_size: int = 32):
    """A tiny ``CLIPVisionModelWithProjection`` (2 layers, width 32, 32x32 input, 8 px patches)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=37, projection_dim=TINY_CONTEXT_DIM,
                           num_hidden_layers=2, num_attention_heads=4, image_size=image_size,
                           patch_size=8, hidden_act="gelu")
    with _seeded(seed):
        return CLIPVisionModelWithProjection(cfg).eval()


def tiny_feature_extractor(image_size: int = 32):
    """A ``CLIPImageProcessor`` with OpenAI CLIP's mean and std (what SVD ships) at a tiny size."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": image_size},
                              crop_size={"height": image_size, "width": image_size})


def tiny_unet_config(num_frames: int = 14) -> dict:
    """Constructor arguments of a tiny ``DragNUWASVDUNet``: the shape of ``tiny_config.json``
    (channels 32/64, attention at the first level only, 16-wide heads, context 32) in diffusers
    terms."""
    return dict(
        sample_size=None, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=(32, 64), addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=768, layers_per_block=2,
        cross_attention_dim=TINY_CONTEXT_DIM, transformer_layers_per_block=1,
        num_attention_heads=(2, 4), num_frames=num_frames)


def tiny_unet(seed: int = 0, num_frames: int = 14):
    """A tiny random ``DragNUWASVDUNet``. Parameters that start at zero (the zero-initialised
    flow modulation, so that an untrained flow branch is a no-op) are filled with small random
    values too, so that the flow changes the output, as in a trained model."""
    from .unet import DragNUWASVDUNet

    with _seeded(seed):
        unet = DragNUWASVDUNet(**tiny_unet_config(num_frames))
        with torch.no_grad():
            for p in unet.parameters():
                if p.numel() and not torch.any(p):
                    p.normal_(0.0, 0.05)
    return unet.eval()


def tiny_components(seed: int = 0) -> dict:
    """All five pipeline components, tiny and random: ``DragNUWASVDPipeline(**tiny_components())``."""
    return dict(unet=tiny_unet(seed), vae=tiny_vae(seed + 1), image_encoder=tiny_image_encoder(seed + 2),
                feature_extractor=tiny_feature_extractor(), scheduler=svd_scheduler())


def tiny_pipeline(seed: int = 0):
    """An in-memory tiny ``DragNUWASVDPipeline`` (fastest for tests)."""
    from .pipeline import DragNUWASVDPipeline

    return DragNUWASVDPipeline(**tiny_components(seed))


def make_tiny_svd(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny Stable-Video-Diffusion-like folder (``vae/``, ``image_encoder/``,
    ``feature_extractor/``, ``scheduler/``): what ``--svd PATH`` expects."""
    directory = Path(directory)
    tiny_vae(seed + 1).save_pretrained(directory / "vae")
    tiny_image_encoder(seed + 2).save_pretrained(directory / "image_encoder")
    tiny_feature_extractor().save_pretrained(directory / "feature_extractor")
    svd_scheduler().save_pretrained(directory / "scheduler")
    return directory


def make_tiny_dragnuwa(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny converted-DragNUWA-1.5-like folder (``unet/``): what ``--model DIR`` expects."""
    directory = Path(directory)
    tiny_unet(seed).save_pretrained(directory / "unet")
    return directory
