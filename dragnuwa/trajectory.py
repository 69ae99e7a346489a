"""Tracks <-> displacement maps, the Gaussian spread, and the Trajectory Sampler (paper Sec. 3.2).

Displacement maps are float32 ``[T, 2, H, W]``: map t holds the motion (dx, dy) of each tracked
point from frame t-1 to frame t, placed at the point's position in frame t-1; map 0 is zero.
The same ``tracks_to_maps`` serves sampled tracks (stage 2) and user-drawn tracks
(PCHIP-resampled clicks); dense flow (stage 1) goes out in the same layout via ``flow_to_maps``.

Pixel convention: pixel (i, j) covers [j, j+1) x [i, i+1); a point (x, y) lies in pixel
(floor(y), floor(x)); flow fields are sampled at pixel centres (x + 0.5, y + 0.5).

Per clip, for data preparation (`dragnuwa prepare`): ``grid_tracks(frames, rng)`` takes ``uint8
[T, H, W, 3]`` frames to candidate tracks: a ``tracking.Tracks`` with ``tracks [N, T, 2]`` and ``valid
[N, T]`` (``.whole()``: valid in every frame); ``TrajectorySampler().candidates(frames, rng)`` returns
just the whole ones ``[M, T, 2]``, and ``.choose(cands, rng)`` draws 1..N of them by motion.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import map_coordinates

from dragnuwa.errors import UserError

# Paper Sec. 3.2: Gaussian filter kernel 99, sigma 10 at 256 px; anchors every 16 px at 256 px.
PAPER_SIGMA, PAPER_GRID, PAPER_RES = 10.0, 16, 256


def resample_track(points: np.ndarray, frames: int) -> np.ndarray:
    """Resample ``[n, 2]`` clicks to ``[frames, 2]`` by PCHIP on evenly spaced times.

    PCHIP (monotone cubic) passes through every click without overshoot. A one-point track is
    an anchor: the point repeated, so its displacement is zero in every frame.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == frames:
        return pts.copy()
    if len(pts) == 1:
        return np.repeat(pts, frames, axis=0)
    t_in = np.linspace(0.0, 1.0, len(pts))
    t_out = np.linspace(0.0, 1.0, frames)
    return PchipInterpolator(t_in, pts, axis=0)(t_out)


def default_sigma(height: int, width: int) -> float:
    """Gaussian spread sigma scaled from the paper's 10 px at 256 px (released code: 20 at 576 px)."""
    return PAPER_SIGMA * max(height, width) / PAPER_RES


def _kernel_size(sigma: float) -> int:
    # Paper: kernel 99 for sigma 10, i.e. ~ +-5 sigma; keep it odd.
    return int(2 * np.ceil(4.9 * sigma) + 1)


def tracks_to_maps(tracks: np.ndarray, height: int, width: int, sigma: float | None = None) -> np.ndarray:
    """Tracks ``[N, T, 2]`` -> displacement maps ``float32 [T, 2, H, W]`` (paper Sec. 3.2).

    Each track's displacement t-1 -> t is splatted at its frame t-1 pixel and spread by a
    Gaussian normalised to 1 at the centre, so the track's own pixel holds its displacement
    exactly. Where the spreads of several tracks overlap by more than one full weight, the
    result is their weight-averaged displacement (it never exceeds any track's motion).
    Points outside the image are skipped.
    """
    tracks = np.asarray(tracks, dtype=np.float64)
    n, T = tracks.shape[:2] if tracks.size else (0, tracks.shape[1] if tracks.ndim == 3 else 1)
    sigma = default_sigma(height, width) if sigma is None else float(sigma)
    num = np.zeros((T, 2, height, width), dtype=np.float32)
    den = np.zeros((T, height, width), dtype=np.float32)
    # Stamping the peak-normalised kernel at each splat equals a zero-padded Gaussian blur of the
    # splats, at O(N k^2) instead of O(H W k) per frame: tracks are few, images large.
    kernel = _unit_kernel(sigma)
    r = kernel.shape[0] // 2
    for i in range(n):
        for t in range(1, T):
            x, y = tracks[i, t - 1]
            col, row = int(np.floor(x)), int(np.floor(y))
            if not (0 <= col < width and 0 <= row < height):
                continue
            y0, y1, x0, x1 = max(0, row - r), min(height, row + r + 1), max(0, col - r), min(width, col + r + 1)
            k = kernel[y0 - row + r:y1 - row + r, x0 - col + r:x1 - col + r]
            d = (tracks[i, t] - tracks[i, t - 1]).astype(np.float32)
            num[t, 0, y0:y1, x0:x1] += d[0] * k
            num[t, 1, y0:y1, x0:x1] += d[1] * k
            den[t, y0:y1, x0:x1] += k
    return (num / np.maximum(den, 1.0)[:, None]).astype(np.float32)


