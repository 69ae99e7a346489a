"""DragNUWA 1.5 on Stable Video Diffusion as a diffusers pipeline (the "svd" backend's model).

The inference recipe is the official demo's (ProjectNUWA/DragNUWA at 759ec255,
``DragNUWA_demo.py`` ``Drag.forward_sample`` and ``DragNUWA_net.py`` ``Args``), re-expressed with
diffusers parts; each number was checked against that code:

- image: ``[-1, 1]`` (ToTensor + Normalize(0.5, 0.5)), fitted to the size by scale-to-cover and a
  centre crop with bilinear resampling (the demo's ``preprocess_image``); 576x320 by default, any
  multiple of 64 works;
- the VAE latent of the image plus ``noise_aug_strength`` (0.02) Gaussian noise, the posterior's
  mode, not multiplied by the scaling factor (``VideoPredictionEmbedderWithEncoder`` keeps its
  default scale 1.0), concatenated on every frame;
- the CLIP image embedding of the clean image: resized to the encoder's size (224) with
  antialiased bicubic, ``align_corners=True`` (kornia in the official code, diffusers'
  ``_resize_with_antialiasing`` here, its port), then OpenAI CLIP mean/std; OpenCLIP's own
  resize-and-crop preprocessing is NOT what the official code used, and not what this does;
- ``added_time_ids`` = (fps id, motion bucket id, conditioning noise) = (4, 4, 0.02) by default:
  the demo passes ``Args.fps = 4`` as is (diffusers' SVD pipeline passes ``fps - 1``) and its
  motion-bucket slider starts at 4;
- EDM sigmas from 700 to 0.002 with rho 7 over 25 steps plus a final 0 (``EDMDiscretization``),
  initial noise scaled by ``sqrt(1 + 700^2)``, plain Euler (no churn), v-prediction with
  ``c_in = 1/sqrt(s^2+1)`` and ``c_noise = 0.25 ln s``: exactly SVD's ``EulerDiscreteScheduler``
  configuration (Karras sigmas are the EDM sigmas);
- classifier-free guidance with zero CLIP embedding and zero image latent for the unconditional
  half, the scale ramped linearly over the frames from 1.0 to 2.5 (``LinearPredictionGuider``);
- the same flow for both halves; its features are computed once per video (``unet.encode_flow``)
  and reused for every step and both halves (they do not depend on the noise level);
- decoding ``latents / 0.18215`` with the temporal decoder, ``decode_chunk_size`` frames at a time
  (the demo decodes one frame at a time, ``en_and_decode_n_samples_a_time = 1``: the default 1
  reproduces it; larger chunks are smoother in time and use more memory).
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import \
    _resize_with_antialiasing
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..errors import UserError
from .flow import OFFICIAL_FRAMES, OFFICIAL_HEIGHT, OFFICIAL_WIDTH, official_flow
from .text import ImageTokenProcessor, TextCrossAttnProcessor, combine_guidance

#: The official demo's defaults (``Args`` / ``Drag.forward_sample`` / the gradio slider).
DEFAULT_FPS_ID = 4
DEFAULT_MOTION_BUCKET_ID = 4
DEFAULT_NOISE_AUG = 0.02
DEFAULT_STEPS = 25
DEFAULT_MIN_GUIDANCE, DEFAULT_MAX_GUIDANCE = 1.0, 2.5
DEFAULT_DECODE_CHUNK = 1


@dataclasses.dataclass
class DragNUWASVDPipelineOutput(BaseOutput):
    """``frames``, batch first as in diffusers (one video: ``frames[0]``): uint8
    ``[1, T, H, W, 3]`` ("np"), float ``[1, T, 3, H, W]`` in [-1, 1] ("pt") or the latents
    ``[1, T, 4, H/8, W/8]`` ("latent"); ``flow``: the ``[T, 2, H, W]`` flow that drove it."""

    frames: Any
    flow: np.ndarray


def fit_image(image, width: int, height: int) -> PIL.Image.Image:
    """Scale to cover ``width x height`` (bilinear) and crop the centre, as the official demo."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
            raise UserError("image must be a PIL image or a uint8 [H, W, 3] array")
        image = PIL.Image.fromarray(image)
    if not isinstance(image, PIL.Image.Image):
        raise UserError(f"image must be a PIL image or a uint8 [H, W, 3] array, not {type(image).__name__}")
    image = image.convert("RGB")
    if image.size == (width, height):
        return image
    w, h = image.size
    ratio = max(width / w, height / h)
    new_w, new_h = max(width, int(w * ratio)), max(height, int(h * ratio))
    image = image.resize((new_w, new_h), PIL.Image.BILINEAR)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


