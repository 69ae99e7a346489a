"""The small interface between the one request path (``dragnuwa.pipeline``) and a model.

The front door reads, validates and fits a request once (image, tracks, text, options) into a
``Request`` at the backend's own size; a ``Backend`` turns it into frames (``Sample``); the front
door pastes the first frame, writes videos and overlays and describes what happened. A backend
declares its size, frame and step defaults, the conditions it reads and the options it supports;
an option it does not support is refused in one place (``Backend.refuse_unsupported``), with one
line naming the backend, so the CLI, the app and the evaluation never ask which backend they hold.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dragnuwa.errors import UserError

# Options beyond the shared request (image, tracks, text, frames, steps, seed, guidance, fit), and the
# values that mean "not asked for": a backend that does not support one refuses any other value.
OPTIONS: dict[str, tuple] = {
    "traj_guidance": (None,),  # the trajectory's own guidance scale (MultiCondGuider)
    "motion_init": (None, 0, 0.0),  # the sampler's start from the image moved along the tracks
    "motion_region": (None, "disc"),  # what motion init moves along each track
    "flow": (None,),  # a dense motion file instead of tracks
    "brush": (None,),  # a motion brush: painted regions moved along the tracks
    "detail": (None, False),  # the image's detail restored along the video's motion
    "start_video": (None,),  # a given video as the sampler's start (the evaluation's redraw)
    "sampler": (None,),  # the sampler's name
}
# The command-line spelling of each option, for the one-line refusals.
FLAGS = {"traj_guidance": "--traj-guidance", "motion_init": "--motion-init", "motion_region": "--motion-region",
         "flow": "--flow", "brush": "--brush", "detail": "detail restoration", "start_video": "start_video",
         "sampler": "sampler"}
CONDITIONS = ("text", "image", "traj")  # what a generation is conditioned on (paper Sec. 3)


@dataclass
class Request:
    """One generation's inputs, read, validated and fitted to the backend's size by the front door."""

    image: np.ndarray  # the fitted first image, uint8 [H, W, 3] at the backend's size
    text: str
    frames: int
    steps: int
    seed: int
    guidance: float
    # [N, T, 2]: each track PCHIP-resampled to ``frames`` and mapped like the image (anchors repeated)
    tracks: np.ndarray
    # each track's points as given (clicks or a video's samples), mapped like the image, not resampled:
    # for a backend with its own trajectory recipe (the official DragNUWA 1.5 resamples clicks itself)
    clicks: list[np.ndarray] = field(default_factory=list)
    # a dense motion input [T, 2, H, W] at the backend's size: a --flow file or a motion brush's field
    dense: np.ndarray | None = None
    # a motion brush's moving tracks [M, T, 2] and the painted region bool [H, W] each one moves
    brush: tuple[np.ndarray, list[np.ndarray]] | None = None
    drop: tuple[str, ...] = ()  # conditions replaced by the null condition (ablations)
    # the backend's own options (``OPTIONS``), with its defaults filled in
    options: dict = field(default_factory=dict)


@dataclass
class Sample:
    """What a backend made of a request."""

    frames: np.ndarray  # uint8 [T, H, W, 3], the video (detail restored where the backend does that)
    decoded: np.ndarray  # uint8 [T, H, W, 3], the frames as the model's decoder gave them
    maps: np.ndarray  # [T, 2, H, W], the motion condition the model read
    latents: object | None = None  # what was decoded (a tensor), where the backend has latents
    # what describe() and the report show: sampler_steps, motion_init, motion_region, detail, ...
    info: dict = field(default_factory=dict)


Progress = Callable[[int, int], None]


class Backend(ABC):
    """A model behind the request path. Subclasses set the class attributes and ``sample``."""

    name: str = "backend"  # "small", "svd": what refusals and reports call it
    width: int
    height: int
    frames: int  # default frame count
    max_frames: int
    fps: float
    steps: int  # default sampler steps
    guidance: float  # default guidance scale (the text's, or the only one)
    # the conditions it can replace by the null condition (``drop``, the evaluation's ablations);
    # without "text" it reads no prompt (``ignored``)
    conditions: frozenset[str] = frozenset(CONDITIONS)
    supports: frozenset[str] = frozenset()  # which of ``OPTIONS`` it takes
    defaults: dict = {}  # an option's value when not given
    track_decoder: bool = False  # the decoder reads the tracks (for the evaluation's report)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @classmethod
    def refuse_unsupported(cls, options: dict, drop: tuple[str, ...] = ()) -> None:
        """The one rule for options a backend lacks: asked for (any value but "not asked"), it is a
        ``UserError`` naming the backend; text without a text condition is only noted (``ignored``).
        A class method: the front door asks the class before loading the model (``backend_class``)."""
        for name, value in options.items():
            if name not in cls.supports and not _neutral(name, value):
                raise UserError(f"{FLAGS.get(name, name)} is not supported by the {cls.name} backend")
        unknown = set(drop) - set(CONDITIONS)
        if unknown:
            raise UserError(f"unknown condition to drop: {sorted(unknown)[0]!r} (text, image, traj)")
        lacking = [d for d in drop if d not in cls.conditions]
        if lacking:
            raise UserError(f"the {cls.name} backend has no {lacking[0]} condition to drop")

    def resolve(self, options: dict) -> dict:
        """The options this backend takes, each given value or its default."""
        return {name: self.defaults.get(name) if options.get(name) is None else options[name]
                for name in OPTIONS if name in self.supports}

    def ignored(self, text: str) -> list[str]:
        """Inputs this backend reads nothing from, one line each (shown as warnings, not errors)."""
        if text and "text" not in self.conditions:
            return [f"the {self.name} backend has no text input yet and ignores the prompt"]
        return []

    def reconstructor(self, detail: bool = False):
        """``video uint8 [T,H,W,3], tracks -> video`` through the model's autoencoder (the evaluation's
        yardstick of the best its latents can do), or None where the backend offers none."""
        return None

    @abstractmethod
    def sample(self, request: Request, progress: Progress | None = None, show_progress: bool = True) -> Sample:
        """Turn a fitted request into frames at ``(width, height)``."""


def _neutral(name: str, value) -> bool:
    """Whether ``value`` of option ``name`` means "not asked for" (None, off, its default)."""
    if value is None:
        return True
    if isinstance(value, (bool, int, float, str, np.number)):
        return any(v is not None and value == v for v in OPTIONS.get(name, ()))
    return False
