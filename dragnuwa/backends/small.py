"""The small backend: the project's own DragNUWA (``dragnuwa/models/``), trained here and bundled.

request -> displacement maps (the same code as training) -> MiniLM token states, first-frame latent
-> EDM sampler with two-scale classifier-free guidance (from pure noise, or from the image moved
along the tracks: motion init) -> latents -> decoder (+ track planes) -> detail restoration.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from dragnuwa.backends.base import Backend, Progress, Request, Sample
from dragnuwa.errors import UserError

# Motion init moves the image along the motion input, so it needs both conditions: dropping either
# (guidance's null passes, the evaluation's ablations) samples from pure noise.
MOTION_INIT_NEEDS = frozenset({"traj", "image"})


class SmallBackend(Backend):
    """A loaded ``DragNUWA`` (paper Sec. 3: text + image + trajectory), at its config's size."""

    name = "small"
    supports = frozenset({"traj_guidance", "motion_init", "motion_region", "flow", "brush", "detail",
                          "start_video", "sampler"})

    def __init__(self, model, text_encoder=None):
        self.model = model.eval()
        self.cfg = cfg = model.cfg
        self._text_encoder = text_encoder
        self.width, self.height, self.frames, self.max_frames = cfg.width, cfg.height, cfg.frames, 4 * cfg.frames
        self.fps, self.steps, self.guidance = cfg.fps, cfg.steps, cfg.text_guidance
        self.defaults = {"traj_guidance": cfg.traj_guidance, "motion_init": cfg.motion_init,
                         "motion_region": "disc", "detail": True, "sampler": cfg.sampler}
        self.track_decoder = bool(cfg.autoencoder.tracks)

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from dragnuwa.models.text_encoder import shared_text_encoder

            self._text_encoder = shared_text_encoder()
        return self._text_encoder

    def reconstructor(self, detail: bool = False):
        from dragnuwa.evaluate import autoencoder_round_trip

        return autoencoder_round_trip(self.model.autoencoder, detail)

    @torch.no_grad()
    def sample(self, request: Request, progress: Progress | None = None, show_progress: bool = True) -> Sample:
        """Sample one video. ``options``: ``traj_guidance``; ``motion_init`` > 0 starts at that noise
        level from the image moved along the tracks, the dense motion or the brush's regions
        (``dragnuwa.motion_init``; off when the image or the trajectory is dropped), moving
        ``motion_region`` ("disc" / "object") along each track; ``start_video`` replaces that
        animation (SDEdit of a given video); ``detail`` restores the image's fine detail along the
        video's own motion (``dragnuwa.detail``; off when the image is dropped); ``sampler``."""
        from dragnuwa.detail import restore_detail
        from dragnuwa.diffusion.guidance import MultiCondGuider
        from dragnuwa.diffusion.preconditioning import EDMDenoiser
        from dragnuwa.diffusion.samplers import get_sampler
        from dragnuwa.diffusion.schedules import karras_sigmas, start_at
        from dragnuwa.models.dragnuwa import Cond
        from dragnuwa.models.track_decoder import track_planes
        from dragnuwa.motion_init import motion_animation
        from dragnuwa.trajectory import tracks_to_maps
        from dragnuwa.video import to_tensor, to_uint8

        cfg, opt, drop, frames = self.cfg, request.options, tuple(request.drop), request.frames
        trk, fitted = request.tracks, request.image
        brushed, regions = request.brush if request.brush is not None else (None, None)
        # A dense --flow field (not a brush's) is carried pixel by pixel in motion init.
        flow_maps = request.dense if request.brush is None else None
        maps = request.dense if request.dense is not None else tracks_to_maps(trk, cfg.height, cfg.width)
        # What motion init moves: the painted regions, the dense field, or a region under each track.
        moved = "brush" if brushed is not None else "flow" if flow_maps is not None else opt["motion_region"]

        text_tok, text_mask = self.text_encoder.encode([request.text])
        first = to_tensor(fitted)[None]
        image_latent = self.model.autoencoder.encode(first)
        cond = Cond(text_tok, text_mask, image_latent, torch.from_numpy(maps)[None])
        if drop:
            cond = cond.drop(*(torch.tensor([name not in drop]) for name in ("text", "image", "traj")))
        D = EDMDenoiser(self.model, cfg.sigma_data)
        denoise = MultiCondGuider(request.guidance, opt["traj_guidance"])(D, cond)

        C, h, w = self.model.latent_shape
        gen = torch.Generator().manual_seed(int(request.seed))
        sigmas = karras_sigmas(request.steps)
        x = torch.randn((1, frames, C, h, w), generator=gen)
        motion_init, start_video, guide = opt["motion_init"], opt["start_video"], None
        if start_video is not None:
            start_video = np.asarray(start_video)
            if (motion_init <= 0 or start_video.dtype != np.uint8
                    or start_video.shape != (frames, cfg.height, cfg.width, 3)):
                raise UserError(f"start_video must be uint8 {(frames, cfg.height, cfg.width, 3)} with motion_init > 0, "
                                f"got {start_video.dtype} {start_video.shape} and motion_init {motion_init:g}")
            guide = start_video
        elif motion_init > 0 and not MOTION_INIT_NEEDS & set(drop):
            # A brush's regions are pasted as they are; its dense maps need not be carried.
            guide = motion_animation(fitted, trk if brushed is None else brushed, flow_maps, opt["motion_region"],
                                     regions)
        if guide is not None:
            # SDEdit from the image moved along the motion input: its latents noised to sigma = motion_init.
            sigmas = start_at(sigmas, motion_init)
            x = self.model.autoencoder.encode(to_tensor(guide)[None]) + x * sigmas[0]
        else:
            motion_init = 0.0
            x = x * sigmas[0]
        bar = tqdm(total=len(sigmas) - 1, desc="sampling", unit="step", disable=not show_progress, leave=False)

        def callback(i, n, _x, _d):
            bar.update(1)
            if progress:
                progress(i + 1, n)

        latents = get_sampler(opt["sampler"] or cfg.sampler)(denoise, x, sigmas, callback=callback)
        bar.close()
        # A reference decoder sees the given image too, and a track decoder the tracks, unless that
        # condition is dropped (a dense motion input has no tracks: the decoder gets none).
        planes = None
        if self.model.cfg.autoencoder.tracks and "traj" not in drop:
            planes = torch.from_numpy(track_planes(trk, cfg.height, cfg.width))[None]
        video = self.model.autoencoder.decode(latents, None if "image" in drop else first, planes)[0]
        decoded = to_uint8(video)
        detail = bool(opt["detail"]) and "image" not in drop
        out = restore_detail(decoded, fitted) if detail else decoded.copy()
        info = {"traj_guidance": opt["traj_guidance"], "motion_init": motion_init,
                "motion_region": moved if motion_init else None, "detail": detail,
                "sampler_steps": len(sigmas) - 1}
        return Sample(out, decoded, maps, latents[0], info)
