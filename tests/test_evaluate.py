"""Evaluation metrics on synthetic videos with known motion, and the report end to end."""

import json

import cv2
import numpy as np
import pytest

from dragnuwa.data.synthetic import COLORS, render_clip
from dragnuwa.errors import UserError
from dragnuwa.evaluate import (HELD_OUT_SEED, evaluate_case, ratio_interval, rescore_report, run_evaluation,
                               scene_cases)
from dragnuwa.metrics import (TrackerConfig, first_frame_psnr, psnr, static_trajectory_error, text_accuracy,
                              text_check, track_points, trajectory_error)


def _texture(size=96, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((size, size, 3)) * 255).astype(np.uint8), (0, 0), 1.5)


def test_lucas_kanade_follows_a_known_translation():
    base = _texture()
    frames = np.stack([np.roll(base, (t, 2 * t), axis=(0, 1)) for t in range(6)])  # 2 px right, 1 px down
    starts = np.array([[30.5, 40.5], [60.0, 50.0]])
    followed = track_points(frames, starts)
    expected = starts[:, None] + np.arange(6)[None, :, None] * np.array([2.0, 1.0])
    assert np.abs(followed - expected).max() < 0.05  # measured 0.002 px


def test_lucas_kanade_follows_a_subpixel_translation_in_grey_too():
    base = _texture(seed=1)
    shift = np.array([0.7, -0.4])  # px per frame
    frames = np.stack([cv2.warpAffine(base, np.float32([[1, 0, shift[0] * t], [0, 1, shift[1] * t]]), (96, 96),
                                      flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT) for t in range(8)])
    starts = np.array([[30.5, 40.5], [60.0, 50.0], [48.2, 20.7]])
    expected = starts[:, None] + np.arange(8)[None, :, None] * shift
    for cfg in (TrackerConfig(), TrackerConfig(color=False, cluster=0)):
        assert np.abs(track_points(frames, starts, cfg) - expected).max() < 0.5


def test_a_lost_point_stays_put():
    # Frame 1 is unrelated noise: no point passes the forward-backward check, so none moves.
    frames = np.stack([_texture(seed=2), _texture(seed=3), _texture(seed=3)])
    starts = np.array([[20.0, 20.0], [70.0, 60.0]])
    followed = track_points(frames, starts)
    assert np.abs(followed - starts[:, None]).max() < 1e-6


def test_tracker_on_rendered_clips_beats_static_by_far():
    """Object centres of held-out clips, 64 px: the tracker on the true video is ~6% of static."""
    cases = scene_cases(10, HELD_OUT_SEED, 14, (64, 64))
    errs, statics = [], []
    for case in cases:
        clip = render_clip(case.seed, 14, (64, 64))
        errs.append(trajectory_error(case.tracks, track_points(clip.frames, case.tracks[:, 0])))
        statics.append(static_trajectory_error(case.tracks))
    assert np.mean(errs) / np.mean(statics) < 0.12, (np.mean(errs), np.mean(statics))


def test_error_of_perfect_and_static_videos():
    clip = render_clip(1_000_003, 10, (64, 64))
    req = clip.tracks[clip.visible.all(1)]
    assert trajectory_error(req, req) == 0
    # A static video tracked: every point stays at its start, so the error is the mean
    # displacement from the start, computed here by hand.
    static = np.repeat(clip.frames[:1], 10, axis=0)
    followed = track_points(static, req[:, 0])
    assert np.abs(followed - req[:, :1]).max() < 1e-4
    by_hand = np.mean([np.hypot(*(req[k, t] - req[k, 0])) for k in range(len(req)) for t in range(1, 10)])
    assert by_hand > 1.0
    assert np.isclose(trajectory_error(req, followed), by_hand, rtol=1e-5)
    assert np.isclose(static_trajectory_error(req), by_hand, rtol=1e-6)
    with pytest.raises(ValueError):
        trajectory_error(req, req[:, :5])


