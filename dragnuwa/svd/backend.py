"""The svd backend: DragNUWA 1.5 (Stable Video Diffusion + flow conditioning) behind the request path.

It wraps ``DragNUWASVDPipeline`` (``dragnuwa.svd.pipeline``). The front door fits the image to the
backend's size (576x320 by default, any multiple of 64 with ``size``) and maps the tracks the same way;
the clicks go to the official trajectory recipe unresampled (``dragnuwa.svd.flow.official_flow``:
PCHIP to the frame count, the official single-click quirk unless ``anchors="still"``). A model fine-tuned with text
(``dragnuwa train`` with ``text:``, issue #28) reads the prompt, and ``guidance`` is then the text's
scale (the image ramp stays the official 1.0 -> 2.5); any other model notes a prompt and ignores it,
and ``guidance`` is the ramp's last value. ``traj_guidance`` is the trajectory's own scale (1 = the
official guidance, whose halves share the flow; another value adds a pass without it). Motion init, the motion brush, dense
flow files and detail restoration are the small backend's, and refused here (``Backend.supports``).
"""

from __future__ import annotations

import contextlib

import numpy as np

from dragnuwa.backends.base import Backend, Progress, Request, Sample
from dragnuwa.errors import UserError

DEFAULT_SIZE = (576, 320)  # the official model's (W, H)
DEFAULT_FRAMES = 14  # what the official model was trained and run with
MAX_FRAMES = 25  # SVD-XT's length; longer clips are what users ask for, at their own risk
DEFAULT_STEPS = 25  # the official Euler sampler's
DEFAULT_GUIDANCE = 2.5  # the last frame's scale of the official ramp 1.0 -> 2.5 over the frames
DEFAULT_FPS = 8.0  # the frame rate videos are written at (the conditioning fps id is the pipeline's)
DTYPES = ("fp16", "bf16", "fp32")


def check_size(size) -> tuple[int, int]:
    """``(W, H)``, each a positive multiple of 64 (the VAE's 8 x the UNet's three halvings)."""
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise UserError(f"size must be W x H, got {size!r}") from None
    if w <= 0 or h <= 0 or w % 64 or h % 64:
        raise UserError(f"size {w}x{h} is not a multiple of 64 on each side (576x320 is the official model's)")
    return w, h


