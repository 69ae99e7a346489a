"""Shared test set-up: offline hub, few threads, the `slow` marker."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    # CI skips tests marked slow; each one's code is also covered by a faster test.
    if os.environ.get("CI") or os.environ.get("SKIP_SLOW"):
        skip = pytest.mark.skip(reason="slow test; skipped in CI (a faster test covers the same code)")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)


# Sliding texture: a video with exact ground-truth motion for every pixel.
SLIDE_SIZE, SLIDE_FRAMES, SLIDE_STEP = (160, 96), 6, (3.0, 1.0)


@pytest.fixture
def sliding_video(tmp_path):
    """A 160x96 mp4 of a smooth random texture sliding 3 px right and 1 px down per frame, 6 frames."""
    import cv2
    import numpy as np

    from dragnuwa.video import write_video

    texture = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (140, 220, 3)).astype(np.uint8), (0, 0), 2)
    frames = np.stack([texture[20 - t:116 - t, 30 - 3 * t:190 - 3 * t] for t in range(SLIDE_FRAMES)])
    return write_video(tmp_path / "slide.mp4", frames)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps one AcceleratorState per process and refuses an Accelerator with another
    mixed precision after it: each test's training run starts from none, as a real process does."""
    yield
    import sys

    if "accelerate.state" in sys.modules:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads; on a shared 2-core machine extra threads only wait
    (a tiny SVD forward took 1.3-4.8 s with two threads, 0.2-0.3 s with one)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