def test_first_frame_psnr():
    img = _texture(32)
    video = np.repeat(img[None], 3, axis=0)
    assert first_frame_psnr(video, img) == 100.0
    noisy = video.copy()
    noisy[0] = np.clip(img.astype(int) + 10, 0, 255)  # a uniform +10 error -> 20 log10(255/10)
    brightest = (img.astype(int) + 10 > 255).mean()
    assert brightest < 0.01 and abs(first_frame_psnr(noisy, img) - 20 * np.log10(25.5)) < 0.2


def test_text_check_finds_the_named_colour():
    hits, wrong = [], []
    for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + 20):
        clip = render_clip(seed, 4, (64, 64))
        for k, obj in enumerate(clip.objects):
            if clip.visible[k, -1]:
                hits.append(text_check(clip.frames[-1], clip.tracks[k, -1], obj["color"]))
                other = next(c for c in COLORS if c != obj["color"])
                wrong.append(text_check(clip.frames[-1], clip.tracks[k, -1], other))
    assert len(hits) > 30 and np.mean(hits) > 0.95 and np.mean(wrong) < 0.05, (np.mean(hits), np.mean(wrong))
    clip = render_clip(HELD_OUT_SEED, 4, (64, 64))
    vis = clip.visible[:, -1]
    colors = [o["color"] for o, v in zip(clip.objects, vis) if v]
    assert text_accuracy(clip.frames, clip.tracks[vis], colors) == 1.0
    with pytest.raises(ValueError, match="unknown colour"):
        text_check(clip.frames[-1], clip.tracks[0, -1], "mauve")


def _truth_generator(frames, size):
    """Returns the true clip for the full condition and the first frame repeated without trajectory."""
    by_seed = {}

    def generate(image, tracks, text, drop):
        for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + 60):
            clip = by_seed.setdefault(seed, render_clip(seed, frames, size))
            if np.array_equal(clip.frames[0], image):
                return np.repeat(image[None], frames, axis=0) if "traj" in drop else clip.frames
        raise AssertionError("unknown clip")

    return generate


