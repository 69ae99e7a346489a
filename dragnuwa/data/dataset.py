"""Datasets of training samples ``{"video", "text", "maps"}`` (DESIGN.md data flow).

Adaptive Training (paper Sec. 3.4): stage 1 gets the dense exact flow as maps; stage 2 gets
1..N sparse tracks (paper Sec. 3.2: anchors on a jittered grid, chained through the flow,
drawn with probability proportional to motion intensity) spread into maps.
``SyntheticClips`` renders procedural clips on the fly (index i is the scene with seed
``first_seed + i``); ``ClipFolder`` reads `dragnuwa synth` output. Both are deterministic per
index, so a training run and its resume see the same samples.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from dragnuwa.errors import UserError


def candidate_tracks(flow: np.ndarray, rng: np.random.Generator, layers: np.ndarray | None = None,
                     extra_tracks: np.ndarray | None = None) -> np.ndarray:
    """Ground-truth tracks to sample stage-2 trajectories from -> ``[N, T, 2]``.

    Anchors on a jittered grid (16 px at 256 px) are chained through the exact forward ``flow``
    ``[T-1, H, W, 2]``. With ``layers`` (int ``[T, H, W]``, which surface is on top of each
    pixel) a track is dropped once its point is covered by another surface: the flow there
    belongs to the occluder, and following it would glue the point to the wrong object (the
    exact-data counterpart of the Trajectory Sampler's forward-backward check). Tracks that
    leave the frame are dropped too. ``extra_tracks`` (e.g. visible object centres) are added.
    """
    from dragnuwa import trajectory as tj

    T1, H, W = flow.shape[:3]
    tracks, valid = tj.chain_tracks(flow, tj.anchor_grid(H, W, rng))
    if layers is not None and len(tracks):
        # The flow is read bilinearly from the four pixel centres around the point: all four must
        # show the point's own surface at every frame, else the motion read is a blend of two.
        t_idx = np.arange(T1 + 1)[None, :]
        x0 = np.floor(tracks[..., 0] - 0.5).astype(int)
        y0 = np.floor(tracks[..., 1] - 0.5).astype(int)
        own = layers[0][np.clip(np.floor(tracks[:, 0, 1]).astype(int), 0, H - 1),
                        np.clip(np.floor(tracks[:, 0, 0]).astype(int), 0, W - 1)][:, None]
        for dy in (0, 1):
            for dx in (0, 1):
                xs, ys = x0 + dx, y0 + dy
                inside = (xs >= 0) & (xs < W) & (ys >= 0) & (ys < H)
                surface = layers[t_idx, np.clip(ys, 0, H - 1), np.clip(xs, 0, W - 1)]
                valid &= (inside & (surface == own)).all(axis=1)
    cands = tracks[valid]
    if extra_tracks is not None and len(extra_tracks):
        cands = np.concatenate([cands, np.asarray(extra_tracks, cands.dtype).reshape(-1, T1 + 1, 2)])
    return cands


def make_maps(flow: np.ndarray, stage: int, rng: np.random.Generator, max_tracks: int,
              layers: np.ndarray | None = None, extra_tracks: np.ndarray | None = None,
              size: tuple[int, int] | None = None, return_tracks: bool = False):
    """Trajectory input of one clip -> float32 ``[T, 2, H, W]``.

    Stage 1: the dense flow (``trajectory.flow_to_maps``). Stage 2: ``sample_tracks`` from
    :func:`candidate_tracks`, spread by ``tracks_to_maps``. ``size=(W, H)`` rescales the
    result (flow values and track coordinates scale with their axis). ``return_tracks`` also
    returns the picked tracks ``[N, T, 2]`` at that size (none in stage 1), as ``(maps, tracks)``.
    """
    from dragnuwa import trajectory as tj

    T1, H, W = flow.shape[:3]
    out_w, out_h = size if size is not None else (W, H)
    sx, sy = out_w / W, out_h / H
    picked = np.zeros((0, T1 + 1, 2))
    if stage == 1:
        if (out_w, out_h) != (W, H):
            interp = cv2.INTER_AREA if out_w < W else cv2.INTER_LINEAR
            flow = np.stack([cv2.resize(f, (out_w, out_h), interpolation=interp) for f in flow]) * [sx, sy]
        maps = tj.flow_to_maps(flow.astype(np.float32))
    else:
        cands = candidate_tracks(flow, rng, layers, extra_tracks)
        maps, picked = maps_from_candidates(cands, T1 + 1, (W, H), (out_w, out_h), rng, max_tracks, True)
    return (maps, picked) if return_tracks else maps


def maps_from_candidates(cands: np.ndarray, frames: int, in_size: tuple[int, int], size: tuple[int, int],
                         rng: np.random.Generator, max_tracks: int, return_tracks: bool = False):
    """Stage 2's trajectory input from candidate tracks ``[M, T, 2]`` in an ``in_size=(W, H)`` frame:
    1..``max_tracks`` drawn by motion (``sample_tracks``, paper Sec. 3.2), scaled to ``size=(W, H)``,
    Gaussian-spread (``tracks_to_maps``) -> float32 ``[T, 2, H, W]`` (and the picked tracks)."""
    from dragnuwa import trajectory as tj

    (W, H), (out_w, out_h) = in_size, size
    picked = np.zeros((0, frames, 2))
    if len(cands):
        picked = tj.sample_tracks(cands, max_tracks, rng) * [out_w / W, out_h / H]
    # No candidates (everything occluded or left the frame): no trajectory at all, zero maps.
    maps = (tj.tracks_to_maps(picked, out_h, out_w) if len(picked)
            else np.zeros((frames, 2, out_h, out_w), np.float32))
    return (maps, picked) if return_tracks else maps


def animation_of(frames: np.ndarray, maps: np.ndarray, tracks: np.ndarray, stage: int) -> np.ndarray:
    """The motion-init animation of a training clip ``uint8 [T, H, W, 3]``: its first frame moved
    along its trajectory input as the pipeline would at inference (``motion_init.motion_animation``:
    the dense maps carried in stage 1, discs along the tracks in stage 2). Where nothing moves the
    clip itself is returned, so the training loop's start mixes in nothing (docs/training.md)."""
    from dragnuwa.motion_init import motion_animation

    anim = motion_animation(frames[0], tracks, maps if stage == 1 else None)
    return frames if anim is None else anim


def changed_mask(layers: np.ndarray) -> np.ndarray:
    """Where each frame shows another surface than frame 0 -> float32 ``[T, H, W]`` (1 = changed).

    That is where moved objects arrive and the background they uncover, the two places the
    model's ghost lives (it redraws an object where frame 0 had it); ``changed_weight`` in a
    training config weights the loss there (docs/training.md)."""
    return (layers != layers[:1]).astype(np.float32)


def _check_stage(stage: int) -> None:
    if stage not in (1, 2):
        raise UserError(f"stage must be 1 or 2, got {stage}")


class SyntheticClips(Dataset):
    """Procedural clips rendered on the fly: index i is the scene with seed ``first_seed + i``."""

    def __init__(self, first_seed: int = 0, count: int = 1_000_000, frames: int = 14,
                 size: tuple[int, int] = (64, 64), stage: int = 1, max_tracks: int = 8,
                 animation: bool = False, changed: bool = False):
        _check_stage(stage)
        if frames < 2:
            raise UserError(f"frames must be at least 2, got {frames}")
        self.first_seed, self.count, self.frames, self.size = first_seed, count, frames, tuple(size)
        self.stage, self.max_tracks = stage, max_tracks
        self.animation = animation  # also return "animation" (:func:`animation_of`)
        self.changed = changed  # also return "changed" (:func:`changed_mask`)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        from dragnuwa.data.synthetic import render_clip
        from dragnuwa.video import to_tensor

        if not -self.count <= i < self.count:
            raise IndexError(i)
        seed = self.first_seed + int(i) % self.count
        clip = render_clip(seed, self.frames, self.size)
        centres = clip.tracks[clip.visible.all(axis=1)]
        maps, tracks = make_maps(clip.flow, self.stage, np.random.default_rng([seed, 2]), self.max_tracks,
                                 clip.layers, centres, return_tracks=True)
        item = {"video": to_tensor(clip.frames), "text": clip.caption, "maps": torch.from_numpy(maps)}
        if self.animation:
            item["animation"] = to_tensor(animation_of(clip.frames, maps, tracks, self.stage))
        if self.changed:
            item["changed"] = torch.from_numpy(changed_mask(clip.layers))
        return item


class ClipFolder(Dataset):
    """Clips written by `dragnuwa synth`: NAME.mp4 + NAME.flow.npz + NAME.txt (+ NAME.json,
    NAME.tracks.json for object centres). Frames and maps are stretched to ``size=(W, H)``."""

    def __init__(self, root: str | Path, frames: int = 14, size: tuple[int, int] = (64, 64), stage: int = 1,
                 max_tracks: int = 8):
        _check_stage(stage)
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(f"clip folder not found: {self.root}")
        self.videos = sorted(self.root.glob("*.mp4"))
        if not self.videos:
            raise UserError(f"no clips (*.mp4) in {self.root}")
        for v in self.videos:  # fail at start-up, not hours into training
            for need in (_companion(v, ".flow.npz"), _companion(v, ".txt")):
                if not need.is_file():
                    raise UserError(f"clip {v.name} has no {need.name} (expected `dragnuwa synth` output)")
        self.frames, self.size, self.stage, self.max_tracks = frames, tuple(size), stage, max_tracks

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict:
        return self.sample(i, epoch=0)

    def sample(self, i: int, epoch: int) -> dict:
        """Clip ``i`` as seen in pass ``epoch`` over the folder (the training loop's ``batch_at``).

        Epoch 0 takes the first ``frames`` frames; later epochs take a window at a start frame drawn
        per (clip, epoch), and stage 2 draws new tracks, so a folder smaller than the run gives the
        variety the Trajectory Sampler is meant to give (paper Sec. 3.2), still deterministic per index.
        ``"start"`` in the result is the window's first frame.
        """
        from dragnuwa.video import fit_image, read_video, to_tensor

        path = self.videos[i]
        T = self.frames
        rng = np.random.default_rng([i, 2] if epoch == 0 else [i, epoch, 2])
        data = np.load(_companion(path, ".flow.npz"))
        flow_all = data["flow"]
        start = 0 if epoch == 0 else int(rng.integers(0, max(1, len(flow_all) + 2 - T)))
        frames, _ = read_video(path, max_frames=start + T)
        frames = frames[start:]
        if len(frames) < T:
            raise UserError(f"{path} has {start + len(frames)} frames, need {start + T}")
        flow = flow_all[start:start + T - 1].astype(np.float32)
        layers = data["layers"][start:start + T] if "layers" in data.files else None
        H, W = frames.shape[1:3]
        if flow.shape[1:3] != (H, W) or len(flow) < T - 1:
            raise UserError(f"{_companion(path, '.flow.npz').name}: flow {flow.shape} does not match video "
                            f"{len(frames)}x{H}x{W}")
        centres = _visible_centres(path, start, T)
        maps = make_maps(flow, self.stage, rng, self.max_tracks, layers, centres, self.size)
        if (W, H) != self.size:
            frames = np.stack([fit_image(f, self.size, "stretch")[0] for f in frames])
        caption = _companion(path, ".txt").read_text().strip()
        return {"video": to_tensor(frames), "text": caption, "maps": torch.from_numpy(maps), "start": start}


def _companion(video: Path, suffix: str) -> Path:
    """NAME.mp4 -> NAME{suffix} (names may contain dots)."""
    return video.with_name(video.name[: -len(video.suffix)] + suffix)


def _visible_centres(video: Path, start: int, frames: int) -> np.ndarray | None:
    """Object-centre tracks of a synth clip that stay visible over frames ``start .. start+frames-1``."""
    tracks_path, meta_path = _companion(video, ".tracks.json"), _companion(video, ".json")
    if not (tracks_path.is_file() and meta_path.is_file()):
        return None
    tracks = json.loads(tracks_path.read_text())["tracks"]
    visible = json.loads(meta_path.read_text()).get("visible")
    if not tracks or visible is None or len(visible) != len(tracks):
        return None
    tracks = np.array(tracks, dtype=np.float64)  # [K, T, 2]: one point per frame in synth output
    keep = np.array(visible, dtype=bool)[:, start:start + frames].all(axis=1)
    return tracks[keep, start:start + frames]
