import json

import numpy as np
import pytest
from scipy.stats import chisquare

from dragnuwa import trajectory as tj
from dragnuwa.data.synthetic import render_clip


def test_pchip_passes_through_clicks_and_anchor_is_still():
    clicks = np.array([[10.0, 10.0], [40.0, 25.0], [60.0, 60.0]])
    tr = tj.resample_track(clicks, 9)  # clicks land on frames 0, 4, 8
    assert tr.shape == (9, 2)
    assert np.allclose(tr[[0, 4, 8]], clicks)
    # PCHIP is monotone between monotone clicks: no overshoot.
    assert np.all(np.diff(tr[:, 0]) >= 0) and np.all(np.diff(tr[:, 1]) >= 0)
    anchor = tj.resample_track(np.array([[5.0, 7.0]]), 6)
    assert np.allclose(anchor, [5.0, 7.0])
    maps = tj.tracks_to_maps(anchor[None], 32, 32)
    assert np.abs(maps).max() == 0  # an anchor asks for zero motion


def test_maps_round_trip_and_own_pixel_exact():
    rng = np.random.default_rng(1)
    starts = np.array([[20.3, 20.7], [90.1, 30.2], [50.5, 100.9]])
    steps = rng.normal(0, 1.5, (3, 7, 2))
    tracks = np.concatenate([starts[:, None], starts[:, None] + np.cumsum(steps, axis=1)], axis=1)
    maps = tj.tracks_to_maps(tracks, 128, 128)
    assert maps.shape == (8, 2, 128, 128) and maps.dtype == np.float32
    assert np.abs(maps[0]).max() == 0
    # The spread keeps each track's displacement at its own pixel.
    for i in range(3):
        col, row = np.floor(tracks[i, 2]).astype(int)
        assert np.allclose(maps[3, :, row, col], tracks[i, 3] - tracks[i, 2], atol=1e-5)
    back = tj.maps_to_tracks(maps, tracks[:, 0])
    assert np.abs(back - tracks).max() < 1e-4
    # ...and spreads it: 1 sigma away the value is ~exp(-1/2) of the centre.
    sigma = tj.default_sigma(128, 128)
    col, row = np.floor(tracks[0, 0]).astype(int)
    ratio = maps[1, 0, row, col + round(sigma)] / maps[1, 0, row, col]
    assert abs(ratio - np.exp(-0.5 * (round(sigma) / sigma) ** 2)) < 0.03


def test_default_sigma_scales_with_resolution():
    assert tj.default_sigma(256, 256) == 10
    assert tj.default_sigma(64, 64) == 2.5


def test_sampling_probability_follows_motion_intensity():
    # Four candidates with path lengths 1 : 2 : 3 : 4 -> first pick should follow 0.1 : 0.2 : 0.3 : 0.4.
    lengths = np.array([1.0, 2.0, 3.0, 4.0])
    tracks = np.zeros((4, 3, 2))
    tracks[:, 1, 0] = lengths
    tracks[:, 2, 0] = lengths
    rng = np.random.default_rng(0)
    picks = np.zeros(4)
    for _ in range(4000):
        chosen = tj.sample_tracks(tracks, max_tracks=1, rng=rng)
        picks[int(np.argmax(lengths == chosen[0, 1, 0]))] += 1
    expected = 4000 * lengths / lengths.sum()
    assert chisquare(picks, expected).pvalue > 0.01
    # Without replacement, and n within 1..max.
    for _ in range(50):
        s = tj.sample_tracks(tracks, max_tracks=3, rng=rng)
        assert 1 <= len(s) <= 3 and len({float(t[1, 0]) for t in s}) == len(s)


def test_flow_to_maps_layout():
    flows = np.random.default_rng(0).normal(size=(3, 8, 10, 2)).astype(np.float32)
    maps = tj.flow_to_maps(flows)
    assert maps.shape == (4, 2, 8, 10) and np.abs(maps[0]).max() == 0
    assert np.array_equal(maps[2, 0], flows[1, ..., 0]) and np.array_equal(maps[2, 1], flows[1, ..., 1])


def _drift(seed, size=256, T=16, method="dis"):
    clip = render_clip(seed, T, (size, size))
    sampler = tj.TrajectorySampler(flow=method)
    from dragnuwa.flow import video_flow

    fwd = video_flow(clip.frames, method)
    # Follow the object centres through the estimated flow; compare with the exact tracks.
    ok = clip.visible.all(axis=1)
    est, valid = tj.chain_tracks(fwd, clip.tracks[ok, 0])
    speed = np.linalg.norm(np.diff(clip.tracks[ok], axis=1), axis=-1).max(axis=1)
    keep = valid & (speed < 8)
    return np.linalg.norm(est[keep, -1] - clip.tracks[ok][keep, -1], axis=-1), sampler


def test_track_drift_after_16_frames_under_one_pixel():
    drifts = np.concatenate([_drift(seed)[0] for seed in range(6)])
    assert len(drifts) >= 4
    assert drifts.mean() < 1.0, drifts


def test_sampler_returns_moving_tracks_inside_the_frame():
    clip = render_clip(2, 8, (128, 128))
    tracks = tj.TrajectorySampler(max_tracks=5).sample(clip.frames, np.random.default_rng(0))
    assert 1 <= len(tracks) <= 5 and tracks.shape[1:] == (8, 2)
    assert (tracks >= 0).all() and (tracks < 128).all()
    assert (tj.motion_intensity(tracks) > 0.5).all()


def test_sampler_needs_two_frames():
    from dragnuwa.errors import UserError

    with pytest.raises(UserError, match="at least 2 frames"):
        tj.TrajectorySampler().sample(np.zeros((1, 16, 16, 3), np.uint8), np.random.default_rng(0))


def test_too_few_tracks_point_to_a_smoother_flow(tmp_path, monkeypatch, capsys):
    """Flat video where the consistency check rejects the flow: the error / warning names the fix."""
    from dragnuwa import trajectory
    from dragnuwa.errors import UserError
    from dragnuwa.video import write_video

    video = tmp_path / "flat.mp4"
    write_video(video, np.full((4, 32, 32, 3), 128, np.uint8), 8)
    two = np.stack([np.full((4, 2), 5.0), np.full((4, 2), 9.0)]).astype(np.float32)
    monkeypatch.setattr(trajectory.TrajectorySampler, "candidates", lambda self, *a, **k: two)
    out = trajectory.run_tracks_command(str(video), str(tmp_path / "t.json"), max_tracks=4)
    assert out.is_file() and "only 2 trackable points for 4 tracks" in capsys.readouterr().err
    # Enough candidates: no warning, and all max_tracks are drawn (the paper's 1..N is for training).
    eight = np.concatenate([two] * 4)
    monkeypatch.setattr(trajectory.TrajectorySampler, "candidates", lambda self, *a, **k: eight)
    for seed in range(3):
        trajectory.run_tracks_command(str(video), str(tmp_path / "t.json"), max_tracks=4, seed=seed)
        assert len(json.loads((tmp_path / "t.json").read_text())["tracks"]) == 4
    assert "trackable points" not in capsys.readouterr().err
    monkeypatch.setattr(trajectory.TrajectorySampler, "candidates", lambda self, *a, **k: two[:0])
    with pytest.raises(UserError, match="--flow farneback"):
        trajectory.run_tracks_command(str(video), str(tmp_path / "t2.json"), max_tracks=4)
    assert not (tmp_path / "t2.json").exists()