def test_run_evaluation_with_ground_truth_and_static_generators(tmp_path):
    still = []  # an "autoencoder" that keeps only the first frame: its yardstick is the static video's

    def first_frame_only(video, tracks):
        assert tracks.shape[1] == len(video)  # the case's tracks, for a track decoder
        still.append(video.shape)
        return np.repeat(video[:1], len(video), axis=0)

    redrawn = []  # a "redraw" that returns the true clip it is given: its yardstick is the true clip's

    def redraw(video, image, tracks, text):
        assert np.array_equal(video[0], image) and tracks.shape[1] == len(video)
        redrawn.append(video.shape)
        return video

    report = run_evaluation(out_dir=tmp_path, count=6, generate_fn=_truth_generator(14, (64, 64)),
                            reconstruct_fn=first_frame_only, redraw_fn=redraw)
    data = json.loads((tmp_path / "report.json").read_text())
    summary = data["summary"]
    assert summary["clips"] == 6 and len(data["clips"]) == 6
    assert summary["full"]["ratio_to_static"] < 0.12  # measured 0.05
    lo, hi = summary["full"]["ratio_ci95"]
    assert lo < summary["full"]["ratio_to_static"] < hi and hi < 0.2
    # The yardsticks: the true clip is what this generator returns; the first-frame "autoencoder" is static.
    yard = summary["yardsticks"]
    assert yard["true_clip"]["trajectory_error_px"] == summary["full"]["trajectory_error_px"]
    # Called for the true clip and for the cut-and-paste animation (motion init's start) of each.
    assert abs(yard["autoencoder"]["ratio_to_static"] - 1.0) < 1e-4 and still == [(14, 64, 64, 3)] * 12
    assert abs(yard["animation"]["ratio_to_static"] - 1.0) < 1e-4
    assert yard["redrawn"]["trajectory_error_px"] == yard["true_clip"]["trajectory_error_px"]
    assert yard["redrawn"]["psnr_db"] == 100.0 and redrawn == [(14, 64, 64, 3)] * 6
    cases = scene_cases(6, HELD_OUT_SEED, 14, (64, 64))
    stills = [psnr(np.repeat(c.frames[:1], 14, axis=0), c.frames) for c in cases]
    assert abs(yard["autoencoder"]["psnr_db"] - np.mean(stills)) < 1e-9
    assert abs(summary["no_trajectory"]["ratio_to_static"] - 1.0) < 1e-4
    assert summary["no_trajectory_vs_full"] > 8
    assert summary["full"]["first_frame_psnr_db"] == 100.0 and summary["full"]["text_accuracy"] == 1.0
    # Paired per-clip tests: the static video is worse on all 6 clips (exact two-sided p = 2/64);
    # this generator ignores text and image, so those ablations change nothing.
    abl = summary["ablations"]
    assert (abl["no_trajectory"]["worse"], abl["no_trajectory"]["better"]) == (6, 0)
    assert abs(abl["no_trajectory"]["p_value"] - 2 / 64) < 1e-9
    assert abl["no_text"] == {"check": "text_ok", "worse": 0, "better": 0, "p_value": 1.0}
    md = report.read_text()
    assert "no_trajectory: trajectory_error worse on 6 clips, better on 0 (p = 0.031)" in md
    assert report.name == "report.md" and md.count("\n| ") == 9 and "| no_image |" in md
    assert "no_motion_init" not in md and "sampled from pure noise" in md
    assert "| *the true clip through the model's autoencoder (the best its latents can do)* | " in md
    assert "| *the true clip noised to the motion-init sigma and redrawn by the model" in md
    assert "redrawn from the true clip, it shows what the model's redraw" in md
    png = (tmp_path / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not [p for p in tmp_path.iterdir() if p.name not in {"report.json", "report.md", "report.png"}]


def test_report_says_where_each_row_started_sampling(tmp_path):
    """Motion init needs the image and the trajectory, so the report's note must say which rows
    started from the animation and which from pure noise, with or without the ablations."""
    def static(image, tracks, text, drop):
        return np.repeat(image[None], tracks.shape[1], axis=0)

    kw = dict(count=1, generate_fn=static, size=(48, 40), frames=6)
    md = run_evaluation(out_dir=tmp_path / "noise", ablations=False, **kw).read_text()
    assert "- sampled from pure noise (no motion init), as in the paper." in md
    assert "decoded from latents." in md and "redrawn" not in md  # no redraw, no word of it
    md = run_evaluation(out_dir=tmp_path / "full", ablations=False, motion_init=0.7, **kw).read_text()
    assert "- sampled from sigma 0.7, starting from the image cut and pasted along the tracks (motion init; a disc " \
           "around each track)." in md and "pure noise" not in md
    md = run_evaluation(out_dir=tmp_path / "all", motion_init=1.0, **kw).read_text()
    assert ("sampled from sigma 1, starting from the image cut and pasted along the tracks (motion init; a disc "
            "around each track); no_trajectory and no_image from pure noise, as motion init needs the image and "
            "the trajectory; no_motion_init is the model alone") in md and "| no_motion_init |" in md


def test_the_cut_and_paste_animation_yardstick_follows_the_tracks():
    rows = [evaluate_case(None, c, {}, lambda video, tracks: video) for c in scene_cases(8, HELD_OUT_SEED, 14, (64, 64))]
    ratio = np.mean([r["animation_error"] for r in rows]) / np.mean([r["static_error"] for r in rows])
    assert ratio < 0.15, ratio  # measured 0.03: the discs move with the tracks by construction


def test_brush_evaluation_paints_the_tracked_objects(tmp_path):
    cases = scene_cases(8, HELD_OUT_SEED, 14, (64, 64))
    for c in cases:  # every track starts on its object's pixels, and only tracked objects are painted
        cols, rows = np.floor(c.tracks[:, 0]).astype(int).T
        assert c.objects[rows, cols].all() and 0 < c.objects.mean() < 0.5
    rows = [evaluate_case(None, c, {}, lambda video, tracks: video, motion_region="brush") for c in cases]
    ratio = np.mean([r["animation_error"] for r in rows]) / np.mean([r["static_error"] for r in rows])
    assert ratio < 0.15, ratio  # the painted objects move with the tracks by construction

    given = []

    def static(image, tracks, text, drop, brush=None):
        given.append(brush)
        return np.repeat(image[None], tracks.shape[1], axis=0)

    md = run_evaluation(out_dir=tmp_path, count=2, generate_fn=static, ablations=False, motion_init=1.0,
                        motion_region="brush").read_text()
    assert [g.shape for g in given] == [(64, 64)] * 2 and np.array_equal(given[0], cases[0].objects)
    assert "each tracked object's true pixels, also given as a motion brush" in md


def test_run_evaluation_without_ablations_and_bad_input(tmp_path):
    calls = []

    def static(image, tracks, text, drop):
        calls.append(drop)
        return np.repeat(image[None], tracks.shape[1], axis=0)

    run_evaluation(out_dir=tmp_path / "r", count=2, ablations=False, generate_fn=static, size=(48, 40), frames=6)
    summary = json.loads((tmp_path / "r" / "report.json").read_text())["summary"]
    assert calls == [(), ()] and set(summary) == {"clips", "static_error_px", "full", "yardsticks"}
    assert abs(summary["full"]["ratio_to_static"] - 1.0) < 1e-4
    with pytest.raises(UserError, match="count"):
        run_evaluation(out_dir=tmp_path / "x", count=0, generate_fn=static)
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="existing file"):
        run_evaluation(out_dir=tmp_path / "file", count=1, generate_fn=static)
    with pytest.raises(UserError, match=r"clip \d+ \(full\).*expected uint8"):
        run_evaluation(out_dir=tmp_path / "y", count=1, generate_fn=lambda i, t, x, d: i[None], frames=6)
    assert not (tmp_path / "y").exists()


