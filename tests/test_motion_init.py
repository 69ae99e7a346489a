"""Motion init: the cut-and-paste animation along the tracks, and sampling that starts from it (SDEdit)."""

import numpy as np
import pytest
import torch

from dragnuwa.diffusion.schedules import karras_sigmas, start_at
from dragnuwa.metrics import static_trajectory_error, track_points, trajectory_error
from dragnuwa.motion_init import (carry_along_flow, default_radius, disc_region, motion_animation, moving_tracks,
                                  object_region, paste_along_tracks)


def _scene():
    """A smooth background (a known truth under the object) with a textured disc of radius 4."""
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    background = np.stack([60 + xx, 80 + yy, 120 + 0 * xx], axis=-1)
    image = background.copy()
    inside = (xx + 0.5 - 20.5) ** 2 + (yy + 0.5 - 30.5) ** 2 <= 16
    image[inside] = np.stack([230 - 40 * (xx % 2), 40 + 0 * xx, 40 + 30 * (yy % 2)], axis=-1)[inside]
    return image.astype(np.uint8), background.astype(np.uint8), inside


def test_the_disc_moves_rigidly_and_the_place_it_leaves_is_filled():
    image, background, inside = _scene()
    T = 6
    path = np.linspace([20.5, 30.5], [30.5, 25.5], T)  # +10, -5 px, whole pixels at the last frame
    anchor = np.repeat([[50.5, 50.5]], T, axis=0)
    video = paste_along_tracks(image, np.stack([path, anchor]))
    assert video.shape == (T, 64, 64, 3) and video.dtype == np.uint8
    assert np.array_equal(video[0], image)
    # The object's pixels are at their moved place exactly (an integer shift).
    moved = np.roll(np.roll(inside, 10, axis=1), -5, axis=0)
    assert np.abs(video[-1][moved].astype(int) - image[inside].astype(int)).max() <= 1
    # Where it was (and is no longer) the inpainted background is close to the true one;
    # the object differs from it by ~100 levels.
    left = inside & ~moved
    assert np.abs(video[-1][left].astype(float) - background[left]).mean() < 12
    assert np.abs(image[left].astype(float) - background[left]).mean() > 80
    # The anchor's neighbourhood is untouched.
    assert np.array_equal(video[-1, 45:56, 45:56], image[45:56, 45:56])


def test_a_tracker_follows_the_animation_of_a_real_photo():
    import cv2
    from skimage import data

    image = cv2.resize(data.astronaut(), (64, 64), interpolation=cv2.INTER_AREA)
    T = 8
    tracks = np.stack([np.linspace([20.5, 24.5], [34.0, 30.0], T),  # sub-pixel steps
                       np.linspace([44.5, 44.5], [40.0, 52.0], T)])
    video = paste_along_tracks(image, tracks)
    err = trajectory_error(tracks, track_points(video, tracks[:, 0]))
    # Measured 0.10 px; a static video scores 6.7 px on these tracks.
    assert err < 0.5 < 0.1 * static_trajectory_error(tracks), err


def test_without_a_moving_track_the_animation_is_the_image():
    image, _, _ = _scene()
    still = np.repeat([[[10.5, 10.5]], [[40.2, 33.3]]], 5, axis=1)
    assert len(moving_tracks(still)) == 0 and len(moving_tracks(np.zeros((0, 5, 2)))) == 0
    for tracks in (still, np.zeros((0, 5, 2))):
        video = paste_along_tracks(image, tracks)
        assert video.shape == (5, 64, 64, 3) and (video == image).all()
    assert default_radius(64, 64) == pytest.approx(7.5) and default_radius(256, 128) == pytest.approx(30)
    with pytest.raises(ValueError, match=r"\[N, T, 2\]"):
        paste_along_tracks(image, np.zeros((5, 2)))


def test_the_object_region_finds_the_object_under_the_track():
    """GrabCut near each track's start against the renderer's exact layer of that object."""
    from dragnuwa.evaluate import scene_cases
    from dragnuwa.data.synthetic import render_clip

    r = default_radius(64, 64)
    ious = {"object": [], "disc": []}
    for case in scene_cases(12, 1_500_000, 14, (64, 64)):
        layers = render_clip(case.seed, 14, (64, 64)).layers[0]
        for start in case.tracks[:, 0]:
            truth = layers == layers[int(start[1]), int(start[0])]
            for name, region in (("object", object_region(case.image, start, r)), ("disc", disc_region(64, 64, start, r))):
                assert region[int(start[1]), int(start[0])]
                ious[name].append((region & truth).sum() / (region | truth).sum())
    # Measured IoU 0.83 (object) and 0.46 (disc) on 30 scenes.
    assert np.mean(ious["object"]) > 0.7 and np.mean(ious["disc"]) < 0.6, {k: np.mean(v) for k, v in ious.items()}


