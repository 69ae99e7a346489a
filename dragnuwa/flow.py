"""Optical flow backends behind one signature, with a registry.

``estimate_flow(prev, nxt, method)`` returns the forward flow ``float32 [H, W, 2]`` (dx, dy)
from ``prev`` to ``nxt`` (both ``uint8 [H, W, 3]`` RGB), sampled at pixel centres.

Backends: ``dis`` (OpenCV DIS, MEDIUM preset; default), ``dis_fast`` / ``dis_ultrafast`` (DIS FAST /
ULTRAFAST presets), ``farneback``
(slower, recovers ~20 px/frame where DIS breaks at 15-20 px at 256 px), and ``dis_pyramid``
(coarse-to-fine for large motion: Farneback on a half-size pair gives the initial flow, DIS refines).

Plugging in a learned estimator (RAFT, Unimatch) when its package and weights are installed::

    from dragnuwa.flow import register_flow

    @register_flow("raft")
    def raft_flow(prev, nxt):          # uint8 [H, W, 3] RGB each
        ...                            # run the network
        return flow                    # float32 [H, W, 2], forward, in pixels

Then ``dragnuwa tracks VIDEO --flow raft`` and ``TrajectorySampler(flow="raft")`` use it.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from dragnuwa.errors import UserError

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
_BACKENDS: dict[str, FlowFn] = {}


def register_flow(name: str) -> Callable[[FlowFn], FlowFn]:
    """Decorator adding a flow backend ``fn(prev, nxt) -> [H, W, 2]`` under ``name``."""
    def deco(fn: FlowFn) -> FlowFn:
        _BACKENDS[name] = fn
        return fn
    return deco


def available_flows() -> list[str]:
    return sorted(_BACKENDS)


def get_flow(name: str) -> FlowFn:
    """The backend registered as ``name``; an unknown name raises ``UserError`` listing them."""
    if name not in _BACKENDS:
        raise UserError(f"unknown flow backend {name!r}; available: {', '.join(available_flows())}")
    return _BACKENDS[name]


def _grey(img: np.ndarray) -> np.ndarray:
    # OpenCV 5's DIS asserts on non-contiguous input.
    return np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img)


# OpenCV's DIS refuses smaller frames, with a C++ traceback.
DIS_MIN_SIDE = 12


def _dis(preset: int) -> FlowFn:
    def fn(prev: np.ndarray, nxt: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        h, w = prev.shape[:2]
        if min(h, w) < DIS_MIN_SIDE:
            raise UserError(f"DIS optical flow needs frames at least {DIS_MIN_SIDE} px on each side, got {w}x{h} "
                            f"(give a larger video or --size, or --flow farneback)")
        dis = cv2.DISOpticalFlow_create(preset)
        if init is not None:
            dis.setUseSpatialPropagation(True)
            return dis.calc(_grey(prev), _grey(nxt), np.ascontiguousarray(init, dtype=np.float32))
        return dis.calc(_grey(prev), _grey(nxt), None)
    return fn


_dis_medium = register_flow("dis")(_dis(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM))
register_flow("dis_fast")(_dis(cv2.DISOPTICAL_FLOW_PRESET_FAST))
register_flow("dis_ultrafast")(_dis(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST))


@register_flow("farneback")
def farneback_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    return cv2.calcOpticalFlowFarneback(_grey(prev), _grey(nxt), None, pyr_scale=0.5, levels=5, winsize=15,
                                        iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


@register_flow("dis_pyramid")
def dis_pyramid_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Coarse-to-fine for large motion: half-size Farneback as DIS's initial flow."""
    h, w = prev.shape[:2]
    small = farneback_flow(cv2.resize(prev, (w // 2, h // 2), interpolation=cv2.INTER_AREA),
                           cv2.resize(nxt, (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    init = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) * 2.0
    return _dis_medium(prev, nxt, init)


def estimate_flow(prev: np.ndarray, nxt: np.ndarray, method: str = "dis") -> np.ndarray:
    """Forward optical flow ``float32 [H, W, 2]`` from ``prev`` to ``nxt``."""
    if prev.shape != nxt.shape:
        raise UserError(f"frames differ in size: {prev.shape} vs {nxt.shape}")
    return np.asarray(get_flow(method)(prev, nxt), dtype=np.float32)


def video_flow(frames: np.ndarray, method: str = "dis", progress: bool = False) -> np.ndarray:
    """Flow between consecutive frames of ``uint8 [T, H, W, 3]`` -> ``float32 [T-1, H, W, 2]``."""
    fn = get_flow(method)
    pairs = range(len(frames) - 1)
    it = tqdm(pairs, desc=f"optical flow ({method})", unit="pair", leave=False) if progress else pairs
    return np.stack([np.asarray(fn(frames[t], frames[t + 1]), dtype=np.float32) for t in it])