def test_ratio_interval_covers_the_true_ratio_and_narrows_with_more_clips():
    rng = np.random.default_rng(0)

    def clips(n):
        static = rng.uniform(2, 12, n)
        return 0.3 * static * rng.uniform(0.5, 1.5, n), static  # the true ratio is 0.3

    lo, hi = ratio_interval(*clips(100))
    assert lo < 0.3 < hi and 0.02 < hi - lo < 0.12, (lo, hi)  # measured 0.299-0.337
    lo4, hi4 = ratio_interval(*clips(400))
    assert lo4 < 0.3 < hi4 and (hi4 - lo4) < 0.6 * (hi - lo)  # 4x the clips: about half as wide
    assert ratio_interval([1.0, 2.0], [2.0, 4.0]) == [0.5, 0.5]  # every resample has the same ratio


def test_rescore_rewrites_a_report_from_its_clips(tmp_path):
    def halfway(image, tracks, text, drop):  # the first frame shifted halfway along the first track
        d = (tracks[0, -1] - tracks[0, 0]) / 2
        shift = np.float32([[1, 0, d[0]], [0, 1, d[1]]])
        moved = cv2.warpAffine(image, shift, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
        return np.stack([image] + [moved] * (tracks.shape[1] - 1))

    run_evaluation(out_dir=tmp_path, count=3, ablations=False, generate_fn=halfway, size=(48, 40), frames=6)
    path = tmp_path / "report.json"
    before = json.loads(path.read_text())
    stale = dict(before, summary={"clips": 3})
    path.write_text(json.dumps(stale))
    (tmp_path / "report.md").write_text("stale")
    rescore_report(tmp_path)
    after = json.loads(path.read_text())
    assert after == before  # the same summary again, from the stored clips alone
    assert "| full | " in (tmp_path / "report.md").read_text()
    path.write_text("{}")
    with pytest.raises(UserError, match="not an evaluation report"):
        rescore_report(tmp_path)
    assert path.read_text() == "{}"