def test_an_object_larger_than_the_disc_moves_whole_and_leaves_no_halo():
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32) + 0.5
    image = np.empty((64, 64, 3), np.uint8)
    image[:] = (40, 90, 160)
    big = (xx - 24) ** 2 + (yy - 32) ** 2 <= 12 ** 2  # radius 12 px, the disc reaches 7.5
    image[big] = (230, 200, 40)
    tracks = np.stack([np.linspace([24.0, 32.0], [40.0, 32.0], 5)])  # 16 px right
    moved = (xx - 40) ** 2 + (yy - 32) ** 2 <= 11 ** 2  # inside the moved object, away from its edge
    behind = (xx - 24) ** 2 + (yy - 32) ** 2 <= 11 ** 2
    behind &= (xx - 40) ** 2 + (yy - 32) ** 2 > 13 ** 2  # where it was and no longer is
    by_object = paste_along_tracks(image, tracks, region="object")[-1].astype(int)
    by_disc = paste_along_tracks(image, tracks, region="disc")[-1].astype(int)
    yellow, blue = np.array([230, 200, 40]), np.array([40, 90, 160])
    assert np.abs(by_object[moved] - yellow).max() <= 2 and np.abs(by_object[behind] - blue).mean() < 10
    # The disc cuts the object: most of what it left behind still shows yellow.
    assert np.abs(by_disc[behind] - yellow).sum(-1).mean() < np.abs(by_disc[behind] - blue).sum(-1).mean()
    with pytest.raises(ValueError, match="region"):
        paste_along_tracks(image, tracks, region="square")


def test_the_command_line_offers_the_regions_the_animation_knows():
    from dragnuwa import cli, motion_init

    assert cli.MOTION_REGIONS == motion_init.MOTION_REGIONS


def test_the_object_region_falls_back_to_the_disc_where_grabcut_cannot_work():
    flat = np.full((64, 64, 3), 128, np.uint8)
    disc = disc_region(64, 64, (30.5, 30.5), 7.5)
    assert np.array_equal(object_region(flat, (30.5, 30.5), 7.5), disc)
    tiny = np.full((8, 8, 3), 90, np.uint8)  # the whole image within 2.5 radii: no background to model
    assert np.array_equal(object_region(tiny, (4.0, 4.0), 7.5), disc_region(8, 8, (4.0, 4.0), 7.5))


def test_carrying_the_first_frame_along_the_exact_flow_comes_close_to_the_true_clip():
    from dragnuwa.data.synthetic import render_clip
    from dragnuwa.metrics import psnr
    from dragnuwa.trajectory import flow_to_maps

    # A camera pan, a still camera and a zoom (seeds 1,000,000..2), with moving objects in each.
    for seed in (1_000_000, 1_000_001, 1_000_002):
        clip = render_clip(seed, 14, (64, 64))
        video = carry_along_flow(clip.frames[0], flow_to_maps(clip.flow))
        assert video.shape == clip.frames.shape and np.array_equal(video[0], clip.frames[0])
        static = np.repeat(clip.frames[:1], 14, axis=0)
        # Measured 27.2 / 30.3 / 27.1 dB against 21.7 / 26.1 / 20.7 dB for a static video.
        gain = psnr(video[1:], clip.frames[1:]) - psnr(static[1:], clip.frames[1:])
        assert gain > 3.0, (seed, gain)
    still = np.zeros((5, 2, 64, 64), np.float32)
    assert motion_animation(clip.frames[0], np.zeros((0, 5, 2)), still) is None
    assert motion_animation(clip.frames[0], np.zeros((0, 5, 2))) is None
    with pytest.raises(ValueError, match="maps must be"):
        carry_along_flow(clip.frames[0], still[:, :, :32])


