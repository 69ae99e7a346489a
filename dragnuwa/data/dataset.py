"""Datasets of training samples ``{"video", "text", "maps"}`` (DESIGN.md data flow).

Stage 1 (Adaptive Training, paper Sec. 3.4) gets the dense exact flow as maps; stage 2 gets
1..N sparse tracks drawn by motion intensity from points chained through the flow, spread
into maps. ``SyntheticClips`` renders procedural clips on the fly (every index a new scene);
``ClipFolder`` reads `dragnuwa synth` output.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dragnuwa.errors import UserError


def make_maps(flow: np.ndarray, stage: int, rng: np.random.Generator, max_tracks: int,
              extra_tracks: np.ndarray | None = None) -> np.ndarray:
    """Stage 1: dense flow maps. Stage 2: sampled sparse tracks (from a jittered grid chained
    through ``flow``, plus ``extra_tracks`` such as object centres) spread into maps."""
    from dragnuwa import trajectory as tj

    if stage == 1:
        return tj.flow_to_maps(flow)
    H, W = flow.shape[1:3]
    tracks, valid = tj.chain_tracks(flow, tj.anchor_grid(H, W, rng))
    cands = tracks[valid]
    if extra_tracks is not None and len(extra_tracks):
        cands = np.concatenate([cands, extra_tracks.astype(cands.dtype)]) if len(cands) else extra_tracks
    if len(cands) == 0:
        return np.zeros((flow.shape[0] + 1, 2, H, W), np.float32)
    return tj.tracks_to_maps(tj.sample_tracks(cands, max_tracks, rng), H, W)


def _item(frames: np.ndarray, flow: np.ndarray, caption: str, stage: int, rng, max_tracks: int, objects=None):
    from dragnuwa.video import to_tensor

    maps = make_maps(flow, stage, rng, max_tracks, objects)
    return {"video": to_tensor(frames), "text": caption, "maps": torch.from_numpy(maps)}


class SyntheticClips(Dataset):
    """Procedural clips rendered on the fly: index i is the scene with seed ``first_seed + i``."""

    def __init__(self, first_seed: int = 0, count: int = 1_000_000, frames: int = 14,
                 size: tuple[int, int] = (64, 64), stage: int = 1, max_tracks: int = 8):
        if stage not in (1, 2):
            raise UserError(f"stage must be 1 or 2, got {stage}")
        self.first_seed, self.count, self.frames, self.size = first_seed, count, frames, tuple(size)
        self.stage, self.max_tracks = stage, max_tracks

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        from dragnuwa.data.synthetic import render_clip

        seed = self.first_seed + int(i)
        clip = render_clip(seed, self.frames, self.size)
        objects = clip.tracks[clip.visible.all(axis=1)]
        return _item(clip.frames, clip.flow, clip.caption, self.stage, np.random.default_rng([seed, 2]),
                     self.max_tracks, objects)


class ClipFolder(Dataset):
    """Clips written by `dragnuwa synth` (NAME.mp4 + NAME.flow.npz + NAME.txt)."""

    def __init__(self, root: str | Path, frames: int = 14, size: tuple[int, int] = (64, 64), stage: int = 1,
                 max_tracks: int = 8):
        self.root = Path(root)
        self.videos = sorted(self.root.glob("*.mp4"))
        if not self.videos:
            raise UserError(f"no clips (*.mp4) in {self.root}")
        self.frames, self.size, self.stage, self.max_tracks = frames, tuple(size), stage, max_tracks

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict:
        import cv2

        from dragnuwa.video import read_video

        path = self.videos[i]
        frames, _ = read_video(path, max_frames=self.frames)
        flow = np.load(path.with_suffix(".flow.npz"))["flow"][: self.frames - 1].astype(np.float32)
        if len(frames) < self.frames:
            raise UserError(f"{path} has {len(frames)} frames, need {self.frames}")
        H, W = frames.shape[1:3]
        if (W, H) != self.size:  # resize frames and flow (flow values scale with the axis)
            sx, sy = self.size[0] / W, self.size[1] / H
            frames = np.stack([cv2.resize(f, self.size, interpolation=cv2.INTER_AREA) for f in frames])
            flow = np.stack([cv2.resize(f, self.size, interpolation=cv2.INTER_AREA) for f in flow]) * [sx, sy]
        caption = path.with_suffix(".txt").read_text().strip()
        meta_path = path.with_suffix(".json")
        objects = None
        if meta_path.is_file():
            tracks = json.loads(path.with_suffix(".tracks.json").read_text())["tracks"]
            objects = np.array(tracks, dtype=np.float64)[:, : self.frames] * [self.size[0] / W, self.size[1] / H]
        return _item(frames, flow.astype(np.float32), caption, self.stage, np.random.default_rng([i, 2]),
                     self.max_tracks, objects)
