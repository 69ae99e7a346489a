"""The video model's own latents paired with the true clips: training data for its decoder.

Not in the paper. The decoder is trained on the encoder's latents of real frames, but at
generation it decodes what the diffusion model sampled, which differs: objects smeared along their
path, a faint copy where they started (docs/model_card.md). Fine-tuning the decoder on
(sampled latents -> true frames) of training scenes teaches it to render those latents as the
scene they stand for. The encoder stays frozen, so the video model's latent space is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dragnuwa.errors import UserError, atomic_path

FROM_NOISE_EVERY = 3  # every 3rd clip is sampled from pure noise (the model alone), the rest from its default start


def build_sample_pairs(model_path: str, clips: int, first_seed: int, steps: int, start: int = 0) -> dict:
    """Generate ``clips`` training scenes (their object tracks, caption and first frame) with the
    video model at ``model_path`` -> ``{"z": fp16 [N, T, C, h, w], "x": uint8 [N, T, H, W, 3]}``.
    Only scenes ``start``.. are sampled (N = clips - start); each scene's sample depends on its
    index alone, so the pairs built in two parts equal those built at once."""
    from dragnuwa.evaluate import TRAINING_SEEDS_END, scene_cases
    from dragnuwa.pipeline import load_pipeline

    pipe = load_pipeline(model_path)
    cfg = pipe.cfg
    try:  # training scenes only: stop at the first evaluation seed, before any sampling
        cases = scene_cases(clips, first_seed, cfg.frames, (cfg.width, cfg.height), end_seed=TRAINING_SEEDS_END)
    except UserError as err:
        raise UserError(f"sample pairs must stay in the training scenes (0..{TRAINING_SEEDS_END - 1}): {err} "
                        "(sample_seed, sample_clips)") from None
    z, x = [], []
    for i, case in enumerate(tqdm(cases[start:], desc="sampling the decoder's pairs", unit="clip"), start):
        motion_init = 0.0 if i % FROM_NOISE_EVERY == 0 else None  # None: the model's default start
        # Only the latents are kept: the frames' detail restoration would be wasted work.
        res = pipe.generate(case.image, case.tracks, case.text, steps=steps, seed=i, paste_first=False,
                            show_progress=False, motion_init=motion_init, detail=False)
        z.append(res.latents.half())
        x.append(torch.from_numpy(case.frames))
    return {"z": torch.stack(z), "x": torch.stack(x)}


def load_or_build_sample_pairs(cache: Path, model_path: str, clips: int, first_seed: int, steps: int) -> dict:
    """The pairs cached in ``cache`` (written atomically) if they were built with these settings.
    A cache of fewer clips with otherwise the same settings is extended (the first scenes are the
    same); one of more clips is cut to ``clips``."""
    key = {"model": str(Path(model_path).resolve()), "clips": clips, "first_seed": first_seed, "steps": steps}
    data = None
    if cache.is_file():
        data = torch.load(cache, map_location="cpu", weights_only=True)
        cached = {**key, "clips": int(data["z"].shape[0])}
        if data.get("key") != str(cached):
            data = None  # other settings: sample afresh
        elif cached["clips"] >= clips:
            return {"z": data["z"][:clips], "x": data["x"][:clips], "key": str(key)}
    if not Path(model_path).is_file():
        raise UserError(f"samples_from model not found: {model_path}")
    have = 0 if data is None else int(data["z"].shape[0])
    more = build_sample_pairs(model_path, clips, first_seed, steps, start=have)
    data = more if data is None else {k: torch.cat([data[k], more[k]]) for k in ("z", "x")}
    data["key"] = str(key)
    with atomic_path(cache) as tmp:
        torch.save(data, tmp)
    return data


def scene_tracks(clips: int, first_seed: int, frames: int, size: tuple[int, int]) -> list[np.ndarray]:
    """The object tracks ``[N, frames, 2]`` of the pairs' training scenes (what a track decoder,
    ``models/track_decoder.py``, reads with each sampled frame): rendered again from their seeds, as
    ``build_sample_pairs`` drew them, so caches made before track decoders serve them too."""
    from dragnuwa.evaluate import TRAINING_SEEDS_END, scene_cases

    return [case.tracks for case in scene_cases(clips, first_seed, frames, size, end_seed=TRAINING_SEEDS_END)]


def pair_batch(data: dict, n: int, generator: torch.Generator, moving_weight: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``n`` random frames of the pairs: ``(latents [n, C, h, w], frames [n, 3, H, W] in [-1, 1],
    loss weights [n, 1, H, W], their clips' first frames [n, 3, H, W], track planes [n, 6, H, W])``,
    the weights 1 + ``moving_weight`` where :func:`moving_mask` is set; the planes
    (``track_decoder.track_planes``) when ``data`` has the scenes' ``"tracks"``, else None."""
    from dragnuwa.models.track_decoder import track_planes
    from dragnuwa.video import to_tensor

    z, x = data["z"], data["x"]
    clip = torch.randint(0, z.shape[0], (n,), generator=generator)
    frame = torch.randint(0, z.shape[1], (n,), generator=generator)
    frames, first = to_tensor(x[clip, frame].numpy()), to_tensor(x[clip, 0].numpy())
    weight = 1 + moving_weight * moving_mask(frames, first) if moving_weight else torch.ones_like(frames[:, :1])
    planes = None
    if "tracks" in data:
        H, W = frames.shape[-2:]
        # A frame's planes need only its own points and frame 0's: two frames, not the whole clip.
        planes = torch.from_numpy(np.stack([track_planes(data["tracks"][c][:, [0, f]], H, W)[1]
                                            for c, f in zip(clip.tolist(), frame.tolist())]))
    return z[clip, frame].float(), frames, weight, first, planes


def moving_mask(frames: torch.Tensor, first: torch.Tensor, threshold: float = 0.1, grow: int = 2) -> torch.Tensor:
    """``float [n, 1, H, W]``: 1 where ``frames`` differ from their clip's ``first`` frame (both
    ``[n, 3, H, W]`` in [-1, 1]) by more than ``threshold`` in a channel, grown by ``grow`` px: the
    moved objects (their old and new places) with their edges, where the tracker's points are."""
    changed = ((frames - first).abs().amax(dim=1, keepdim=True) > threshold).float()
    return torch.nn.functional.max_pool2d(changed, 2 * grow + 1, stride=1, padding=grow)
