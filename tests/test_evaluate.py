import json

import numpy as np

from dragnuwa.data.synthetic import render_clip
from dragnuwa.evaluate import run_evaluation, text_check, track_points, trajectory_error


def test_lucas_kanade_follows_a_known_translation():
    rng = np.random.default_rng(0)
    import cv2

    base = cv2.GaussianBlur((rng.random((96, 96, 3)) * 255).astype(np.uint8), (0, 0), 1.5)
    frames = np.stack([np.roll(base, (t, 2 * t), axis=(0, 1)) for t in range(6)])  # 2 px right, 1 px down
    starts = np.array([[30.5, 40.5], [60.0, 50.0]])
    followed = track_points(frames, starts)
    expected = starts[:, None] + np.arange(6)[None, :, None] * np.array([2.0, 1.0])
    assert np.abs(followed - expected).max() < 0.5


def test_error_of_perfect_and_static_videos():
    clip = render_clip(1_000_003, 10, (64, 64))
    keep = clip.visible.all(1)
    req = clip.tracks[keep]
    assert trajectory_error(req, req) == 0
    static = np.repeat(req[:, :1], 10, axis=1)
    assert np.isclose(trajectory_error(req, static), np.linalg.norm(req[:, 1:] - req[:, :1], axis=-1).mean())


def test_text_check_finds_the_named_colour():
    hits = []
    for seed in range(1_000_000, 1_000_010):
        clip = render_clip(seed, 4, (64, 64))
        for k, obj in enumerate(clip.objects):
            if clip.visible[k, -1] and obj["shape"] != "ring":
                hits.append(text_check(clip.frames[-1], clip.tracks[k, -1], obj["color"]))
    assert np.mean(hits) > 0.8


def test_run_evaluation_with_ground_truth_and_static_generators(tmp_path):
    by_seed = {}

    def truth(image, tracks, text, drop):
        # Look the clip up by its first frame; dropping the trajectory returns a static video.
        for seed in range(1_000_000, 1_000_060):
            clip = by_seed.setdefault(seed, render_clip(seed, 14, (64, 64)))
            if np.array_equal(clip.frames[0], image):
                return np.repeat(image[None], 14, axis=0) if "traj" in drop else clip.frames
        raise AssertionError("unknown clip")

    report = run_evaluation(out_dir=tmp_path, count=6, generate_fn=truth)
    summary = json.loads((tmp_path / "report.json").read_text())["summary"]
    assert summary["full"]["ratio_to_static"] < 0.3
    assert abs(summary["no_trajectory"]["ratio_to_static"] - 1.0) < 0.05
    assert summary["full"]["first_frame_psnr_db"] > 60
    assert report.read_text().count("|") > 20 and (tmp_path / "report.png").stat().st_size > 5000