class DragNUWASVDPipeline(DiffusionPipeline):
    """Image + drags -> video with DragNUWA 1.5 (arXiv 2308.08089; the released SVD-based model).

    Components: ``unet`` (``DragNUWASVDUNet``), ``vae`` (``AutoencoderKLTemporalDecoder``),
    ``image_encoder`` (``CLIPVisionModelWithProjection``), ``feature_extractor``
    (``CLIPImageProcessor``), ``scheduler`` (SVD's ``EulerDiscreteScheduler``)."""

    model_cpu_offload_seq = "image_encoder->unet->vae"

    def __init__(self, vae, image_encoder, unet, scheduler, feature_extractor):
        super().__init__()
        self.register_modules(vae=vae, image_encoder=image_encoder, unet=unet, scheduler=scheduler,
                              feature_extractor=feature_extractor)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        # The text adapter of a model fine-tuned with text (issue #28): (TextProjection, the text
        # encoder's name), or None; its encoder is built on the first prompt (``text_encoder``).
        self.text_adapter = None
        self.text_encoder = None

    def load_text_adapter(self, folder) -> bool:
        """Install the text adapter saved in ``folder/text_adapter/`` (a model trained with text by
        ``dragnuwa train``) into the UNet -> whether the folder had one. Call it after ``use_sdpa``,
        which keeps it (it only swaps the processors the adapter wraps)."""
        from .text import load_text_adapter

        if self.text_adapter is not None:
            raise ValueError("the text adapter is already loaded")
        loaded = load_text_adapter(folder, self.unet)
        if loaded is None:
            return False
        projection, encoder = loaded
        self.text_adapter = (projection.eval().requires_grad_(False), encoder)
        return True

    @property
    def has_text(self) -> bool:
        """Whether the model reads a prompt (it was fine-tuned with text)."""
        return self.text_adapter is not None

    def _text_tokens(self, prompt: str, device, dtype) -> torch.Tensor:
        """The prompt's projected tokens ``[1, L, D]`` (paper Sec. 3.3: text enters by cross-attention)."""
        from .text import text_encoder

        projection, name = self.text_adapter
        if self.text_encoder is None:
            self.text_encoder = text_encoder(name)  # stays on the CPU: one prompt per video
        tokens, mask = self.text_encoder.encode([prompt])
        param = projection.proj.weight
        projection.to(device)
        return projection(tokens.to(device, param.dtype), mask.to(device)).to(dtype)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, torch_dtype: torch.dtype | None = None,
                        **kwargs) -> "DragNUWASVDPipeline":
        """Load a folder (or hub id) that ``save_pretrained`` wrote: ``unet/``, ``vae/``,
        ``image_encoder/``, ``feature_extractor/``, ``scheduler/``; components given as keyword
        arguments are used as they are.

        Each part is loaded by its own class: diffusers' generic pipeline loader only recognises a
        custom component (``DragNUWASVDUNet``) whose module also exposes diffusers' base classes."""
        from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        from .unet import DragNUWASVDUNet

        src = str(pretrained_model_name_or_path)
        kwargs_given = set(kwargs)
        models = {"unet": DragNUWASVDUNet, "vae": AutoencoderKLTemporalDecoder}
        parts = {}
        for name, load in (("unet", DragNUWASVDUNet), ("vae", AutoencoderKLTemporalDecoder),
                           ("image_encoder", CLIPVisionModelWithProjection),
                           ("feature_extractor", CLIPImageProcessor),
                           ("scheduler", EulerDiscreteScheduler)):
            if name in kwargs:
                parts[name] = kwargs.pop(name)
            elif name in models:
                parts[name] = load.from_pretrained(src, subfolder=name, torch_dtype=torch_dtype, **kwargs)
            elif name == "image_encoder":
                parts[name] = load.from_pretrained(src, subfolder=name, dtype=torch_dtype, **kwargs)
            else:
                parts[name] = load.from_pretrained(src, subfolder=name, **kwargs)
        parts["unet"].eval()
        parts["image_encoder"].eval()
        pipe = cls(**parts)
        if "unet" not in kwargs_given and Path(src).is_dir():
            pipe.load_text_adapter(src)  # a model fine-tuned with text keeps its text
        return pipe

    # ---- inputs -------------------------------------------------------------------------------
    def check_inputs(self, image, flow, tracks, width: int, height: int, num_frames: int,
                     num_inference_steps: int, decode_chunk_size: int, output_type: str) -> None:
        """Raise ``UserError`` (one line) for anything the user can get wrong."""
        for name, v in (("width", width), ("height", height)):
            if not isinstance(v, numbers.Integral) or v <= 0 or v % 64:
                raise UserError(f"{name} {v} is not a positive multiple of 64 (the model works at "
                                f"multiples of 64; the official size is 576x320)")
        if (flow is None) == (tracks is None):
            raise UserError("give either flow or tracks (exactly one)")
        if not isinstance(num_frames, numbers.Integral) or num_frames < 2:
            raise UserError(f"num_frames must be an integer >= 2, got {num_frames}")
        if not isinstance(num_inference_steps, numbers.Integral) or num_inference_steps < 1:
            raise UserError(f"num_inference_steps must be a positive integer, got {num_inference_steps}")
        if not isinstance(decode_chunk_size, numbers.Integral) or decode_chunk_size < 1:
            raise UserError(f"decode_chunk_size must be a positive integer, got {decode_chunk_size}")
        if output_type not in ("np", "pt", "latent"):
            raise UserError(f"output_type must be np, pt or latent, not {output_type!r}")
        if flow is not None:
            shape = tuple(np.shape(flow))
            if shape != (num_frames, 2, height, width):
                raise UserError(f"flow has shape {shape}; expected (frames, 2, height, width) = "
                                f"{(num_frames, 2, height, width)}")
            if not np.all(np.isfinite(np.asarray(flow, dtype=np.float32))):
                raise UserError("flow has values that are not finite numbers")
        if image is None:
            raise UserError("no image given")

    def _image_embeddings(self, pixels: torch.Tensor, device, dtype) -> torch.Tensor:
        """CLIP embedding of the clean image ``[1, 3, H, W]`` in [-1, 1] -> ``[1, 1, D]``."""
        size = self.image_encoder.config.image_size
        x = _resize_with_antialiasing(pixels, (size, size))
        x = (x + 1.0) / 2.0
        # The feature extractor's mean/std (OpenAI CLIP's in SVD), applied here on the tensor.
        mean = torch.tensor(self.feature_extractor.image_mean, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.feature_extractor.image_std, dtype=x.dtype).view(1, 3, 1, 1)
        x = (x - mean) / std
        emb = self.image_encoder(x.to(device=device, dtype=self.image_encoder.dtype)).image_embeds
        return emb.unsqueeze(1).to(dtype)

    def _image_latent(self, pixels: torch.Tensor, noise_aug_strength: float, generator, device,
                      dtype) -> torch.Tensor:
        """VAE mode of the noised image (not scaled by the scaling factor, as the official)."""
        noise = randn_tensor(pixels.shape, generator=generator, device=device, dtype=pixels.dtype)
        pixels = pixels.to(device) + noise_aug_strength * noise
        upcast = self.vae.dtype == torch.float16 and self.vae.config.force_upcast
        if upcast:
            self.vae.to(dtype=torch.float32)
        latent = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.mode()
        if upcast:
            self.vae.to(dtype=torch.float16)
        return latent.to(dtype)

    def _encode_flow(self, flow: torch.Tensor):
        # Under model CPU offload, accelerate moves the UNet to the GPU only in its forward hook;
        # encode_flow is a separate entry point, so run the hook's pre-forward first.
        hook = getattr(self.unet, "_hf_hook", None)
        if hook is not None:
            hook.pre_forward(self.unet)
        return self.unet.encode_flow(flow)

    def decode_latents(self, latents: torch.Tensor, decode_chunk_size: int) -> torch.Tensor:
        """``[T, 4, h, w]`` latents -> ``[T, 3, H, W]`` float32 frames in [-1, 1], in chunks."""
        latents = latents / self.vae.config.scaling_factor
        frames = []
        for i in range(0, latents.shape[0], decode_chunk_size):
            chunk = latents[i:i + decode_chunk_size]
            frames.append(self.vae.decode(chunk.to(self.vae.dtype), num_frames=chunk.shape[0]).sample.float())
        return torch.cat(frames)

    # ---- the call -----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        image: PIL.Image.Image | np.ndarray,
        flow: np.ndarray | torch.Tensor | None = None,
        tracks: Sequence | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
        num_frames: int = OFFICIAL_FRAMES,
        num_inference_steps: int = DEFAULT_STEPS,
        min_guidance_scale: float = DEFAULT_MIN_GUIDANCE,
        max_guidance_scale: float = DEFAULT_MAX_GUIDANCE,
        motion_bucket_id: int = DEFAULT_MOTION_BUCKET_ID,
        fps_id: int = DEFAULT_FPS_ID,
        noise_aug_strength: float = DEFAULT_NOISE_AUG,
        decode_chunk_size: int = DEFAULT_DECODE_CHUNK,
        anchors: str = "official",
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        callback_on_step_end: Callable[..., dict] | None = None,
        return_dict: bool = True,
        prompt: str = "",
        text_guidance_scale: float = 1.0,
        traj_guidance_scale: float = 1.0,
    ):
        """Generate one video from ``image`` and drags.

        Args:
            image: the first frame (PIL or uint8 ``[H, W, 3]``); fitted to ``width x height``.
            flow: float ``[num_frames, 2, height, width]`` displacement maps in pixels
                (``official_flow``), or
            tracks: lists of ``[x, y]`` points at ``width x height``, turned into the flow with
                ``official_flow(tracks, width, height, num_frames, anchors=anchors)``.
            width, height: multiples of 64; default the flow's size, else 576x320.
            num_frames: frames of the video (14 for the published model).
            num_inference_steps: Euler steps (25).
            min_guidance_scale, max_guidance_scale: guidance ramp over the frames (1.0 -> 2.5): the
                image's (and the trajectory's, which both halves share, as in the official code).
            motion_bucket_id, fps_id, noise_aug_strength: the micro-conditioning, passed to the
                UNet as is (official: 4, 4, 0.02).
            decode_chunk_size: frames the temporal VAE decodes at once (official: 1).
            generator: a ``torch.Generator`` for reproducible noise.
            latents: optional initial noise ``[1, T, 4, h, w]`` (unit variance).
            output_type: "np" (uint8 ``[1, T, H, W, 3]``), "pt" (float ``[1, T, 3, H, W]`` in
                [-1, 1], the project's frame convention) or "latent".
            callback_on_step_end: diffusers' ``fn(pipe, step_index, timestep, {"latents": ...})``
                after each step; it returns a dict (a "latents" entry replaces the latents).
            prompt: text for a model fine-tuned with text (``has_text``); ignored without one. An
                empty prompt gives exactly the image-only output.
            text_guidance_scale: the text's own guidance scale (``combine_guidance``): 1.0 is the
                official guidance with the prompt in the conditional pass only; any other value
                costs one pass more (the image without text).
            traj_guidance_scale: the trajectory's own guidance scale (``combine_guidance``, as the
                small model's ``--traj-guidance``): 1.0 is the official guidance (both halves share
                the flow); any other value costs one pass more (image and text, zero flow).
        Returns:
            ``DragNUWASVDPipelineOutput(frames, flow)`` (or the tuple with ``return_dict=False``).
        """
        if flow is not None and height is None and width is None and np.ndim(flow) == 4:
            height, width = int(np.shape(flow)[2]), int(np.shape(flow)[3])
        width = OFFICIAL_WIDTH if width is None else width
        height = OFFICIAL_HEIGHT if height is None else height
        self.check_inputs(image, flow, tracks, width, height, num_frames, num_inference_steps,
                          decode_chunk_size, output_type)
        width, height, num_frames = int(width), int(height), int(num_frames)
        num_inference_steps, decode_chunk_size = int(num_inference_steps), int(decode_chunk_size)
        if tracks is not None:
            flow = official_flow(tracks, width, height, num_frames, anchors=anchors)
        flow_np = flow.detach().cpu().float().numpy() if isinstance(flow, torch.Tensor) \
            else np.asarray(flow, dtype=np.float32)

        device = self._execution_device
        dtype = self.unet.dtype
        pil = fit_image(image, width, height)
        pixels = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 127.5 - 1.0)
        pixels = pixels.permute(2, 0, 1)[None]                                # [1, 3, H, W]

        # Conditioning (the official order: CLIP of the clean image, then the noised VAE latent).
        emb = self._image_embeddings(pixels, device, dtype)                  # [1, 1, D]
        image_latent = self._image_latent(pixels, noise_aug_strength, generator, device, dtype)
        image_latent = image_latent[:, None].repeat(1, num_frames, 1, 1, 1)   # [1, T, 4, h, w]
        do_cfg = max(min_guidance_scale, max_guidance_scale) > 1.0
        time_ids = torch.tensor([[fps_id, motion_bucket_id, noise_aug_strength]], dtype=dtype,
                                device=device)
        # Text only with an adapter and a prompt; otherwise the passes are exactly the official ones.
        use_text = self.text_adapter is not None and bool(prompt and str(prompt).strip())
        text_scale = float(text_guidance_scale)
        no_text_pass = use_text and text_scale != 1.0
        traj_scale = float(traj_guidance_scale)
        no_traj_pass = traj_scale != 1.0
        # The passes, batched: [uncond (no image, no text)] + cond (image, text) + [image, no text]
        # + [image, text, no trajectory].
        n_pass = 1 + int(do_cfg) + int(no_text_pass) + int(no_traj_pass)
        if use_text:
            text = self._text_tokens(str(prompt), device, dtype)               # [1, L, D]
            zero = torch.zeros_like(text)
            text = torch.cat(([zero] if do_cfg else []) + [text] + ([zero] if no_text_pass else [])
                             + ([text] if no_traj_pass else []))
        extra = int(no_text_pass) + int(no_traj_pass)  # passes with the image, like cond
        if do_cfg:
            emb = torch.cat([torch.zeros_like(emb), emb])
            image_latent = torch.cat([torch.zeros_like(image_latent), image_latent])
        if extra:
            emb = torch.cat([emb] + [emb[-1:]] * extra)
            image_latent = torch.cat([image_latent] + [image_latent[-1:]] * extra)
        if use_text:
            from .text import hidden_states_with_text

            emb = hidden_states_with_text(emb, text)                           # [n, 1 + L, D]
        time_ids = time_ids.repeat(n_pass, 1)

        # Flow features once per video, shared by every step and both guidance halves (the UNet
        # broadcasts the batch-1 features over the doubled guidance batch).
        flow_t = torch.from_numpy(flow_np)[None].to(device=device, dtype=dtype)  # [1, T, 2, H, W]
        if no_traj_pass:
            # The no-trajectory pass reads a zero flow, whose features are not zero (the encoder's
            # biases): both in one call, then one row per pass.
            both = self._encode_flow(torch.cat([flow_t, torch.zeros_like(flow_t)]))
            flow_features = [torch.cat([f[:1]] * (n_pass - 1) + [f[1:]]) for f in both]
        else:
            flow_features = self._encode_flow(flow_t)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        shape = (1, num_frames, 4, height // self.vae_scale_factor, width // self.vae_scale_factor)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise UserError(f"latents have shape {tuple(latents.shape)}; expected {shape}")
        latents = latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma

        scale = torch.linspace(min_guidance_scale, max_guidance_scale, num_frames, device=device,
                               dtype=dtype).view(1, num_frames, 1, 1, 1)
        with self.progress_bar(total=len(timesteps)) as progress:
            for i, t in enumerate(timesteps):
                x = latents.repeat(n_pass, 1, 1, 1, 1) if n_pass > 1 else latents
                x = self.scheduler.scale_model_input(x, t)
                x = torch.cat([x, image_latent], dim=2)
                pred = self.unet(x, t, encoder_hidden_states=emb, added_time_ids=time_ids,
                                 flow_features=flow_features, return_dict=False)[0]
                if n_pass > 1:
                    # Guidance on the v-prediction equals the official guidance on the denoised
                    # output: the passes share the input, and D is affine in the network output.
                    passes = list(pred.chunk(n_pass))
                    uncond = passes.pop(0) if do_cfg else None
                    cond = passes.pop(0)
                    no_text = passes.pop(0) if no_text_pass else None
                    no_traj = passes.pop(0) if no_traj_pass else None
                    pred = combine_guidance(cond, cond if uncond is None else uncond,
                                            scale if do_cfg else 1.0, no_text, text_scale, no_traj, traj_scale)
                latents = self.scheduler.step(pred, t, latents).prev_sample
                if callback_on_step_end is not None:
                    out = callback_on_step_end(self, i, t, {"latents": latents}) or {}
                    latents = out.get("latents", latents)
                progress.update()

        if output_type == "latent":
            frames = latents
        else:
            video = self.decode_latents(latents[0], decode_chunk_size)         # [T, 3, H, W]
            if output_type == "pt":
                frames = video.clamp(-1.0, 1.0).cpu()[None]
            else:
                frames = ((video.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
                frames = frames.permute(0, 2, 3, 1).cpu().numpy()[None]
        self.maybe_free_model_hooks()
        if not return_dict:
            return frames, flow_np
        return DragNUWASVDPipelineOutput(frames=frames, flow=flow_np)


def use_sdpa(pipe: DragNUWASVDPipeline) -> None:
    """Make every diffusers attention in the UNet and VAE use PyTorch's scaled-dot-product
    attention (``AttnProcessor2_0``, diffusers' default when torch has SDPA). The text adapter's
    processors stay: the attention each one wraps is swapped instead."""
    for model in (pipe.unet, pipe.vae):
        procs = model.attn_processors
        if all(isinstance(getattr(p, "base", p), AttnProcessor2_0) for p in procs.values()):
            continue
        new = {}
        for name, p in procs.items():
            if isinstance(p, (TextCrossAttnProcessor, ImageTokenProcessor)):
                p.base = AttnProcessor2_0()
                new[name] = p
            else:
                new[name] = AttnProcessor2_0()
        model.set_attn_processor(new)


SVD_HUB_ID = "stabilityai/stable-video-diffusion-img2vid"
SVD_PARTS = ("vae", "image_encoder", "feature_extractor", "scheduler")
_DTYPES = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16,
           "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}


def _svd_hint(where: str) -> str:
    return (f"Stable Video Diffusion parts not found at {where}: download {SVD_HUB_ID} "
            f"({', '.join(p + '/' for p in SVD_PARTS)}) and pass --svd PATH")


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~")) and "\\" not in name


def _from_pretrained(load: Callable, source: str, subfolder: str, what: str, hint: str, **kwargs):
    """Call ``load(source, subfolder=...)`` and turn the hub's and the loaders' errors (offline,
    missing repository, missing file) into one ``UserError`` line."""
    try:
        return load(source, subfolder=subfolder, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        if not Path(source).exists() and os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
            reason = "not in the local hub cache, and HF_HUB_OFFLINE=1 forbids downloading"
        else:
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(f"{hint} (loading {what}: {reason})") from None


def load_svd_pipeline(model: str, svd: str | None = None, torch_dtype: torch.dtype | str = torch.float32,
                      offload: bool = False, sdpa: bool = True) -> DragNUWASVDPipeline:
    """Build the pipeline from a converted DragNUWA 1.5 folder (``unet/``, from ``dragnuwa
    convert``) or hub id, plus the VAE, CLIP image encoder, feature extractor and scheduler of the
    Stable Video Diffusion folder or hub id ``svd``.

    ``torch_dtype``: float32 / float16 / bfloat16 (or "fp32", "fp16", "bf16") for the weights;
    ``offload``: diffusers' model CPU offload (needs a GPU; each model moves to the GPU only
    while it runs); ``sdpa``: PyTorch scaled-dot-product attention in the UNet and VAE. Nothing is
    downloaded when ``HF_HUB_OFFLINE=1``; a missing folder or an unreachable hub id ends in one
    ``UserError`` line that says what to download and where.
    """
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from .unet import DragNUWASVDUNet

    if isinstance(torch_dtype, str):
        if torch_dtype not in _DTYPES:
            raise UserError(f"dtype must be fp16, bf16 or fp32, not {torch_dtype!r}")
        torch_dtype = _DTYPES[torch_dtype]
    model, svd = str(model), (None if svd is None else str(svd))
    if svd is None:
        raise UserError(f"a DragNUWA 1.5 model needs the Stable Video Diffusion parts: download "
                        f"{SVD_HUB_ID} ({', '.join(p + '/' for p in SVD_PARTS)}) and pass --svd PATH")

    model_hint = (f"DragNUWA 1.5 model not found at {model}: convert drag_nuwa_svd.pth with "
                  f"'dragnuwa convert drag_nuwa_svd.pth --out DIR' and pass --model DIR")
    if Path(model).exists():
        if not (Path(model) / "unet" / "config.json").is_file():
            raise UserError(f"{model} is not a converted DragNUWA 1.5 folder (no unet/config.json): "
                            f"make one with 'dragnuwa convert drag_nuwa_svd.pth --out DIR'")
    elif not _looks_like_hub_id(model):
        raise UserError(model_hint)
    if Path(svd).exists():
        missing = [p for p in SVD_PARTS if not (Path(svd) / p).is_dir()]
        if missing:
            raise UserError(_svd_hint(svd) + f" (missing {', '.join(p + '/' for p in missing)})")
    elif not _looks_like_hub_id(svd):
        raise UserError(_svd_hint(svd))

    unet = _from_pretrained(DragNUWASVDUNet.from_pretrained, model, "unet", "the UNet", model_hint,
                            torch_dtype=torch_dtype)
    svd_hint = _svd_hint(svd)
    try:
        vae = _from_pretrained(AutoencoderKLTemporalDecoder.from_pretrained, svd, "vae", "vae/",
                               svd_hint, torch_dtype=torch_dtype)
    except UserError:
        if torch_dtype != torch.float16:
            raise
        # The hub repository's fp16 files are a variant (diffusion_pytorch_model.fp16.safetensors).
        vae = _from_pretrained(AutoencoderKLTemporalDecoder.from_pretrained, svd, "vae", "vae/",
                               svd_hint, torch_dtype=torch_dtype, variant="fp16")
    try:
        image_encoder = _from_pretrained(CLIPVisionModelWithProjection.from_pretrained, svd,
                                         "image_encoder", "image_encoder/", svd_hint, dtype=torch_dtype)
    except UserError:
        if torch_dtype != torch.float16:
            raise
        image_encoder = _from_pretrained(CLIPVisionModelWithProjection.from_pretrained, svd,
                                         "image_encoder", "image_encoder/", svd_hint,
                                         dtype=torch_dtype, variant="fp16")
    feature_extractor = _from_pretrained(CLIPImageProcessor.from_pretrained, svd, "feature_extractor",
                                         "feature_extractor/", svd_hint)
    scheduler = _from_pretrained(EulerDiscreteScheduler.from_pretrained, svd, "scheduler",
                                 "scheduler/", svd_hint)
    pipe = DragNUWASVDPipeline(vae=vae, image_encoder=image_encoder.eval(), unet=unet.eval(),
                               scheduler=scheduler, feature_extractor=feature_extractor)
    if sdpa:
        use_sdpa(pipe)
    if Path(model).is_dir():
        pipe.load_text_adapter(model)  # after use_sdpa (which keeps it anyway); None without text
    if offload:
        try:
            pipe.enable_model_cpu_offload()
        except RuntimeError as err:
            raise UserError(f"model CPU offload needs a GPU ({str(err).splitlines()[0]})") from None
    return pipe