@contextlib.contextmanager
def _quiet_loading():
    """No per-file "Loading weights" bars or library notices while the parts load: a command's
    stderr keeps its one line for errors and its warnings."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.disable(logging.WARNING)  # optional kernels' and hub notices (a failure is an exception)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


class SVDBackend(Backend):
    """A loaded ``DragNUWASVDPipeline``; ``SVDBackend.load(model, svd=..., ...)`` builds one."""

    name = "svd"
    # reads the image but cannot drop it; text only for a model fine-tuned with text (set per model)
    conditions = frozenset({"traj"})
    supports = frozenset({"traj_guidance"})
    # 1.0: the official guidance, whose two halves share the flow (no pass without the trajectory)
    defaults = {"traj_guidance": 1.0}
    fps = DEFAULT_FPS
    frames, max_frames, steps, guidance = DEFAULT_FRAMES, MAX_FRAMES, DEFAULT_STEPS, DEFAULT_GUIDANCE

    def __init__(self, pipe, size=DEFAULT_SIZE, decode_chunk_size: int | None = None,
                 motion_bucket_id: int | None = None, anchors: str = "official"):
        from dragnuwa.svd.flow import ANCHOR_MODES

        self.pipe = pipe
        if getattr(pipe, "has_text", False):
            self.conditions = frozenset({"traj", "text"})  # the Backend rule then reads the prompt
        self.width, self.height = check_size(size)
        if decode_chunk_size is not None and int(decode_chunk_size) < 1:
            raise UserError(f"--decode-chunk-size must be at least 1, got {decode_chunk_size}")
        if motion_bucket_id is not None and not 0 <= int(motion_bucket_id) <= 1023:
            raise UserError(f"--motion-bucket-id must be between 0 and 1023, got {motion_bucket_id}")
        if anchors not in ANCHOR_MODES:
            raise UserError(f"--anchors must be {' or '.join(ANCHOR_MODES)}, got {anchors!r}")
        self.decode_chunk_size, self.motion_bucket_id, self.anchors = decode_chunk_size, motion_bucket_id, anchors

    @classmethod
    def load(cls, model, svd=None, dtype: str | None = None, offload: bool | None = None,
             decode_chunk_size: int | None = None, motion_bucket_id: int | None = None, size=None,
             anchors: str | None = None) -> "SVDBackend":
        """``model``: a converted folder or hub id; ``svd``: the Stable Video Diffusion folder or hub id
        (VAE, CLIP image encoder, scheduler); ``dtype`` fp16 | bf16 | fp32 (default: fp16 on a GPU,
        fp32 on the CPU); ``offload``: model CPU offload (GPU only)."""
        import torch

        size = check_size(size or DEFAULT_SIZE)  # before minutes of loading
        if dtype is not None and dtype not in DTYPES:
            raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        cuda = torch.cuda.is_available()
        torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[
            dtype or ("fp16" if cuda else "fp32")]
        with _quiet_loading():
            from dragnuwa.svd.pipeline import load_svd_pipeline  # (its imports have notices too)

            pipe = load_svd_pipeline(model, svd=svd, torch_dtype=torch_dtype, offload=bool(offload))
        if cuda and not offload:
            pipe = pipe.to("cuda")
        return cls(pipe, size, decode_chunk_size, motion_bucket_id, anchors or "official")

    def flow(self, request: Request) -> np.ndarray:
        """The official flow ``[T, 2, H, W]`` of the request's clicks (zero without tracks). A click the
        fitted frame cut off is moved to its edge (the official code crashed on one); tracks wholly
        outside it are left out (the front door warns about them)."""
        from dragnuwa.svd.flow import official_flow

        w, h = self.width, self.height
        inside = [c for c in request.clicks if ((c >= 0) & (c < (w, h))).all(axis=-1).any()]
        if not inside or "traj" in request.drop:
            return np.zeros((request.frames, 2, h, w), np.float32)
        clicks = [np.clip(c, 0, (w - 1, h - 1)).tolist() for c in inside]
        return official_flow(clicks, w, h, request.frames, anchors=self.anchors)

    def sample(self, request: Request, progress: Progress | None = None, show_progress: bool = True) -> Sample:
        """Sample one video with the official recipe (Euler, guidance ramped 1.0 -> ``guidance``; with a
        prompt for a model trained with text, 1.0 -> 2.5 and ``guidance`` is the text's scale)."""
        import torch

        flow = self.flow(request)
        self.pipe.set_progress_bar_config(disable=not show_progress, leave=False)
        steps = request.steps

        def on_step(_pipe, i, _t, kwargs):  # diffusers' callback_on_step_end
            if progress:
                progress(i + 1, steps)
            return kwargs

        traj_guidance = float(request.options.get("traj_guidance") or 1.0)
        extra = {k: v for k, v in (("decode_chunk_size", self.decode_chunk_size),
                                   ("motion_bucket_id", self.motion_bucket_id)) if v is not None}
        prompt = "" if "text" in request.drop or "text" not in self.conditions else request.text.strip()
        if prompt:  # guidance is the text's; the image/trajectory ramp stays the official one
            extra.update(prompt=prompt, text_guidance_scale=request.guidance)
        else:
            extra.update(max_guidance_scale=request.guidance)
        # The image is already at the size (the pipeline's own fit leaves it as it is).
        frames = self.pipe(request.image, flow=flow, width=self.width, height=self.height,
                           num_frames=request.frames, num_inference_steps=steps,
                           generator=torch.Generator().manual_seed(int(request.seed)), output_type="np",
                           callback_on_step_end=on_step, traj_guidance_scale=traj_guidance, **extra).frames
        frames = np.asarray(frames)
        frames = np.ascontiguousarray(frames[0] if frames.ndim == 5 else frames, np.uint8)  # [1, T, ...]: one video
        info = {"traj_guidance": traj_guidance, "motion_init": 0.0, "motion_region": None, "detail": False,
                "sampler_steps": steps}
        return Sample(frames, frames.copy(), flow, None, info)
