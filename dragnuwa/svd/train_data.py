"""Training samples for the SVD backend: clip -> (frames, caption, flow input) per stage.

Adaptive Training (arXiv 2308.08089, Sec. 3.4): stage 1 feeds the dense optical flow (displacement
maps, DESIGN.md layout), stage 2 feeds 1..N tracks drawn from the clip's candidate tracks with
probability proportional to motion (Sec. 3.2), splatted at ``int()`` pixels and spread by the
official DragNUWA 1.5 unnormalised Gaussian (``dragnuwa.svd.flow``: 199 px, sigma 20 at 576x320;
here scaled with the training size unless ``flow_sigma`` is set). Both end as ``[T, 2, H, W]`` px.

Sources: procedural clips (``synthetic``, exact flow and tracks) or ``dragnuwa prepare`` shards
(``dragnuwa.data.shards``: frames, caption, candidate tracks, optional dense flow maps). A sample is
a pure function of (seed, index), so a resumed run sees the same data.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from dragnuwa.errors import UserError

OFFICIAL_SIGMA_AT = (576, 320, 20.0)  # the official Gaussian's sigma and the size it was used at


def flow_sigma(width: int, height: int, sigma: float = 0.0) -> tuple[int, float]:
    """(kernel size, sigma) of stage 2's Gaussian: ``sigma`` or the official 20 px scaled with the
    size; the kernel spans +-5 sigma like the official 199 px at 20."""
    if sigma <= 0:
        w0, h0, s0 = OFFICIAL_SIGMA_AT
        sigma = s0 * min(width / w0, height / h0)
    return 2 * int(round(5 * sigma)) - 1 if sigma >= 1 else 1, float(sigma)


def fit_clip(frames: np.ndarray, width: int, height: int):
    """Centre crop to the aspect of ``width x height`` and resize. -> (frames, (x0, y0, scale_x,
    scale_y)) where a point p of the source maps to ``(p - (x0, y0)) * scale``."""
    t, h, w = frames.shape[:3]
    if w * height > h * width:  # wider than the target: crop the sides
        cw, ch = h * width / height, h
    else:
        cw, ch = w, w * height / width
    x0, y0 = (w - cw) / 2, (h - ch) / 2
    xi, yi = int(round(x0)), int(round(y0))
    crop = frames[:, yi:yi + int(round(ch)), xi:xi + int(round(cw))]
    interp = cv2.INTER_AREA if crop.shape[2] > width else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in crop])
    return out, (xi, yi, width / crop.shape[2], height / crop.shape[1])


def dense_flow_input(maps: np.ndarray, width: int, height: int, fit=None) -> np.ndarray:
    """Stage 1: dense maps ``[T, 2, h, w]`` (px of their own grid, or of the fitted crop with ``fit``
    from ``fit_clip`` applied to a grid of the source size) -> ``[T, 2, height, width]`` px."""
    maps = np.asarray(maps, np.float32)
    t, _, h, w = maps.shape
    hw = maps.transpose(0, 2, 3, 1)
    if fit is not None:  # the maps are on the source clip's grid: crop it like the frames
        x0, y0, sx, sy = fit
        cw, ch = int(round(width / sx)), int(round(height / sy))
        hw = hw[:, y0:y0 + ch, x0:x0 + cw]
        h, w = hw.shape[1:3]
    interp = cv2.INTER_AREA if w > width else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(m, (width, height), interpolation=interp) for m in hw]) * [width / w, height / h]
    return out.transpose(0, 3, 1, 2).astype(np.float32)


def sparse_flow_input(tracks: np.ndarray, width: int, height: int, rng: np.random.Generator, max_tracks: int,
                      sigma: float = 0.0) -> np.ndarray:
    """Stage 2: draw 1..``max_tracks`` of the candidate ``tracks`` ``[N, T, 2]`` (px of the training
    size) by motion, splat and spread them the official way -> ``[T, 2, height, width]`` px. No
    candidate inside the frame: all-zero maps (no trajectory)."""
    from dragnuwa.svd.flow import gaussian_spread, splat_tracks
    from dragnuwa.trajectory import sample_tracks

    tracks = np.asarray(tracks, np.float64)
    t = tracks.shape[1] if tracks.ndim == 3 else 1
    inside = (tracks[..., 0] >= 0) & (tracks[..., 0] < width) & (tracks[..., 1] >= 0) & (tracks[..., 1] < height)
    cands = tracks[inside.all(axis=1)] if tracks.ndim == 3 else tracks[:0]
    out = np.zeros((t, 2, height, width), np.float32)
    if len(cands):
        picked = sample_tracks(cands, max_tracks, rng)
        size, s = flow_sigma(width, height, sigma)
        out[1:] = gaussian_spread(splat_tracks(list(picked), width, height), size, s)
    return out


def to_item(frames: np.ndarray, caption: str, flow: np.ndarray) -> dict:
    """``{"video": [T, 3, H, W] in [-1, 1], "text", "flow": [T, 2, H, W]}``."""
    from dragnuwa.video import to_tensor

    return {"video": to_tensor(frames), "text": caption, "flow": torch.from_numpy(np.ascontiguousarray(flow))}


class SyntheticSVDClips(torch.utils.data.Dataset):
    """Procedural clips at the training size; index i = scene ``first_seed + i``."""

    def __init__(self, first_seed: int, count: int, frames: int, width: int, height: int, stage: int,
                 max_tracks: int = 8, sigma: float = 0.0):
        self.first_seed, self.count, self.frames = first_seed, count, frames
        self.width, self.height, self.stage, self.max_tracks, self.sigma = width, height, stage, max_tracks, sigma

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        from dragnuwa.data.dataset import candidate_tracks
        from dragnuwa.data.synthetic import render_clip
        from dragnuwa.trajectory import flow_to_maps

        seed = self.first_seed + int(i) % self.count
        clip = render_clip(seed, self.frames, (self.width, self.height))
        rng = np.random.default_rng([seed, 2])
        if self.stage == 1:
            flow = flow_to_maps(clip.flow)
        else:
            centres = clip.tracks[clip.visible.all(axis=1)]
            cands = candidate_tracks(clip.flow, rng, clip.layers, centres)
            flow = sparse_flow_input(cands, self.width, self.height, rng, self.max_tracks, self.sigma)
        return to_item(clip.frames, clip.caption, flow)


def shard_item(sample: dict, frames: int, width: int, height: int, stage: int, rng: np.random.Generator,
               max_tracks: int = 8, sigma: float = 0.0) -> dict:
    """One decoded shard sample (``dragnuwa.data.shards.decode_sample``) as a training item: the
    first ``frames`` frames, centre-cropped and resized to the training size, with the flow input
    of ``stage`` (stage 1 needs shards prepared with flow)."""
    clip = sample["frames"][:frames]
    if len(clip) < frames:
        raise UserError(f"shard sample {sample.get('key')} has {len(clip)} frames, training needs {frames}")
    fitted, fit = fit_clip(clip, width, height)
    if stage == 1:
        if sample.get("flow") is None:
            raise UserError("stage 1 needs dense flow in the shards: run `dragnuwa prepare` with flow")
        maps = np.asarray(sample["flow"], np.float32)[:frames]
        src_h, src_w = clip.shape[1:3]
        # Flow stored on a coarser grid: bring it to the clip's pixels first, then crop like the frames.
        maps = dense_flow_input(maps, src_w, src_h)
        flow = dense_flow_input(maps, width, height, fit)
    else:
        x0, y0, sx, sy = fit
        tracks = (np.asarray(sample["tracks"], np.float64)[:, :frames] - [x0, y0]) * [sx, sy]
        flow = sparse_flow_input(tracks, width, height, rng, max_tracks, sigma)
    return to_item(fitted, sample.get("caption", ""), flow)


def shard_stream(pattern: str, cfg, rank: int, world: int, skip: int, part: int = 0, parts: int = 1):
    """Endless training items from shards: pass e = 0, 1, ... visits the shards in an order seeded
    by (seed, e); sample j of the whole stream goes to rank ``j % world``. The first ``skip`` items of
    this rank are passed over without decoding (exact resume at any step). With ``parts`` > 1 this
    call decodes only every ``parts``-th of the rest, from ``part`` on (one DataLoader worker's share:
    the loader takes one item from each worker in turn, so the order stays the same)."""
    from dragnuwa.data.shards import decode_sample, expand_shards, raw_samples

    paths = expand_shards(pattern)
    j = mine = 0
    for epoch in range(1 << 30):
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(paths))
        seen = 0
        for p in order:
            for raw in raw_samples(paths[p]):
                seen += 1
                j += 1
                if (j - 1) % world != rank:
                    continue
                mine += 1
                if mine <= skip or (mine - skip - 1) % parts != part:
                    continue
                rng = np.random.default_rng([cfg.seed, j, 2])
                yield shard_item(decode_sample(raw), cfg.frames, cfg.width, cfg.height, cfg.stage, rng,
                                 cfg.data.max_tracks, cfg.flow_sigma)
        if seen == 0:
            raise UserError(f"the shards {pattern} hold no samples")


class ShardItems(torch.utils.data.IterableDataset):
    """``shard_stream`` split over DataLoader workers (each decodes its share; same order as one)."""

    def __init__(self, pattern: str, cfg, rank: int, world: int, skip: int):
        self.pattern, self.cfg, self.rank, self.world, self.skip = pattern, cfg, rank, world, skip

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        part, parts = (info.id, info.num_workers) if info is not None else (0, 1)
        return shard_stream(self.pattern, self.cfg, self.rank, self.world, self.skip, part, parts)