def test_start_at_keeps_the_schedule_below_the_start():
    sigmas = karras_sigmas(10)
    s = start_at(sigmas, 1.0)
    assert s[0] == 1.0 and s[-1] == 0 and torch.equal(s[1:], sigmas[sigmas < 1.0])
    assert len(s) < len(sigmas) and bool((s[:-1] > s[1:]).all())
    assert torch.equal(start_at(sigmas, 80.0), sigmas) and torch.equal(start_at(sigmas, 500.0), sigmas)
    with pytest.raises(ValueError):
        start_at(sigmas, 0.0)


@pytest.fixture(scope="module")
def pipe():
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA
    from dragnuwa.pipeline import Pipeline

    torch.manual_seed(0)
    return Pipeline(DragNUWA(get_preset("tiny")))


def test_sampling_starts_from_the_noised_animation(pipe):
    """At a tiny start sigma the denoiser is nearly the identity (EDM's c_skip -> 1), so the video
    is the animation through the autoencoder: this fails if the start is not wired in."""
    from dragnuwa.evaluate import autoencoder_round_trip

    rng = np.random.default_rng(0)
    image = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    tracks = np.stack([np.linspace([10.5, 12.5], [18.5, 16.5], 4)])
    # detail=False: the decoded frames themselves, as the round trip gives them.
    res = pipe.generate(image, tracks.astype(np.float32), "", steps=8, show_progress=False, motion_init=0.003,
                        paste_first=False, detail=False)
    assert res.info["motion_init"] == 0.003 and res.info["sampler_steps"] == 2  # 0.003, then 0.002 -> 0
    expected = autoencoder_round_trip(pipe.model.autoencoder)(paste_along_tracks(image, tracks))
    assert np.abs(res.frames.astype(int) - expected.astype(int)).mean() < 1.0
    from_noise = pipe.generate(image, tracks.astype(np.float32), "", steps=8, show_progress=False, motion_init=0,
                               paste_first=False, detail=False)
    assert from_noise.info["sampler_steps"] == 8
    assert np.abs(from_noise.frames.astype(int) - expected.astype(int)).mean() > 5.0


def test_sampling_can_start_from_a_given_video(pipe):
    """``start_video`` replaces the animation as the start (the evaluation's redraw of the true clip):
    at a tiny start sigma the result is that video through the autoencoder; a wrong shape, or no
    motion init to start from, is refused."""
    from dragnuwa.errors import UserError
    from dragnuwa.evaluate import autoencoder_round_trip

    rng = np.random.default_rng(1)
    image = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    video = (rng.random((4, 32, 32, 3)) * 255).astype(np.uint8)
    tracks = np.stack([np.linspace([10.5, 12.5], [18.5, 16.5], 4)]).astype(np.float32)
    res = pipe.generate(image, tracks, "", steps=8, show_progress=False, motion_init=0.003, paste_first=False,
                        start_video=video, detail=False)
    expected = autoencoder_round_trip(pipe.model.autoencoder)(video)
    assert np.abs(res.frames.astype(int) - expected.astype(int)).mean() < 1.0
    animation = autoencoder_round_trip(pipe.model.autoencoder)(paste_along_tracks(image, tracks))
    assert np.abs(res.frames.astype(int) - animation.astype(int)).mean() > 20
    for bad, start in ((video[:3], 0.5), (video, 0.0), (video.astype(np.float32) / 255, 0.5)):
        with pytest.raises(UserError, match="start_video must be uint8"):
            pipe.generate(image, tracks, "", steps=4, show_progress=False, motion_init=start, start_video=bad)


def test_the_motion_region_reaches_the_animation(pipe):
    """``motion_region="object"`` moves the object, not the disc, in what sampling starts from."""
    from dragnuwa.errors import UserError
    from dragnuwa.evaluate import autoencoder_round_trip

    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) + 0.5
    image = np.stack([40 + 3 * xx, 60 + 2 * yy, 150 + 0 * xx], axis=-1).astype(np.uint8)
    image[(xx - 12) ** 2 + (yy - 16) ** 2 <= 5 ** 2] = (230, 40, 40)  # disc radius at 32 px: 3.75
    tracks = np.stack([np.linspace([12.0, 16.0], [20.0, 16.0], 4)]).astype(np.float32)
    round_trip = autoencoder_round_trip(pipe.model.autoencoder)
    expected = {r: round_trip(paste_along_tracks(image, tracks, region=r)).astype(int) for r in ("disc", "object")}
    assert np.abs(expected["disc"] - expected["object"]).mean() > 2.0
    res = pipe.generate(image, tracks, "", steps=8, show_progress=False, motion_init=0.003, paste_first=False,
                        motion_region="object", detail=False)
    assert res.info["motion_region"] == "object"
    assert np.abs(res.frames.astype(int) - expected["object"]).mean() < 1.0
    with pytest.raises(UserError, match="motion region"):
        pipe.generate(image, tracks, "", steps=2, show_progress=False, motion_region="blob")