def _unit_kernel(sigma: float) -> np.ndarray:
    """2-D Gaussian (the paper's kernel: ~99 px at sigma 10) scaled to 1 at its centre."""
    if sigma <= 0:
        return np.ones((1, 1), np.float32)
    g = cv2.getGaussianKernel(_kernel_size(sigma), sigma).astype(np.float64)[:, 0]
    k = np.outer(g, g)
    return (k / k.max()).astype(np.float32)


def flow_to_maps(flows: np.ndarray) -> np.ndarray:
    """Dense forward flow ``[T-1, H, W, 2]`` (frame t -> t+1) -> maps ``[T, 2, H, W]`` (stage 1)."""
    flows = np.asarray(flows, dtype=np.float32)
    zero = np.zeros((1, 2) + flows.shape[1:3], dtype=np.float32)
    return np.concatenate([zero, flows.transpose(0, 3, 1, 2)], axis=0)


def maps_to_tracks(maps: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Follow points through displacement maps: ``[N, 2]`` starts -> ``[N, T, 2]`` tracks.

    Reads each map at the point's own pixel (the splat location of ``tracks_to_maps``), so
    ``maps_to_tracks(tracks_to_maps(tr), tr[:, 0])`` recovers well-separated tracks exactly.
    """
    maps = np.asarray(maps)
    T, _, H, W = maps.shape
    pts = np.asarray(starts, dtype=np.float64).reshape(-1, 2).copy()
    out = np.zeros((len(pts), T, 2))
    out[:, 0] = pts
    for t in range(1, T):
        cols = np.clip(np.floor(pts[:, 0]).astype(int), 0, W - 1)
        rows = np.clip(np.floor(pts[:, 1]).astype(int), 0, H - 1)
        pts = pts + maps[t, :, rows, cols].reshape(len(pts), 2)
        out[:, t] = pts
    return out


def lookup_flow(flow: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a flow field ``[H, W, 2]`` at ``[N, 2]`` points (pixel-centre convention)."""
    coords = [points[:, 1] - 0.5, points[:, 0] - 0.5]
    return np.stack([map_coordinates(flow[..., c], coords, order=1, mode="nearest") for c in (0, 1)], axis=1)


def motion_intensity(tracks: np.ndarray) -> np.ndarray:
    """Total path length of each track ``[N, T, 2]`` -> ``[N]`` (the paper's motion intensity)."""
    tracks = np.asarray(tracks, dtype=np.float64)
    return np.linalg.norm(np.diff(tracks, axis=1), axis=-1).sum(axis=1)


def sample_tracks(tracks: np.ndarray, max_tracks: int, rng: np.random.Generator, min_tracks: int = 1) -> np.ndarray:
    """Draw 1..N tracks without replacement, with probability proportional to motion intensity.

    n is uniform in ``[min_tracks, max_tracks]`` (capped at the candidates). A small floor on
    the weights keeps still tracks (anchors) possible but rare. Paper Sec. 3.2.
    """
    tracks = np.asarray(tracks)
    if len(tracks) == 0:
        return tracks
    hi = min(max_tracks, len(tracks))
    n = int(rng.integers(min(min_tracks, hi), hi + 1))
    w = motion_intensity(tracks) + 1e-3
    idx = rng.choice(len(tracks), size=n, replace=False, p=w / w.sum())
    return tracks[np.sort(idx)]


def anchor_grid(height: int, width: int, rng: np.random.Generator | None, interval: float | None = None,
                jitter: float = 0.5) -> np.ndarray:
    """Uniform anchor points every ``interval`` px (16 at 256 px, scaled) with random jitter -> ``[N, 2]``."""
    step = interval or max(2.0, PAPER_GRID * min(height, width) / PAPER_RES)
    xs = np.arange(step / 2, width, step)
    ys = np.arange(step / 2, height, step)
    pts = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    if rng is not None and jitter > 0:
        pts = pts + rng.uniform(-jitter * step / 2, jitter * step / 2, size=pts.shape)
    return np.clip(pts, 0, [width - 1e-3, height - 1e-3])


def chain_tracks(flows: np.ndarray, points: np.ndarray, backward: np.ndarray | None = None,
                 fb_tolerance: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Chain ``[N, 2]`` points through forward flows ``[T-1, H, W, 2]`` -> tracks ``[N, T, 2]``, valid ``[N]``.

    A track is invalid once it leaves the frame or, given backward flows, fails the
    forward-backward check |p + F(p) + B(p + F(p)) - p| > fb_tolerance + 0.05 |F(p)|.
    """
    T1, H, W = flows.shape[:3]
    pts = np.asarray(points, dtype=np.float64).copy()
    tracks = np.zeros((len(pts), T1 + 1, 2))
    tracks[:, 0] = pts
    valid = np.ones(len(pts), dtype=bool)
    for t in range(T1):
        fwd = lookup_flow(flows[t], pts)
        nxt = pts + fwd
        if backward is not None:
            err = np.linalg.norm(nxt + lookup_flow(backward[t], nxt) - pts, axis=1)
            valid &= err <= fb_tolerance + 0.05 * np.linalg.norm(fwd, axis=1)
        valid &= (nxt[:, 0] >= 0) & (nxt[:, 0] < W) & (nxt[:, 1] >= 0) & (nxt[:, 1] < H)
        pts = nxt
        tracks[:, t + 1] = pts
    return tracks, valid


def grid_tracks(frames: np.ndarray, rng: np.random.Generator | None = None, tracker: str = "dis",
                grid_interval: float | None = None, jitter: float = 0.5, flow: str = "dis",
                consistency_flow: str | None = "dis_fast", fb_tolerance: float = 1.0, max_gap: int = 8,
                flows: tuple[np.ndarray, np.ndarray] | None = None, progress: bool = False, carry: bool = True):
    """Candidate tracks of a clip (paper Sec. 3.2, steps 1-3): ``uint8 [T, H, W, 3]`` frames -> a jittered
    anchor grid (16 px at 256 px) tracked through the clip -> ``tracking.Tracks`` with ``tracks [N, T, 2]``,
    ``valid [N, T]`` (seen, or in a bridged gap) and ``observed [N, T]``; ``.whole()`` marks the tracks
    valid in every frame. ``tracker``: ``tracking.TRACKERS`` (``dis``, the default: the paper's chain
    through dense DIS flow, made to survive real footage). ``rng`` None: no jitter. ``carry``: grid
    points left with no whole track (flat, lost, or checked false) are carried by their neighbours'
    motion where it is one motion and they still look the same (``tracking.carry_by_neighbours``; not
    for ``dis_strict``, the chain as it was).
    """
    from dragnuwa.tracking import Tracks, carry_by_neighbours, textured_points, track_points

    if len(frames) < 2:
        raise UserError(f"the Trajectory Sampler needs at least 2 frames, got {len(frames)}")
    H, W = frames.shape[1:3]
    step = grid_interval or max(2.0, PAPER_GRID * min(H, W) / PAPER_RES)
    starts = anchor_grid(H, W, rng, step, jitter if rng is not None else 0.0)
    textured = np.ones(len(starts), bool)
    if tracker != "dis_strict":  # the paper's chain as it was, for comparison
        # Each anchor moves to the most trackable pixel of its cell (a flat patch has nothing to follow;
        # one point per cell keeps the grid uniform); those with no texture there get no track.
        starts, textured = textured_points(frames[0], starts, step / 2)
    full = Tracks(np.repeat(starts[:, None], len(frames), axis=1), np.zeros((len(starts), len(frames)), bool),
                  np.zeros((len(starts), len(frames)), bool))
    if textured.any():  # (a blank video: nothing to follow, no work)
        res = track_points(frames, starts[textured], tracker, max_gap=max_gap, fb_tolerance=fb_tolerance, flow=flow,
                           consistency_flow=consistency_flow, flows=flows, progress=progress)
        full.tracks[textured], full.valid[textured], full.observed[textured] = res.tracks, res.valid, res.observed
        if tracker != "dis_strict" and carry:
            full = carry_by_neighbours(frames, full, step, max_gap=max_gap)
    return full


@dataclass
class TrajectorySampler:
    """The paper's Trajectory Sampler (Sec. 3.2): video -> 1..N training trajectories.

    dense optical flow -> jittered uniform anchor grid -> tracks chained through the flow with a
    forward-backward check -> tracks drawn with probability proportional to motion intensity.
    On real footage a step that fails the check, or a point hidden for a while, starts a gap that is
    bridged (``dragnuwa.tracking``) instead of ending the track; ``tracker`` picks the chaining.
    """

    max_tracks: int = 8
    flow: str = "dis"
    # The forward-backward check only needs the backward flow to ~1 px: DIS FAST does that at a
    # quarter of the cost of MEDIUM (None: use ``flow`` for both directions).
    consistency_flow: str | None = "dis_fast"
    grid_interval: float | None = None  # default: 16 px at 256 px, scaled
    jitter: float = 0.5
    fb_tolerance: float = 1.0
    min_motion: float = 0.5  # px of path length below which a track counts as still
    # The paper draws 1..max_tracks tracks (training sees few and many); a user extracting a
    # video's motion to reuse it wants them all, so the user-facing tools set this to max_tracks.
    min_tracks: int = 1
    # How points are followed (dragnuwa.tracking.TRACKERS): the paper's dense chain by default;
    # "dis_strict" is the chain as the paper's short clips allow (a track ends at its first failed step).
    tracker: str = "dis"
    max_gap: int = 8  # frames a point may go unseen (inconsistent, hidden) and keep its track
    # Grid points with no whole track of their own carried by their neighbours' motion
    # (tracking.carry_by_neighbours), as the paper's dense flow carries flat regions.
    carry: bool = True

    def track(self, frames: np.ndarray, rng: np.random.Generator, progress: bool = False,
              flows: tuple[np.ndarray, np.ndarray] | None = None):
        """Every grid point's track through ``uint8 [T, H, W, 3]`` frames (``tracking.Tracks``)."""
        return grid_tracks(frames, rng, self.tracker, self.grid_interval, self.jitter, self.flow,
                           self.consistency_flow, self.fb_tolerance, self.max_gap, flows, progress, self.carry)

    def candidates(self, frames: np.ndarray, rng: np.random.Generator, progress: bool = False,
                   flows: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """All tracks ``[M, T, 2]`` valid in every frame of ``uint8 [T, H, W, 3]`` frames."""
        res = self.track(frames, rng, progress, flows)
        self.tracked = res  # kept for what the command says when few tracks last the window
        from dragnuwa.tracking import first_of_each

        cands = res.tracks[res.whole()]
        return cands[first_of_each(cands[:, 0])]  # one track twice: a draw of 8 could hold it twice

    def sample(self, frames: np.ndarray, rng: np.random.Generator, progress: bool = False) -> np.ndarray:
        """1..``max_tracks`` tracks ``[n, T, 2]``, preferring moving ones (motion-weighted)."""
        return self.choose(self.candidates(frames, rng, progress=progress), rng)

    def choose(self, cands: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """1..``max_tracks`` of the candidate tracks ``[M, T, 2]``, preferring moving ones."""
        moving = cands[motion_intensity(cands) >= self.min_motion]
        pool = moving if len(moving) else cands
        if len(pool) == 0:
            raise UserError("no trackable points: every track left the frame or failed the consistency check "
                            "(a blank or low-texture video? `--tracker dis --flow farneback` is smoother)")
        return sample_tracks(pool, self.max_tracks, rng, self.min_tracks)


# What `generate --tracks VIDEO`, the app and `dragnuwa tracks` read by default: 56 frames, the most the
# bundled model generates (pipeline.read_tracks reads 4 * cfg.frames).
DEFAULT_WINDOW = 56
# The tracker the user-facing tools use (benchmarks/bench_tracks_accuracy.py, docs/tracks.md).
USER_TRACKER = "lk"


def read_window(video: str | Path, start: int = 0, max_frames: int | None = DEFAULT_WINDOW,
                size: tuple[int, int] | None = None) -> tuple[np.ndarray, float, int, int | None]:
    """Frames ``start .. start + max_frames - 1`` of a video, up to its first shot cut (no point can be
    tracked across one) -> (frames, fps, first frame index, the cut's frame index or None)."""
    from dragnuwa import video as vio
    from dragnuwa.tracking import shot_cuts

    if start < 0:
        raise UserError(f"--start must be 0 or more, got {start}")
    frames, fps = vio.read_video(video, size=size, max_frames=None if max_frames is None else start + max_frames)
    if start >= len(frames):
        raise UserError(f"--start {start} is past the video's last frame ({len(frames) - 1}): {video}")
    frames = frames[start:]
    cuts = shot_cuts(frames)
    cut = None
    if cuts and cuts[0] >= 2:
        frames, cut = frames[:cuts[0]], start + cuts[0]
    return frames, fps, start, cut


def sample_video_tracks(frames: np.ndarray, max_tracks: int = 8, seed: int = 0, max_side: int | None = 512,
                        flow: str = "dis", progress: bool = False, tracker: str = USER_TRACKER,
                        start: int = 0, notes: list[str] | None = None) -> tuple[np.ndarray, int]:
    """The Trajectory Sampler on ``uint8 [T, H, W, 3]`` frames scaled so the longer side is at most
    ``max_side`` (flow costs by the pixel, and drags need no more; None or 0: as they are), tracks
    scaled back -> (``[n, T, 2]`` in the frames' pixels, how many tracks last all T frames).
    ``n`` is ``max_tracks`` (motion-weighted), or all candidates when there are fewer. When none lasts
    the window, the ``UserError`` names the longest window one does last (``start``: the index of
    the first frame in the video, for that message). ``notes``, given, gets a line when every track
    through the window is (nearly) still but a moving one lasts a shorter window."""
    H, W = frames.shape[1:3]
    s = min(1.0, max_side / max(H, W)) if max_side else 1.0
    w, h = max(1, round(W * s)), max(1, round(H * s))
    small = frames if (w, h) == (W, H) else np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
                                                      for f in frames])
    sampler = TrajectorySampler(max_tracks=max_tracks, flow=flow, min_tracks=max_tracks, tracker=tracker)
    rng = np.random.default_rng(seed)
    cands = sampler.candidates(small, rng, progress=progress)
    res = getattr(sampler, "tracked", None)
    if len(cands) == 0 and res is not None:
        first, length = res.longest_run()
        if length >= 2:
            last = start + len(frames) - 1
            raise UserError(f"no point keeps a track through all {len(frames)} frames ({start}-{last}); "
                            f"the longest track runs {length} frames from frame {start + first}: "
                            f"try --start {start + first} --max-frames {length}")
    tracks = sampler.choose(cands, rng)  # same draws as sampler.sample(small, rng)
    if notes is not None and res is not None:
        note = _moving_note(res, start, 1.0 / s)
        if note:
            notes.append(note)
    return tracks * np.array([W / w, H / h]), len(cands)


def _moving_note(res, start: int, scale: float, speed: float = 1.0) -> str | None:
    """When no track through the whole window moves ``speed`` px/frame (in the video's pixels) on average
    but some track does over a shorter run (its points leave the frame or get hidden: a passing car),
    the line that says so and how to keep it."""
    T = res.valid.shape[1]
    whole = res.whole()
    per_step = np.linalg.norm(np.diff(res.tracks, axis=1), axis=-1) * scale  # [N, T-1]
    if whole.any() and (per_step[whole].mean(axis=1) >= speed).any():
        return None
    best = (0, 0)
    for n in np.flatnonzero(res.valid.any(1)):
        padded = np.concatenate([[False], res.valid[n], [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(padded))
        for a, e in zip(edges[::2], edges[1::2]):
            if e - a >= 2 and e - a > best[1] and per_step[n, a:e - 1].mean() >= speed:
                best = (int(a), int(e - a))
    if best[1] == 0:
        return None
    return (f"every track through all {T} frames is nearly still; the longest moving one runs {best[1]} frames "
            f"from frame {start + best[0]}: --start {start + best[0]} --max-frames {best[1]} keeps it")


def run_tracks_command(video: str, out: str, max_tracks: int = 8, flow: str = "dis", viz: str | None = None,
                       seed: int = 0, size: tuple[int, int] | None = None, max_frames: int | None = DEFAULT_WINDOW,
                       max_side: int | None = 512, start: int = 0, tracker: str = USER_TRACKER) -> Path:
    """`dragnuwa tracks`: the Trajectory Sampler on a video -> tracks JSON (+ optional overlay video, .mp4 or .gif).
    The window is frames ``start .. start + max_frames - 1`` (None: to the end), cut short at a shot cut.
    ``size`` fits the frames to W x H first; ``max_side`` bounds the size flow runs at (the JSON keeps
    the frames' size)."""
    from dragnuwa import video as vio
    from dragnuwa.errors import check_output
    from dragnuwa.flow import get_flow
    from dragnuwa.tracking import TRACKERS
    from dragnuwa.tracks_io import TrackSet, save_tracks
    from dragnuwa.viz import draw_tracks

    get_flow(flow)  # unknown backend: fail before decoding
    if tracker not in TRACKERS:
        raise UserError(f"unknown tracker {tracker!r}; available: {', '.join(TRACKERS)}")
    if Path(out).suffix.lower() != ".json":  # e.g. a video name given to --out by mistake
        raise UserError(f"--out is the tracks JSON to write and must end in .json, got {out}")
    check_output(out, what="--out")
    if viz:
        vio.check_video_path(viz, "--viz")
    from dragnuwa.paths import check_run_paths

    check_run_paths({"VIDEO": video}, {"--out": out, "--viz": viz})
    frames, fps, first, cut = read_window(video, start, max_frames, size)
    last = first + len(frames) - 1
    if cut is not None:
        print(f"frames {first}-{last}: a new shot starts at frame {cut} (no point can be tracked across a cut); "
              f"--start {cut} tracks the next one", file=sys.stderr)
    notes: list[str] = []
    tracks, found = sample_video_tracks(frames, max_tracks, seed, max_side, flow, progress=True, tracker=tracker,
                                        start=first, notes=notes)
    for note in notes:
        print(note, file=sys.stderr)
    if found < max_tracks:
        print(f"only {found} trackable points for {max_tracks} tracks: {found} grid points keep a track through "
              f"all {len(frames)} frames ({first}-{last}); a shorter --max-frames keeps more (points leave the "
              "frame or stay hidden), and on low-texture video `--tracker dis --flow farneback` does", file=sys.stderr)
    H, W = frames.shape[1:3]
    save_tracks(out, TrackSet.from_array(tracks, W, H))
    if viz:
        vio.write_video(viz, draw_tracks(frames, tracks), fps)
    return Path(out)


def tracks_from_video(video: str | Path, max_tracks: int = 8, seed: int = 0, max_side: int = 512,
                      max_frames: int | None = DEFAULT_WINDOW, flow: str = "dis", tracker: str = USER_TRACKER):
    """A video's first frame as read (``uint8 [H, W, 3]``) and the Trajectory Sampler's tracks over it
    (a ``TrackSet`` in that frame's pixels): a video's own motion, to animate its first frame or another
    image with, read off its first ``max_frames`` frames (None: the default 56) or up to its first shot
    cut. Flow runs on frames scaled so the longer side is at most ``max_side`` (it costs by the pixel,
    and drags need no more), and the tracks are scaled back."""
    from dragnuwa.tracks_io import TrackSet

    frames, _, _, _ = read_window(video, 0, max_frames or DEFAULT_WINDOW)
    tracks, _ = sample_video_tracks(frames, max_tracks, seed, max_side, flow, tracker=tracker)
    H, W = frames.shape[1:3]
    return frames[0], TrackSet.from_array(tracks, W, H, sampled=True)
