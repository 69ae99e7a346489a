import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dragnuwa.errors import UserError
from dragnuwa.tracks_io import TrackSet


@pytest.fixture(scope="module")
def pipe():
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA
    from dragnuwa.pipeline import Pipeline

    torch.manual_seed(0)
    return Pipeline(DragNUWA(get_preset("tiny")))


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory, pipe):
    from dragnuwa.models.dragnuwa import save_model

    return save_model(tmp_path_factory.mktemp("m") / "tiny.safetensors", pipe.model)


def _img(h=40, w=64, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_same_seed_same_video_and_seed_changes_it(pipe):
    ts = TrackSet(64, 40, [np.array([[10.0, 10.0], [30.0, 20.0]])])
    a = pipe.generate(_img(), ts, "a red circle", seed=3, show_progress=False)
    b = pipe.generate(_img(), ts, "a red circle", seed=3, show_progress=False)
    c = pipe.generate(_img(), ts, "a red circle", seed=4, show_progress=False)
    assert a.frames.shape == (4, 32, 32, 3)
    assert np.array_equal(a.frames, b.frames) and not np.array_equal(a.frames, c.frames)


def test_points_are_mapped_like_the_image(pipe):
    # 64x40 image, crop to 32x32: scale 0.8 (rounded per axis), centre crop of x.
    ts = TrackSet(64, 40, [np.array([[32.0, 20.0], [40.0, 20.0]])])
    res = pipe.generate(_img(), ts, "", frames=3, steps=1, show_progress=False)
    # 51 px wide after scaling; the 19 px crop margin floors to a 10 px shift: x = 32 * 51/64 - 10.
    assert np.allclose(res.tracks[0, 0], [15.5, 16.0], atol=1e-4)
    assert res.tracks[0, -1, 0] - res.tracks[0, 0, 0] == pytest.approx(8 * 51 / 64, abs=0.05)
    assert res.maps.shape == (3, 2, 32, 32) and res.maps[1, 0, 16, 16] > 0
    assert "scaled" in res.info["point_mapping"]


def test_image_variants_are_accepted(pipe, tmp_path):
    rgba = np.zeros((40, 64, 4), np.uint8)
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray((np.arange(64 * 40).reshape(40, 64) * 20).astype(np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(_img()[..., 0]).save(tmp_path / "grey.png")
    for name in ("rgba.png", "g16.png", "grey.png"):
        res = pipe.generate(str(tmp_path / name), None, "", frames=2, steps=1, show_progress=False)
        assert res.frames.shape == (2, 32, 32, 3)


def test_dense_motion_input(pipe):
    flow = np.zeros((3, 20, 20, 2), np.float32)
    flow[..., 0] = 2.0
    res = pipe.generate(_img(), flow=flow, frames=4, steps=1, show_progress=False)
    # The 20x20 grid covers the 64x40 image (2 px = 6.4 image px), then is cropped like it (x0.8 -> 51 px wide).
    assert res.maps.shape == (4, 2, 32, 32)
    assert res.maps[1, 0].mean() == pytest.approx(2.0 * 64 / 20 * 51 / 64, rel=1e-3)
    with pytest.raises(UserError, match="frames"):
        pipe.generate(_img(), flow=flow, frames=6, steps=1, show_progress=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(frames=1), "frames must be between 2 and 16"),
    (dict(frames=1000), "frames must be between 2 and 16"),
    (dict(steps=0), "steps must be between"),
    (dict(guidance=float("nan")), "guidance must be a number"),
    (dict(seed=2**63), "seed must be a whole number between 0 and 2"),
    (dict(seed=-1), "seed must be a whole number"),
    (dict(tracks=TrackSet(64, 40, [np.array([[1.0, 1.0]]), np.array([[1.0, 1.0], [70.0, 5.0]])])), None),
])
def test_bad_arguments(pipe, kwargs, message):
    from dragnuwa.tracks_io import parse_tracks

    if message is None:  # a point outside the image in a JSON file is rejected when parsed
        with pytest.raises(UserError, match="track 1, point 1: x=70 is outside the image width 64"):
            parse_tracks({"width": 64, "height": 40, "tracks": [[[1, 1]], [[1, 1], [70, 5]]]})
        return
    with pytest.raises(UserError, match=message):
        pipe.generate(_img(), kwargs.pop("tracks", None), "", show_progress=False, **kwargs)


def _cli(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "dragnuwa.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_generate_cli_end_to_end_and_bad_input(tmp_path, tiny_model_file):
    img = tmp_path / "img.png"
    Image.fromarray(_img(90, 160)).save(img)
    (tmp_path / "t.json").write_text('{"width": 160, "height": 90, "tracks": [[[20, 20], [60, 40]], [[100, 50]]]}')
    out = tmp_path / "out.mp4"
    r = _cli("generate", "--image", str(img), "--tracks", str(tmp_path / "t.json"), "--text", "a cat",
             "--out", str(out), "--model", str(tiny_model_file), "--steps", "20", "--overlay", str(tmp_path / "o.mp4"),
             "--motion-init", "1", "--motion-region", "object", "--upscale", "3")
    assert r.returncode == 0, r.stderr
    assert "sampler steps from motion init at sigma 1 (object)," in r.stdout and "1 tracks" not in r.stdout, r.stdout
    assert "written 3x larger" in r.stdout
    from dragnuwa.video import read_video

    # --upscale 3: both videos at 96x96; the overlay draws on the enlarged frames, so it differs
    # from the video only along the tracks' thin lines and dots.
    video, drawn = read_video(out)[0].astype(int), read_video(tmp_path / "o.mp4")[0].astype(int)
    assert video.shape == drawn.shape == (4, 96, 96, 3)
    changed = np.abs(video - drawn).max(axis=-1) > 40
    assert 0.001 < changed.mean() < 0.05, changed.mean()
    (tmp_path / "bad.json").write_text('{"width": 160, "height": 90, "tracks": [[[20, 20], [200, 40]]]}')
    (tmp_path / "notimg.png").write_text("text")
    cases = [
        ("--image", str(tmp_path / "missing.png"), "--tracks", str(tmp_path / "t.json")),
        ("--image", str(tmp_path / "notimg.png"), "--tracks", str(tmp_path / "t.json")),
        ("--image", str(img), "--tracks", str(tmp_path / "bad.json")),
        ("--image", str(img), "--tracks", str(tmp_path / "t.json"), "--frames", "999"),
        ("--image", str(img), "--tracks", str(tmp_path / "t.json"), "--motion-init", "-1"),
        ("--image", str(img), "--tracks", str(tmp_path / "t.json"), "--motion-region", "blob"),
        ("--image", str(img), "--tracks", str(tmp_path / "t.json"), "--upscale", "17"),
        ("--image", str(img), "--tracks", str(tmp_path / "t.json"), "--upscale", "0"),
        ("--image", str(img), "--tracks", str(tmp_path / "t.json"), "--overlay", str(tmp_path / "o.avi")),
        ("--image", str(img), "--tracks", str(tmp_path / "t.json"), "--model", str(tmp_path / "nope.safetensors")),
    ]
    for args in cases:
        target = tmp_path / "new.mp4"
        r = _cli("generate", *args, "--out", str(target), "--model", str(tiny_model_file)) if "--model" not in args \
            else _cli("generate", *args, "--out", str(target))
        lines = [line for line in r.stderr.splitlines() if line.strip() and "Loading" not in line]
        assert r.returncode == 2 and len(lines) == 1 and "error:" in lines[0], (args, r.stderr)
        assert not target.exists()
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


def test_write_outputs_draws_the_tracks_where_the_enlarged_pixels_are(tmp_path):
    """The overlay of an upscaled video draws each track at ``upscale`` times its point."""
    from types import SimpleNamespace

    from dragnuwa.pipeline import write_outputs
    from dragnuwa.video import read_video

    res = SimpleNamespace(frames=np.full((3, 16, 16, 3), 128, np.uint8),
                          tracks=np.array([[[5.5, 7.5]] * 3]))  # an anchor: a dot at its point
    video, overlay = write_outputs(res, tmp_path / "v.mp4", tmp_path / "o.mp4", 8.0, upscale=4)
    plain, drawn = read_video(video)[0].astype(int), read_video(overlay)[0].astype(int)
    assert plain.shape == (3, 64, 64, 3) and np.abs(plain - 128).max() <= 2
    ys, xs = np.nonzero(np.abs(drawn[1] - plain[1]).max(axis=-1) > 40)
    assert len(xs) > 5 and np.hypot(xs.mean() + 0.5 - 22, ys.mean() + 0.5 - 30) < 1.0
    assert write_outputs(res, tmp_path / "w.mp4")[1] is None


def test_generate_writes_a_gif_when_asked(tmp_path, tiny_model_file):
    """``--out x.gif`` (and a .gif overlay) write looping GIFs with the video's frames."""
    from dragnuwa.pipeline import generate_to_file
    from dragnuwa.video import read_video

    out = generate_to_file(_img(), tracks=np.array([[[10.0, 10.0], [30.0, 20.0]]]), text="a cat",
                           out=str(tmp_path / "v.gif"), steps=2, model=str(tiny_model_file),
                           overlay=str(tmp_path / "o.gif"))
    video, drawn = read_video(out)[0], read_video(tmp_path / "o.gif")[0]
    assert Image.open(out).format == "GIF" and video.shape == drawn.shape == (4, 32, 32, 3)
    assert np.abs(video.astype(int) - drawn).max() > 40  # the tracks are drawn on the overlay only


def test_a_track_the_crop_cuts_away_is_reported(pipe, tmp_path, tiny_model_file, capsys):
    """Crop keeps the middle 40 of a 64x40 image's columns (x 12.5-52.5): an anchor at x 5 lies wholly
    outside and is named, a drag that enters the frame is not; padding keeps the whole image."""
    from dragnuwa.pipeline import generate_to_file, input_warnings

    tracks = TrackSet(64, 40, [np.array([[5.0, 20.0]]), np.array([[2.0, 10.0], [30.0, 10.0]]),
                               np.array([[30.0, 20.0], [40.0, 25.0]])])
    res = pipe.generate(_img(), tracks, "", frames=3, steps=1, show_progress=False)
    assert res.info["tracks_outside"] == [1]
    assert res.info["visible"] == pytest.approx([12.5, 0, 52.7, 40], abs=0.1)
    assert input_warnings(res.info) == ["track 1 of 3 lies outside the part of the image the model sees "
                                  "(x 12.5-52.7, y 0-40) and had no effect; --fit pad keeps the whole image"]
    padded = pipe.generate(_img(), tracks, "", frames=3, steps=1, show_progress=False, fit="pad")
    assert padded.info["tracks_outside"] == [] and input_warnings(padded.info) == []
    # The command line prints it on stderr, after writing the video.
    out = generate_to_file(_img(), tracks=tracks, out=str(tmp_path / "v.mp4"), steps=1, model=str(tiny_model_file))
    assert out.is_file()
    assert "warning: track 1 of 3 lies outside" in capsys.readouterr().err


def test_tracks_drawn_on_a_frame_of_another_shape_are_stretched_and_said_so(pipe):
    """A 64x40 image with tracks drawn on a 128x40 frame (a wider video's): the 40 px step right is
    20 px on the image, and the warning says the tracks were stretched; tracks on a 128x80 frame
    (the same shape, larger) are scaled alike on both axes without a word."""
    from dragnuwa.pipeline import input_warnings

    wide = TrackSet(128, 40, [np.array([[60.0, 20.0], [100.0, 20.0]])])
    res = pipe.generate(_img(), wide, "", frames=2, steps=1, show_progress=False, fit="stretch")
    step = res.tracks[0, -1] - res.tracks[0, 0]
    assert step == pytest.approx([20.0 * 32 / 64, 0.0], abs=0.01)  # image px -> the 32x32 model frame
    assert res.info["tracks_size"] == [128, 40]
    assert input_warnings(res.info) == ["the tracks were drawn on a 128x40 frame and are stretched onto the 64x40 "
                                        "image (aspect 3.20 against 1.60): motion along one axis is scaled more "
                                        "than along the other"]
    same = TrackSet(128, 80, [np.array([[60.0, 20.0], [100.0, 20.0]])])
    assert input_warnings(pipe.generate(_img(), same, "", frames=2, steps=1, show_progress=False).info) == []


def test_fps_sets_the_playback_rate_and_is_checked_first(tmp_path, tiny_model_file):
    from dragnuwa.pipeline import generate_to_file
    from dragnuwa.video import read_video

    out = generate_to_file(_img(), out=str(tmp_path / "v.mp4"), steps=1, model=str(tiny_model_file), fps=12.5)
    assert read_video(out)[1] == pytest.approx(12.5)
    assert read_video(generate_to_file(_img(), out=str(tmp_path / "w.mp4"), steps=1,
                                       model=str(tiny_model_file)))[1] == pytest.approx(8.0)  # the model's
    for bad in (0.0, -3.0, float("nan"), 120.0):  # refused before the model loads: this one does not exist
        with pytest.raises(UserError, match="fps must be a number above 0 and at most 50"):
            generate_to_file(_img(), out=str(tmp_path / "x.mp4"), model=str(tmp_path / "none.safetensors"), fps=bad)
    assert not (tmp_path / "x.mp4").exists()


def test_a_video_as_the_tracks_moves_the_image_as_the_video_moves(pipe, sliding_video):
    """``tracks=VIDEO``: the video's own motion (3, 1) px per frame over 5 steps of its 160x96 frame,
    scaled onto the 64x40 image (x 0.4, y 0.417) and then like the image (x 51/64, y 0.8)."""
    res = pipe.generate(_img(), str(sliding_video), "", frames=4, steps=1, show_progress=False)
    moved = res.tracks[:, -1] - res.tracks[:, 0]
    assert len(moved) >= 1 and res.tracks.shape[1] == 4
    assert np.abs(moved - [15 * 64 / 160 * 51 / 64, 5 * 40 / 96 * 0.8]).max() < 0.3, moved


def test_variants_write_each_seed_and_a_labelled_grid(tmp_path, tiny_model_file):
    """``variants=3`` from seed 5: seeds 5, 6, 7 each in their own file, identical to a run of that
    seed alone, and side by side in ``out`` (2 px of black between tiles, a label box top-left)."""
    from dragnuwa.pipeline import generate_to_file
    from dragnuwa.video import read_video

    tracks = np.array([[[10.0, 10.0], [30.0, 20.0]]])
    out = generate_to_file(_img(), tracks=tracks, out=str(tmp_path / "v.mp4"), steps=2, seed=5, variants=3,
                           model=str(tiny_model_file), overlay=str(tmp_path / "o.mp4"), upscale=2)
    alone = read_video(generate_to_file(_img(), tracks=tracks, out=str(tmp_path / "six.mp4"), steps=2, seed=6,
                                        model=str(tiny_model_file), upscale=2))[0]
    each = [read_video(tmp_path / f"v_seed{s}.mp4")[0] for s in (5, 6, 7)]
    assert np.array_equal(each[1], alone) and not np.array_equal(each[0], each[1])
    grid, drawn = read_video(out)[0].astype(int), read_video(tmp_path / "o.mp4")[0].astype(int)
    assert grid.shape == drawn.shape == (4, 64, 3 * 64 + 2 * 2, 3)
    assert grid[:, :, 64:66].max() < 30  # the gap
    for k in range(3):  # below the label, each tile is its seed's video (this noise model's: up to the codec)
        tile = grid[:, 24:, k * 66:k * 66 + 64]
        diffs = [np.abs(tile - e[:, 24:]).mean() for e in each]
        assert np.argmin(diffs) == k and diffs[k] < 0.5 * min(d for j, d in enumerate(diffs) if j != k), diffs
    assert np.abs(drawn - grid).max() > 40  # the tracks are drawn on the overlay's tiles
    with pytest.raises(UserError, match="variants must be a whole number from 1 to 16"):
        generate_to_file(_img(), out=str(tmp_path / "x.mp4"), model=str(tmp_path / "none"), variants=17)
    with pytest.raises(UserError, match="pass 2\\^63 - 1"):  # before the model loads, too
        generate_to_file(_img(), out=str(tmp_path / "x.mp4"), model=str(tmp_path / "none"), seed=2**63 - 2,
                         variants=3)
    assert not (tmp_path / "x.mp4").exists()


def test_a_brush_with_a_videos_tracks_moves_what_is_painted_and_drops_the_rest(pipe, sliding_video):
    """Drawn tracks that start outside a brush are refused; tracks read off a video are not the
    user's choice, so those outside the painting (here: its right half) are left out."""
    mask = np.zeros((40, 64), bool)
    mask[:, :32] = True
    res = pipe.generate(_img(), str(sliding_video), "", frames=4, steps=1, show_progress=False, brush=mask)
    moving, regions = res.brush
    assert 1 <= len(moving) < res.info["tracks"] and len(regions) == len(moving)
    # At the model's 32 px, the painted half ends at x = 32 * 51/64 - 10 = 15.5.
    assert np.all(moving[:, 0, 0] < 15.5)
    # A small stroke where no track starts (the visible spot farthest from every start).
    ys, xs = np.mgrid[4:36, 16:49].reshape(2, -1) + 0.5
    model_xy = np.stack([xs * 51 / 64 - 10, ys * 0.8], axis=1)
    far = np.linalg.norm(model_xy[:, None] - res.tracks[None, :, 0], axis=-1).min(axis=1)
    x, y = int(xs[far.argmax()]), int(ys[far.argmax()])
    assert far.max() > 4
    stroke = np.zeros((40, 64), bool)
    stroke[y - 2:y + 2, x - 2:x + 2] = True
    with pytest.raises(UserError, match="none of the video's moving tracks starts inside"):
        pipe.generate(_img(), str(sliding_video), "", frames=4, steps=1, show_progress=False, brush=stroke)
    drawn = TrackSet(64, 40, [np.array([[50.0, 20.0], [55.0, 20.0]])])
    with pytest.raises(UserError, match="starts outside every painted region"):
        pipe.generate(_img(), drawn, "", frames=4, steps=1, show_progress=False, brush=mask)


def test_detail_is_restored_unless_turned_off_or_the_image_is_dropped(pipe):
    ts = TrackSet(64, 40, [np.array([[10.0, 10.0], [30.0, 20.0]])])

    def run(**kw):
        return pipe.generate(_img(), ts, "a red circle", seed=3, show_progress=False, paste_first=False, **kw)

    on, off = run(), run(detail=False)
    assert on.info["detail"] and not off.info["detail"]
    from dragnuwa.detail import restore_detail
    from dragnuwa.metrics import psnr

    # The same sample, with the given image's detail on it: the first frame comes closer to the image.
    assert np.array_equal(on.frames, restore_detail(off.frames, on.image))
    assert psnr(on.frames[0], on.image) > psnr(off.frames[0], on.image) + 1
    # Without the image condition there is no image detail to carry either.
    no_image, no_image_off = run(drop=("image",)), run(drop=("image",), detail=False)
    assert not no_image.info["detail"] and np.array_equal(no_image.frames, no_image_off.frames)
