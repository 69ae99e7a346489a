"""The official DragNUWA 1.5 trajectory -> flow recipe (dragnuwa.svd.flow)."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import convolve2d

from dragnuwa.errors import UserError
from dragnuwa.svd.flow import (gaussian_kernel_2d, gaussian_spread, gaussian_spread_2d,
                               official_flow, official_kernel_matches, official_tracks,
                               splat_tracks)

DRAGS = Path(__file__).resolve().parents[2] / "shared" / "nuwa15" / "drags.json"


def _drags():
    if not DRAGS.exists():
        pytest.skip(f"fixture {DRAGS} not present")
    return json.loads(DRAGS.read_text())


def test_kernel_is_official_unnormalised_gaussian():
    k = gaussian_kernel_2d()
    assert k.shape == (199, 199)
    assert k[99, 99] == 1.0
    assert k.sum() == pytest.approx(2513.27, abs=0.01)
    i, j = 40, 170
    assert k[i, j] == pytest.approx(np.exp(-((i - 99) ** 2 + (j - 99) ** 2) / 800))
    assert official_kernel_matches(np.broadcast_to(k, (2, 1, 199, 199)))
    assert not official_kernel_matches(np.broadcast_to(k / k.sum(), (2, 1, 199, 199)))


def test_separable_equals_2d_and_is_faster():
    rng = np.random.default_rng(0)
    maps = np.zeros((2, 2, 48, 96), dtype=np.float32)
    idx = rng.integers(0, [2, 2, 48, 96], size=(12, 4))
    maps[tuple(idx.T)] = rng.normal(0, 5, len(idx))
    maps[1, 0, 47, 95] = 3.0   # corner: the zero padding matters
    t0 = time.perf_counter()
    sep = gaussian_spread(maps)
    t_sep = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = gaussian_spread_2d(maps)
    t_full = time.perf_counter() - t0
    assert np.abs(sep - full).max() < 1e-5 * max(1.0, np.abs(full).max())
    # scipy's 2-D convolution (float64) agrees too, on one map.
    ref = convolve2d(maps[1, 0].astype(np.float64), gaussian_kernel_2d(), mode="same")
    assert np.abs(sep[1, 0] - ref).max() < 1e-5
    print(f"separable {t_sep * 1e3:.2f} ms, 2-D {t_full * 1e3:.1f} ms, x{t_full / t_sep:.0f}")
    assert t_full > 5 * t_sep


def test_dense_random_map_separable_equals_2d():
    # Every row non-zero: the separable pass is exact for dense maps as well.
    maps = np.random.default_rng(1).normal(size=(1, 32, 48)).astype(np.float32)
    assert np.abs(gaussian_spread(maps) - gaussian_spread_2d(maps)).max() < 1e-4 * 2513


def test_peak_at_each_splat_point_equals_displacement():
    tracks = [[[100, 80], [200, 200]], [[480, 260], [400, 240]]]
    flow = official_flow(tracks)
    paths = official_tracks(tracks)
    for path in paths:
        for i in range(13):
            x, y = int(path[i, 0]), int(path[i, 1])
            d = path[i + 1] - path[i]
            # The two tracks are > 300 px apart, so each blob is its own peak (other tail < 1e-40).
            np.testing.assert_allclose(flow[i + 1, :, y, x], d, atol=1e-5)
            mag = np.hypot(flow[i + 1, 0], flow[i + 1, 1])
            near = mag[max(0, y - 50):y + 50, max(0, x - 50):x + 50]
            assert near.max() == pytest.approx(np.hypot(*d), rel=1e-5)


def test_single_click_is_official_quirk_or_still_anchor():
    flow = official_flow([[[300, 60]]])
    assert flow.shape == (14, 2, 320, 576)
    # [p, p + (1, 1)] through PCHIP: 13 equal steps of 1/13 px in x and y.
    np.testing.assert_allclose(flow[1:, :, 60, 300], np.full((13, 2), 1 / 13), atol=1e-6)
    # The path drifts: step 12 starts at 300 + 12/13 -> still pixel 300 (int truncation).
    assert float(np.abs(flow).max()) == pytest.approx(1 / 13, rel=1e-5)
    still = official_flow([[[300, 60]]], anchors="still")
    assert not np.any(still)
    with pytest.raises(UserError, match="anchors"):
        official_flow([[[300, 60]]], anchors="frozen")


def test_first_frame_is_zero_and_frame_count_follows():
    flow = official_flow([[[10, 10], [100, 50]]], width=128, height=64, frames=6)
    assert flow.shape == (6, 2, 64, 128) and flow.dtype == np.float32
    assert not np.any(flow[0])
    assert np.all(np.abs(flow[1:]).max(axis=(1, 2, 3)) > 1)


@pytest.mark.parametrize("case", ["one_drag_4pts", "two_drags_one_anchor", "drag_to_border"])
def test_drags_json_cases(case):
    data = _drags()
    tracks = next(c["tracks"] for c in data["cases"] if c["name"] == case)
    flow = official_flow(tracks, data["width"], data["height"], data["num_frames"])
    assert flow.shape == (14, 2, 320, 576) and np.all(np.isfinite(flow))
    paths = official_tracks(tracks)
    for k, (track, path) in enumerate(zip(tracks, paths)):
        start = np.asarray(track[0], float)
        end = np.asarray(track[-1], float) if len(track) > 1 else start + 1.0
        np.testing.assert_allclose(path[0], start)
        np.testing.assert_allclose(path[-1], end, atol=1e-9)
        # The splatted displacements (the map values at each step's start pixel, before the blur)
        # add up to the track's end minus start, where no other track was written later on top.
        maps = splat_tracks([path], 576, 320)
        total = sum(maps[i, :, int(path[i, 1]), int(path[i, 0])] for i in range(13))
        np.testing.assert_allclose(total, end - start, atol=1e-4)
        # The spread flow's peaks match the steps (tracks far apart in every case here).
        if case != "two_drags_one_anchor" or k != 1:
            i = 6
            x, y = int(path[i, 0]), int(path[i, 1])
            np.testing.assert_allclose(flow[i + 1, :, y, x], path[i + 1] - path[i], atol=2e-3)


def test_border_point_and_scaling():
    # (575, 3) is on the last column; the demo's own rescale maps 576x320 clicks to 128x64.
    flow = official_flow([[[575, 3]], [[0, 319], [575, 0]]])
    assert np.all(np.isfinite(flow))
    small = official_flow([[[400, 160], [575, 3]]], width=128, height=64, source_size=(576, 320))
    assert small.shape == (14, 2, 64, 128)
    path = official_tracks([[[400, 160], [575, 3]]], 128, 64, source_size=(576, 320))[0]
    np.testing.assert_allclose(path[0], [int(400 * 128 / 576), int(160 * 64 / 320)])
    np.testing.assert_allclose(path[-1], [int(575 * 128 / 576), int(3 * 64 / 320)])


@pytest.mark.parametrize("tracks, msg", [
    ([[[576, 3]]], "outside"), ([[[-1, 3]]], "outside"), ([[[1, float("nan")]]], "finite"),
    ([], "no tracks"), ([[]], "track 0"), ([[[1, 2, 3]]], "track 0"),
])
def test_bad_tracks_are_user_errors(tracks, msg):
    with pytest.raises(UserError, match=msg):
        official_flow(tracks)


def test_size_not_multiple_of_64_is_user_error():
    with pytest.raises(UserError, match="multiple of 64"):
        official_flow([[[1, 1]]], width=100, height=64)
