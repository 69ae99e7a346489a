"""The tracks JSON format (DESIGN.md): load, validate, save.

```json
{"width": 256, "height": 256, "tracks": [[[x, y], [x, y], ...], [[x, y]], ...]}
```
Points are pixel coordinates of a ``width x height`` image (x right, y down, origin top-left).
A track from a video has one point per frame; a drawn track any number of clicks (resampled
to T frames by PCHIP); a one-point track is an anchor ("keep this still").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dragnuwa.errors import UserError, atomic_write_text


@dataclass
class TrackSet:
    """Tracks of a ``width x height`` image; each track is ``[n_i, 2]`` float (x, y)."""

    width: int
    height: int
    tracks: list[np.ndarray] = field(default_factory=list)
    # Read off a video by the Trajectory Sampler, not drawn: with a motion brush, those that start
    # outside the painting are left out rather than refused (they were not the user's choice).
    sampled: bool = False

    def rescaled(self, width: int, height: int) -> "TrackSet":
        """The same tracks in the pixel coordinates of a ``width x height`` image."""
        sx, sy = width / self.width, height / self.height
        return TrackSet(width, height, [t * np.array([sx, sy]) for t in self.tracks], self.sampled)

    def resampled(self, frames: int) -> np.ndarray:
        """All tracks resampled to ``frames`` points: ``[N, T, 2]`` (PCHIP; anchors repeated)."""
        from dragnuwa.trajectory import resample_track

        if not self.tracks:
            return np.zeros((0, frames, 2), dtype=np.float32)
        return np.stack([resample_track(t, frames) for t in self.tracks]).astype(np.float32)

    def to_json(self) -> dict:
        return {"width": int(self.width), "height": int(self.height),
                "tracks": [[[round(float(x), 3), round(float(y), 3)] for x, y in t] for t in self.tracks]}

    @classmethod
    def from_array(cls, tracks: np.ndarray, width: int, height: int, sampled: bool = False) -> "TrackSet":
        """From ``[N, T, 2]`` tracks (one point per frame)."""
        return cls(int(width), int(height), [np.asarray(t, dtype=np.float64) for t in tracks], sampled)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{what}: expected a number, got {json.dumps(value)[:40]}")
    if not math.isfinite(value):
        raise UserError(f"{what}: {value} is not a finite number")
    return float(value)


def parse_tracks(obj, clamp: bool = False) -> TrackSet:
    """Validate a parsed tracks JSON object. Errors name the track and point (0-based).

    With ``clamp=True`` points outside the image are clamped onto its border instead of rejected.
    """
    if not isinstance(obj, dict):
        raise UserError("tracks JSON must be an object with keys width, height, tracks")
    for key in ("width", "height", "tracks"):
        if key not in obj:
            raise UserError(f"tracks JSON is missing the key {key!r}")
    width, height = _number(obj["width"], "width"), _number(obj["height"], "height")
    if width <= 0 or height <= 0 or width != int(width) or height != int(height):
        raise UserError(f"width and height must be positive integers, got {obj['width']} x {obj['height']}")
    raw = obj["tracks"]
    if not isinstance(raw, list) or not raw:
        raise UserError("tracks JSON has no tracks: 'tracks' must be a non-empty list")
    tracks = []
    for i, track in enumerate(raw):
        if not isinstance(track, list) or not track:
            raise UserError(f"track {i}: must be a non-empty list of [x, y] points")
        pts = []
        for j, p in enumerate(track):
            if not isinstance(p, (list, tuple)) or len(p) != 2:
                raise UserError(f"track {i}, point {j}: expected [x, y], got {json.dumps(p)[:40]}")
            x = _number(p[0], f"track {i}, point {j}, x")
            y = _number(p[1], f"track {i}, point {j}, y")
            if not clamp:
                if not 0 <= x <= width:
                    raise UserError(f"track {i}, point {j}: x={x:g} is outside the image width {width:g}")
                if not 0 <= y <= height:
                    raise UserError(f"track {i}, point {j}: y={y:g} is outside the image height {height:g}")
            pts.append((min(max(x, 0.0), width), min(max(y, 0.0), height)))
        tracks.append(np.array(pts, dtype=np.float64))
    return TrackSet(int(width), int(height), tracks)


def load_tracks(path: str | Path, clamp: bool = False) -> TrackSet:
    """Read and validate a tracks JSON file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"tracks file not found: {path}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"tracks file {path} is not valid JSON: {e}") from None
    return parse_tracks(obj, clamp=clamp)


def save_tracks(path: str | Path, tracks: TrackSet) -> Path:
    """Write a tracks JSON file atomically."""
    atomic_write_text(path, json.dumps(tracks.to_json()) + "\n")
    return Path(path)
