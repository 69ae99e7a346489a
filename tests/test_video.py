import av
import numpy as np
import pytest
from PIL import Image

from dragnuwa.errors import UserError
from dragnuwa.video import fit_image, load_image, read_video, to_tensor, to_uint8, upscale, write_video


def _gradient_frames(T=8, H=48, W=64):
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([np.stack([(xx * 4 + t * 8) % 256, yy * 5 % 256, np.full_like(xx, 100)], -1)
                     for t in range(T)]).astype(np.uint8)


def test_write_read_round_trip(tmp_path):
    frames = _gradient_frames()
    path = write_video(tmp_path / "v.mp4", frames, fps=8)
    back, fps = read_video(path)
    assert back.shape == frames.shape and fps == 8
    mse = np.mean((back.astype(float) - frames) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 30


def test_gif_output_round_trip(tmp_path):
    # A red square moving 3 px per frame over a smooth background: what a generated video looks like.
    yy, xx = np.mgrid[0:48, 0:64]
    frames = np.repeat(np.stack([xx * 2, yy * 3, np.full_like(xx, 90)], -1)[None], 6, 0).astype(np.uint8)
    for t in range(6):
        frames[t, 10:20, 5 + 3 * t:15 + 3 * t] = (220, 30, 30)
    path = write_video(tmp_path / "v.gif", frames, fps=8)
    back, _ = read_video(path)
    assert back.shape == frames.shape
    mse = np.mean((back.astype(float) - frames) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 30
    red = (back[..., 0] > 180) & (back[..., 1] < 80)
    assert [int(np.nonzero(red[t].any(0))[0][0]) for t in range(6)] == [5, 8, 11, 14, 17, 20]
    gif = Image.open(path)
    assert gif.n_frames == 6 and gif.info["duration"] == 120 and gif.info["loop"] == 0  # 8 fps, looping
    with pytest.raises(UserError, match=r"must end in \.mp4 or \.gif"):
        write_video(tmp_path / "v.avi", frames)
    assert not (tmp_path / "v.avi").exists()


def test_odd_size_is_padded_and_resize_on_read(tmp_path):
    path = write_video(tmp_path / "odd.mp4", _gradient_frames(3, 31, 45))
    back, _ = read_video(path, size=(32, 16))
    assert back.shape == (3, 16, 32, 3)


@pytest.mark.parametrize("fit", ["crop", "pad", "stretch"])
@pytest.mark.parametrize("size", [(64, 64), (250, 200), (71, 45)])
def test_fit_image_maps_points_like_pixels(fit, size):
    img = np.zeros((90, 160, 3), np.uint8)
    img[30:34, 100:104] = 255  # a 4x4 bright block centred at (102, 32)
    out, tr = fit_image(img, size, fit)
    assert out.shape == (size[1], size[0], 3)
    ys, xs = np.nonzero(out[..., 0] > 60)
    centre = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
    assert np.abs(tr.apply(np.array([102.0, 32.0])) - centre).max() < 0.75
    # The visible part of the image maps onto the frame (crop) or inside it (pad, stretch: all of it).
    x0, y0, x1, y1 = tr.visible((160, 90), size)
    corners = tr.apply(np.array([[x0, y0], [x1, y1]]))
    assert corners.min() >= -1e-6 and np.all(corners[1] <= np.array(size) + 1e-6)
    if fit == "crop":
        assert np.allclose(corners, [[0, 0], size], atol=1e-6)  # the crop fills the frame
    else:
        assert (x0, y0, x1, y1) == (0, 0, 160, 90)


def test_a_sliver_thin_image_is_refused_for_crop_not_scaled_to_gigabytes():
    thin = np.zeros((1, 1_000_000, 3), np.uint8)  # crop to 64x64 would scale it to 64,000,000 x 64 first
    with pytest.raises(UserError, match="too elongated to crop to 64x64.*use pad or stretch"):
        fit_image(thin, (64, 64), "crop")
    assert fit_image(thin, (64, 64), "pad")[0].shape == (64, 64, 3)
    assert fit_image(np.zeros((1, 5000, 3), np.uint8), (64, 64), "crop")[0].shape == (64, 64, 3)  # 320,000 x 64


def test_tensor_conversion_round_trip():
    frames = _gradient_frames(2, 8, 8)
    t = to_tensor(frames)
    assert t.shape == (2, 3, 8, 8) and -1 <= t.min() and t.max() <= 1
    assert np.array_equal(to_uint8(t), frames)


def _zero_frame_video(path, fmt):
    """A valid container with a video stream that holds no frames."""
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()
        for packet in s.encode():
            c.mux(packet)
    return path


def test_bad_videos(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        read_video(tmp_path / "empty.mp4")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(UserError, match="cannot decode|no video|no frames"):
        read_video(tmp_path / "corrupt.mp4")
    (tmp_path / "text.mp4").write_text("not a video at all")
    with pytest.raises(UserError, match="cannot decode"):
        read_video(tmp_path / "text.mp4")
    good = write_video(tmp_path / "good.mp4", _gradient_frames(8, 32, 32)).read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="cannot decode"):
        read_video(tmp_path / "truncated.mp4")
    for fmt, ext in (("mp4", "mp4"), ("matroska", "mkv")):
        with pytest.raises(UserError, match="no video stream|no frames"):
            read_video(_zero_frame_video(tmp_path / f"zero.{ext}", fmt))
    with pytest.raises(UserError, match="fps"):
        write_video(tmp_path / "bad_fps.mp4", _gradient_frames(2, 8, 8), fps=0)


def test_fractional_fps_float_input_and_max_frames(tmp_path):
    frames = _gradient_frames(6, 32, 48)
    path = write_video(tmp_path / "f.mp4", to_tensor(frames), fps=7.5)
    back, fps = read_video(path, max_frames=4)
    assert fps == pytest.approx(7.5) and back.shape == (4, 32, 48, 3)
    assert np.abs(back.astype(float) - frames[:4]).mean() < 3


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = write_video(tmp_path / "keep.mp4", _gradient_frames(3, 16, 16))
    before = path.read_bytes()
    real, calls = av.VideoFrame.from_ndarray, []

    def fail_on_third(arr, format):  # the encoder dies part-way through the file
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(arr, format=format)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", fail_on_third)
    with pytest.raises(RuntimeError, match="disk full"):
        write_video(path, _gradient_frames(8, 16, 16))
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


def test_load_image_variants(tmp_path):
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:5, :, 3] = 255  # top half opaque red, bottom transparent -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.shape == (10, 12, 3)
    assert tuple(img[0, 0]) == (200, 0, 0) and tuple(img[-1, -1]) == (255, 255, 255)
    grey16 = (np.arange(120).reshape(10, 12) * 500).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    g = load_image(tmp_path / "g16.png")
    assert g.shape == (10, 12, 3) and g.dtype == np.uint8 and g[-1, -1, 0] > 200 and g[0, 0, 0] == 0
    pal = Image.fromarray(np.arange(120, dtype=np.uint8).reshape(10, 12), "L").convert("P")
    pal.save(tmp_path / "p.png")
    p = load_image(tmp_path / "p.png")
    assert p.shape == (10, 12, 3) and tuple(p[-1, -1]) == (119, 119, 119)
    Image.fromarray(np.full((6, 7), 90, np.uint8), "L").save(tmp_path / "grey.jpg")
    assert load_image(tmp_path / "grey.jpg").shape == (6, 7, 3)
    (tmp_path / "not.png").write_text("hello")
    with pytest.raises(UserError, match="not a readable image"):
        load_image(tmp_path / "not.png")
    with pytest.raises(UserError, match="not found"):
        load_image(tmp_path / "nope.png")
    # A video's first frame (the image its `dragnuwa tracks` start on).
    frames = _gradient_frames(3, 16, 24)
    frames[1:] = 255 - frames[1:]
    write_video(tmp_path / "clip.mp4", frames)
    first = load_image(tmp_path / "clip.mp4")
    assert np.array_equal(first, read_video(tmp_path / "clip.mp4")[0][0])
    assert np.abs(first.astype(int) - frames[0]).mean() < 3
    (tmp_path / "broken.mov").write_bytes(b"\0" * 100)
    with pytest.raises(UserError, match="cannot decode video"):
        load_image(tmp_path / "broken.mov")
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")  # 50 KB on disk, 400 megapixels decoded
    with pytest.raises(UserError, match="image is too large: .* more than 178,956,970 pixels"):
        load_image(tmp_path / "bomb.png")


def test_written_files_get_normal_permissions(tmp_path):
    import os
    import stat

    path = write_video(tmp_path / "p.mp4", _gradient_frames(2, 8, 8))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_upscale_enlarges_and_keeps_points_at_factor_times():
    """``upscale(frames, n)``: n times the size; a bright pixel centred at p lands centred at n p;
    1 is the identity; anything but a whole number in 1..16 is refused."""
    frames = np.full((2, 8, 10, 3), 50, np.uint8)
    frames[1, 3, 6] = 250  # pixel centre (6.5, 3.5)
    big = upscale(frames, 4)
    assert big.shape == (2, 32, 40, 3) and (big[0] == 50).all()
    ys, xs = np.nonzero(big[1, ..., 0] > 150)
    assert np.allclose([xs.mean() + 0.5, ys.mean() + 0.5], [4 * 6.5, 4 * 3.5], atol=0.01)
    assert upscale(frames, 1) is frames
    for bad in (0, 17, 2.5):
        with pytest.raises(UserError, match="upscale must be a whole number from 1 to 16"):
            upscale(frames, bad)
