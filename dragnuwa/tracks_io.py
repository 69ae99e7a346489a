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


# Wider or taller than any real image (and than a video codec can store): a typo or a unit mix-up,
# which would squash every point onto one edge.
MAX_SIDE = 65_536

# The one rule for "no drags", shared by the CLI and the app: tracks that are given must hold at least
# one track; giving none at all (no --tracks, an empty tracks box in the app) lets the text and
# image alone set the motion.
NO_TRACKS = ("tracks JSON has no tracks: 'tracks' must be a non-empty list (a one-point track holds its "
             "point still); give no tracks at all to let the text and image alone set the motion")


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{what}: expected a number, got {json.dumps(value)[:40]}")
    try:
        number = float(value)
    except OverflowError:  # an integer past any float
        number = math.inf
    if not math.isfinite(number):
        raise UserError(f"{what}: {str(value)[:40]} is not a finite number")
    return number


def parse_tracks(obj, clamp: bool = False) -> TrackSet:
    """Validate a parsed tracks JSON object. Errors name the track and point (0-based).

    With ``clamp=True`` points outside the image are clamped onto its border instead of rejected.
    """
    if not isinstance(obj, dict):
        kind = {list: "a list", str: "a string", type(None): "null", bool: "true/false"}.get(type(obj), "a number")
        raise UserError(f"tracks JSON must be an object with keys width, height, tracks, got {kind}")
    for key in ("width", "height", "tracks"):
        if key not in obj:
            raise UserError(f"tracks JSON is missing the key {key!r}")
    width, height = _number(obj["width"], "width"), _number(obj["height"], "height")
    if width <= 0 or height <= 0 or width != int(width) or height != int(height):
        raise UserError(f"width and height must be positive integers, got {obj['width']} x {obj['height']}")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise UserError(f"width and height must be at most {MAX_SIDE:,} (the image's size in pixels), "
                        f"got {width:g} x {height:g}")
    raw = obj["tracks"]
    if not isinstance(raw, list):
        raise UserError(f"'tracks' must be a list of tracks, got {json.dumps(raw)[:40]}")
    if not raw:
        raise UserError(NO_TRACKS)
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


def parse_tracks_text(text: str, source: str = "tracks", clamp: bool = False) -> TrackSet:
    """Parse and validate tracks JSON text (``source`` names it in errors: a file, the app's box).
    Malformed JSON, nesting too deep for the parser and numbers too long to read are one line."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{source} is not valid JSON: {e}") from None
    except RecursionError:
        raise UserError(f"{source} is not tracks JSON: it is nested too deeply to read") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise UserError(f"{source} is not valid JSON: {str(e).splitlines()[0][:80]}") from None
    return parse_tracks(obj, clamp=clamp)


def request_tracks(value) -> TrackSet | None:
    """A request's tracks by the one rule the CLI and the app share: nothing given (None, or a blank
    tracks box in the app) -> None, and the motion follows the text and image alone; anything given
    (JSON text, a parsed object, a ``TrackSet``) must be valid tracks holding at least one track
    (``NO_TRACKS``, as ``generate --tracks`` refuses an empty list)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, TrackSet):
        return value
    if isinstance(value, str):
        return parse_tracks_text(value, "tracks text")
    return parse_tracks(value)


def load_tracks(path: str | Path, clamp: bool = False) -> TrackSet:
    """Read and validate a tracks JSON file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"tracks file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"tracks file {path} is not valid JSON: it is not UTF-8 text") from None
    except OSError as e:
        raise UserError(f"cannot read tracks file {path}: {e.strerror or e.__class__.__name__}") from None
    if not text.strip():
        raise UserError(f"tracks file {path} is empty")
    return parse_tracks_text(text, f"tracks file {path}", clamp=clamp)


def save_tracks(path: str | Path, tracks: TrackSet) -> Path:
    """Write a tracks JSON file atomically."""
    atomic_write_text(path, json.dumps(tracks.to_json()) + "\n")
    return Path(path)
