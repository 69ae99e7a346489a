"""Detail restoration (dragnuwa.detail) on videos with exact ground truth: a soft copy of a sliding
texture gets the first frame's detail back where the texture has moved to, not where it was."""

import cv2
import numpy as np
import pytest

from dragnuwa.detail import restore_detail
from dragnuwa.metrics import psnr

STEP = 2  # px per frame, to the left


def _blur(video: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in video])


def _sliding(frames: int = 8) -> np.ndarray:
    """A fine random texture sliding STEP px left per frame, 64x64 (exact motion)."""
    tex = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (100, 120, 3)).astype(np.uint8), (0, 0), 0.7)
    return np.stack([tex[10:74, 10 + STEP * t:74 + STEP * t] for t in range(frames)])


def _seen_psnr(video: np.ndarray, true: np.ndarray) -> float:
    """Mean PSNR of frames 1.. over the part frame 0 showed (what enters on the right has no detail to restore)."""
    return float(np.mean([psnr(video[t][:, :64 - STEP * t - 4], true[t][:, :64 - STEP * t - 4])
                          for t in range(1, len(video))]))


def test_detail_follows_the_motion():
    true = _sliding()
    soft = _blur(true, 1.5)  # what a soft decoder gives: the motion right, the fine texture gone
    restored = restore_detail(soft, true[0])
    # The same detail added in place, without following the motion, is worse than none.
    f32 = np.float32
    in_place = np.clip(_blur(soft.astype(f32), 0.7) + true[0].astype(f32) - cv2.GaussianBlur(true[0].astype(f32), (0, 0), 0.7),
                       0, 255).round().astype(np.uint8)
    # Measured: soft 21.0 dB, restored 23.1 dB, in place 19.5 dB.
    assert _seen_psnr(restored, true) > _seen_psnr(soft, true) + 1.5
    assert _seen_psnr(in_place, true) < _seen_psnr(soft, true)
    assert restored.dtype == np.uint8 and restored.shape == true.shape


def test_a_still_video_gets_the_image_detail_back():
    true = np.repeat(_sliding(1), 6, axis=0)
    soft = _blur(true, 1.0)
    # Measured: 23.1 -> 27.8 dB.
    assert psnr(restore_detail(soft, true[0]), true) > psnr(soft, true) + 4


def test_the_image_must_match_the_frames():
    with pytest.raises(ValueError, match="image must be"):
        restore_detail(np.zeros((3, 32, 32, 3), np.uint8), np.zeros((16, 16, 3), np.uint8))