def test_motion_init_is_off_without_the_image_the_tracks_or_motion(pipe):
    from dragnuwa.errors import UserError

    image = np.full((32, 32, 3), 90, np.uint8)
    moving = np.stack([np.linspace([10.5, 12.5], [18.5, 16.5], 4)]).astype(np.float32)
    still = np.repeat([[[10.5, 12.5]]], 4, axis=1).astype(np.float32)
    on = pipe.generate(image, moving, "", steps=6, show_progress=False, motion_init=1.0)
    assert on.info["motion_init"] == 1.0 and on.info["sampler_steps"] < 6
    brush = np.zeros((4, 2, 32, 32), np.float32)
    brush[1:, 0, 8:16, 8:16] = 2.0  # a dense motion input: a square moving right
    on = pipe.generate(image, None, "", steps=6, show_progress=False, motion_init=1.0, flow=brush)
    assert on.info["motion_init"] == 1.0 and on.info["sampler_steps"] < 6
    for kwargs in ({"drop": ("traj",)}, {"drop": ("image",)}, {"tracks": still}, {"tracks": None},
                   {"tracks": None, "flow": np.zeros((4, 2, 32, 32), np.float32)}):
        args = {"tracks": moving, **kwargs}
        res = pipe.generate(image, text="", steps=6, show_progress=False, motion_init=1.0, **args)
        assert res.info["motion_init"] == 0.0 and res.info["sampler_steps"] == 6, kwargs
    for bad in (-1.0, float("nan"), 100.0):
        with pytest.raises(UserError, match="motion-init"):
            pipe.generate(image, moving, "", steps=2, show_progress=False, motion_init=bad)


def test_evaluation_shows_the_model_alone_next_to_motion_init(pipe, tmp_path):
    import json

    from dragnuwa.evaluate import run_evaluation

    md = run_evaluation(model=pipe.model, out_dir=tmp_path, count=2, steps=2, motion_init=1.0).read_text()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["meta"]["motion_init"] == 1.0 and "no_motion_init" in report["summary"]
    assert report["summary"]["ablations"]["no_motion_init"]["check"] == "trajectory_error"
    assert "| no_motion_init |" in md and "sampled from sigma 1, starting from the image" in md and "where motion init starts" in md
    assert report["meta"]["motion_region"] == "disc" and "a disc around each track" in md
    # The redraw of the true clip from the same sigma is scored beside the autoencoder's round trip.
    yard = report["summary"]["yardsticks"]
    assert yard["redrawn"]["psnr_db"] > 5 and "redrawn by the model" in md
    assert "redrawn_error" in report["clips"][0]
    md = run_evaluation(model=pipe.model, out_dir=tmp_path / "object", count=1, steps=2, motion_init=1.0,
                        motion_region="object").read_text()
    assert "the object under each track" in md
    # The yardstick of where motion init starts moves the same region as the generations.
    by_object = json.loads((tmp_path / "object" / "report.json").read_text())["clips"][0]["animation_error"]
    assert by_object != pytest.approx(report["clips"][0]["animation_error"], abs=1e-3)
    run_evaluation(model=pipe.model, out_dir=tmp_path / "off", count=1, steps=2, motion_init=0)
    off = json.loads((tmp_path / "off" / "report.json").read_text())
    assert "no_motion_init" not in off["summary"] and off["meta"]["motion_init"] == 0.0
    assert "redrawn" not in off["summary"]["yardsticks"]  # nothing to redraw from without motion init
    from dragnuwa.errors import UserError

    with pytest.raises(UserError, match="motion-init"):
        run_evaluation(model=pipe.model, out_dir=tmp_path / "bad", count=1, steps=2, motion_init=-1.0)
    with pytest.raises(UserError, match="motion region"):
        run_evaluation(model=pipe.model, out_dir=tmp_path / "bad", count=1, steps=2, motion_region="blob")
    assert not (tmp_path / "bad").exists()
