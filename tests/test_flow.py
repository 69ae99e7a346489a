import numpy as np
import pytest

from dragnuwa.data.synthetic import render_clip
from dragnuwa.errors import UserError
from dragnuwa.flow import available_flows, estimate_flow, register_flow, video_flow


def _epe(method, seeds=range(4), size=128):
    errs = []
    for seed in seeds:
        clip = render_clip(seed, 3, (size, size))
        for t in range(2):
            est = estimate_flow(clip.frames[t], clip.frames[t + 1], method)
            err = np.linalg.norm(est - clip.flow[t], axis=-1)
            errs.append(np.median(err))  # median: occlusion boundaries have no correct answer
    return float(np.mean(errs))


@pytest.mark.parametrize("method, limit", [("dis", 0.3), ("dis_fast", 0.5), ("farneback", 0.5),
                                           ("dis_pyramid", 0.3)])
def test_endpoint_error_against_exact_flow(method, limit):
    assert _epe(method) < limit


def test_large_motion_coarse_to_fine():
    # A 16 px/frame shift at 256 px: DIS alone is unreliable here; the pyramid recovers it.
    rng = np.random.default_rng(0)
    import cv2

    img = cv2.GaussianBlur((rng.random((256, 256, 3)) * 255).astype(np.uint8), (0, 0), 3)
    nxt = np.roll(img, 16, axis=1)
    est = estimate_flow(img, nxt, "dis_pyramid")[32:-32, 32:-32]
    assert np.median(np.abs(est[..., 0] - 16)) < 0.5


def test_registry_and_unknown_backend():
    assert {"dis", "farneback"} <= set(available_flows())
    with pytest.raises(UserError, match="unknown flow backend 'raft'.*dis"):
        estimate_flow(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), "raft")

    @register_flow("zero_for_test")
    def zero(prev, nxt):
        return np.zeros(prev.shape[:2] + (2,), np.float32)

    assert video_flow(np.zeros((3, 8, 8, 3), np.uint8), "zero_for_test").shape == (2, 8, 8, 2)
