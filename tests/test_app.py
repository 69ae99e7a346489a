"""The web UI driven through its API with gradio_client on 127.0.0.1 (tiny random model)."""

import json
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from dragnuwa import app as app_mod
from dragnuwa.errors import UserError


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA

    torch.manual_seed(0)
    port = _free_port()
    demo = app_mod.launch(host="127.0.0.1", port=port, model=DragNUWA(get_preset("tiny")), block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_generation_with_two_tracks_returns_playable_mp4(server, tmp_path):
    from gradio_client import Client, handle_file

    from dragnuwa.video import read_video

    img = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)).save(img)
    tracks = {"width": 80, "height": 48, "tracks": [[[10, 10], [30, 20], [50, 25]], [[60, 40]]]}
    client = Client(server, verbose=False)
    video, tpath = client.predict(handle_file(str(img)), json.dumps(tracks), "a red circle", 5, 2, 0, 1.5, 2.0,
                                  api_name="/generate")
    frames, _ = read_video(video)
    assert frames.shape == (5, 32, 32, 3)
    assert json.loads(open(tpath).read())["tracks"][1] == [[60, 40]]

    # A bad upload gives a clear error and the app keeps serving.
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(Exception, match="not a readable image"):
        client.predict(handle_file(str(bad)), json.dumps(tracks), "", 4, 1, 0, 1.0, 1.0, api_name="/generate")
    with pytest.raises(Exception, match="track 0, point 1: x=500"):
        client.predict(handle_file(str(img)), json.dumps({"width": 80, "height": 48, "tracks": [[[1, 1], [500, 1]]]}),
                       "", 4, 1, 0, 1.0, 1.0, api_name="/generate")
    video2, _ = client.predict(handle_file(str(img)), json.dumps(tracks), "", 4, 1, 0, 1.0, 1.0,
                               api_name="/generate")
    assert read_video(video2)[0].shape[0] == 4
    # Fit, motion init and motion region by keyword: padding the 80x48 image shows black bars
    # top and bottom (8 of the 32 rows), where the default crop fills the frame.
    padded, _ = client.predict(handle_file(str(img)), json.dumps(tracks), "", 4, 1, 0, 1.0, 1.0, fit="pad",
                               motion_init=0, motion_region="object", api_name="/generate")
    first = read_video(padded)[0][0].astype(int)
    assert first[:3].mean() < 12 < read_video(video2)[0][0][:3].mean()
    with pytest.raises(Exception, match="fit must be one of"):
        client.predict(handle_file(str(img)), json.dumps(tracks), "", 4, 1, 0, 1.0, 1.0, fit="zoom",
                       api_name="/generate")
    # Detail restoration is on unless turned off: the same sample, other frames after the first.
    plain, _ = client.predict(handle_file(str(img)), json.dumps(tracks), "", 4, 1, 0, 1.0, 1.0, detail=False,
                              api_name="/generate")
    plain, restored = read_video(plain)[0].astype(int), read_video(video2)[0].astype(int)
    assert np.abs(plain[0] - restored[0]).mean() < 1 < np.abs(plain[1:] - restored[1:]).mean()


def test_click_editing_state_machine():
    state, canvas, _ = app_mod.on_upload(np.zeros((40, 60, 3), np.uint8), None)
    for x, y in [(5, 5), (20, 10)]:
        state, canvas, _ = app_mod.on_click(state, x, y)
    state, _, msg = app_mod.on_click(state, 500, 5)  # out of range: ignored, no crash
    assert "Ignored" in msg and state["tracks"] == [[[5.0, 5.0], [20.0, 10.0]]]
    state, _, _ = app_mod.on_new_track(state)
    state, canvas, msg = app_mod.on_click(state, 30, 30)
    assert "anchor" in msg and canvas.shape == (40, 60, 3) and canvas.any()
    assert app_mod.tracks_json(state)["tracks"] == [[[5.0, 5.0], [20.0, 10.0]], [[30.0, 30.0]]]
    state, _, _ = app_mod.on_undo_point(state)
    state, _, _ = app_mod.on_delete_track(state)
    assert app_mod.tracks_json(state)["tracks"] == []
    state, _, _ = app_mod.on_click(state, 1, 1)
    state, _, _ = app_mod.on_reset(state)
    assert app_mod.tracks_json(state)["tracks"] == []


def test_uploaded_tracks_are_rescaled_to_the_image_and_a_stretch_is_said(tmp_path):
    """Tracks JSON of a 120x40 frame on a 60x40 image: x halves, and the status line says the tracks
    were stretched; a 120x80 file (the image's shape, twice the size) is scaled without a note."""
    state, _, _ = app_mod.on_upload(np.zeros((40, 60, 3), np.uint8), None)
    (tmp_path / "wide.json").write_text(json.dumps({"width": 120, "height": 40, "tracks": [[[100, 10], [20, 30]]]}))
    state, _, msg = app_mod.on_tracks_upload(str(tmp_path / "wide.json"), state)
    assert app_mod.tracks_json(state)["tracks"] == [[[50.0, 10.0], [10.0, 30.0]]]
    assert "stretched onto the 60x40 image" in msg
    (tmp_path / "same.json").write_text(json.dumps({"width": 120, "height": 80, "tracks": [[[100, 10], [20, 30]]]}))
    state, _, msg = app_mod.on_tracks_upload(str(tmp_path / "same.json"), state)
    assert app_mod.tracks_json(state)["tracks"] == [[[50.0, 5.0], [10.0, 15.0]]] and "stretched" not in msg


def test_the_ui_generation_passes_the_motion_region(tmp_path):
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA
    from dragnuwa.pipeline import Pipeline
    from dragnuwa.video import read_video

    torch.manual_seed(0)
    pipe = Pipeline(DragNUWA(get_preset("tiny")))
    yy, xx = np.mgrid[0:32, 0:32] + 0.5
    image = np.full((32, 32, 3), 60, np.uint8)
    image[(xx - 12) ** 2 + (yy - 16) ** 2 <= 25] = (230, 40, 40)
    tracks = {"width": 32, "height": 32, "tracks": [[[12, 16], [20, 16]]]}
    from dragnuwa.metrics import psnr

    videos = {}
    for region in ("disc", "object"):
        video, _, _, gif = app_mod.run_generation(pipe, image, tracks, "", 4, 6, 0, 1.0, 1.0, motion_init=0.5,
                                                  motion_region=region, upscale=app_mod.VIEW_UPSCALE)
        videos[region] = read_video(video)[0].astype(int)
        # The GIF download is the same video, in 256 colours (this untrained model's noise has many).
        assert psnr(read_video(gif)[0], videos[region].astype(np.uint8)) > 25
    assert videos["disc"].shape == (4, 32 * app_mod.VIEW_UPSCALE, 32 * app_mod.VIEW_UPSCALE, 3)
    # The object and the disc around it start sampling from different animations.
    assert np.abs(videos["disc"] - videos["object"]).mean() > 1.0
    with pytest.raises(UserError, match="motion region"):
        app_mod.run_generation(pipe, image, tracks, "", 4, 2, 0, 1.0, 1.0, motion_init=0.5, motion_region="x")


def test_app_refuses_an_address_it_cannot_listen_on():
    """A port in use, out of range or an unknown host: one ``UserError`` before the model loads."""
    from dragnuwa.app import check_address

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_address("127.0.0.1", port)
    check_address("127.0.0.1", port)  # free again
    with pytest.raises(UserError, match="between 1 and 65535"):
        check_address("127.0.0.1", 70000)
    with pytest.raises(UserError, match="cannot listen on host.invalid"):
        check_address("host.invalid", 7860)


def test_the_ui_brush_moves_the_painted_region(tmp_path):
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA
    from dragnuwa.pipeline import Pipeline

    # The editor's value: the image as background, a transparent layer with a stroke on the object.
    image = np.full((32, 32, 3), 60, np.uint8)
    image[12:20, 8:16] = (230, 40, 40)
    layer = np.zeros((32, 32, 4), np.uint8)
    layer[12:20, 8:16] = (255, 51, 102, 255)
    editor = {"background": image, "layers": [layer], "composite": None}
    mask = app_mod.brush_mask(editor)
    assert mask.sum() == 64 and mask[12:20, 8:16].all()
    assert app_mod.brush_mask({"background": image, "layers": [np.zeros((32, 32, 4), np.uint8)]}) is None
    assert app_mod.brush_mask(None) is None and app_mod.brush_mask(app_mod.brush_canvas({"image": image})) is None
    # A bundled example's brush is shown painted in the editor, and read back from it unchanged.
    shown = app_mod.brush_canvas({"image": image, "brush": mask})
    assert np.array_equal(app_mod.brush_mask(shown), mask) and np.array_equal(shown["background"], image)

    torch.manual_seed(0)
    pipe = Pipeline(DragNUWA(get_preset("tiny")))
    tracks = {"width": 32, "height": 32, "tracks": [[[12, 16], [22, 16]]]}
    paths = app_mod.run_generation(pipe, image, tracks, "", 4, 2, 0, 1.0, 1.0, motion_init=0.5, brush=mask)
    assert len(paths) == 5 and paths[4].endswith("brush.png")
    assert np.array_equal(np.asarray(Image.open(paths[4])) > 0, mask)  # reusable with `generate --brush`
    with pytest.raises(UserError, match="outside every painted region"):
        far = {"width": 32, "height": 32, "tracks": [[[28, 28], [30, 30]]]}
        app_mod.run_generation(pipe, image, far, "", 4, 1, 0, 1.0, 1.0, brush=mask)


def test_the_canvas_shades_what_the_crop_cuts_away_and_fit_reaches_the_model(tmp_path):
    """A 60x30 image fitted to a 32x32 model: crop keeps x 15-45, and the canvas dims the rest; a track
    there is flagged; padding shows it all, and the video's first frame then has the black bars."""
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA
    from dragnuwa.pipeline import Pipeline
    from dragnuwa.video import read_video

    state = app_mod._empty_state({"model_size": (32, 32)})
    state, canvas, msg = app_mod.on_upload(np.full((30, 60, 3), 200, np.uint8), state)
    assert "unshaded part (crop)" in msg
    assert np.all(canvas[15, 5] < 80) and np.all(canvas[15, 30] == 200)  # dimmed margin, untouched centre
    state, _, _ = app_mod.on_click(state, 5, 15)
    state, _, _ = app_mod.on_new_track(state)
    state, _, msg = app_mod.on_click(state, 30, 15)
    assert "Track #1 lies outside it" in msg and "#2 lies" not in msg
    state, canvas, msg = app_mod.on_fit("pad", state)
    assert "outside" not in msg and "unshaded" not in msg and np.all(canvas[15, 12] == 200)
    state, _, _ = app_mod.on_upload(np.full((30, 60, 3), 200, np.uint8), state)
    assert state["fit"] == "pad" and state["tracks"] == [[]]  # a new image keeps the fit
    with pytest.raises(UserError, match="fit must be one of"):
        app_mod.on_fit("zoom", state)

    torch.manual_seed(0)
    pipe = Pipeline(DragNUWA(get_preset("tiny")))
    image = np.full((30, 60, 3), 200, np.uint8)
    tracks = {"width": 60, "height": 30, "tracks": [[[30, 15], [40, 15]]]}
    firsts = {fit: read_video(app_mod.run_generation(pipe, image, tracks, "", 4, 1, 0, 1.0, 1.0, fit=fit)[0])[0][0]
              for fit in ("crop", "pad")}
    assert firsts["crop"][2, 16].min() > 150  # the crop fills the frame with the image
    assert firsts["pad"][2, 16].max() < 40 and firsts["pad"][16, 16].min() > 150  # pad: bars above and below


def test_a_video_gives_its_first_frame_and_its_own_motion(sliding_video):
    """A 160x96 texture sliding 3 px right and 1 px down per frame: the tracks read off it at half
    size (``max_side``) are scaled back, so each moves by exactly that in the first frame's pixels."""
    from dragnuwa.trajectory import tracks_from_video

    first, ts = tracks_from_video(sliding_video, max_tracks=6, max_side=80)
    assert first.shape == (96, 160, 3) and (ts.width, ts.height) == (160, 96)
    steps = np.diff(np.stack(ts.tracks), axis=1)  # [N, T-1, 2]
    assert len(ts.tracks) >= 3 and steps.shape[1] == 5
    assert np.abs(steps.mean(axis=(0, 1)) - [3.0, 1.0]).max() < 0.2, steps.mean(axis=(0, 1))
    # The UI handler: the first frame becomes the image, the tracks its drags, a new track comes next.
    state = app_mod._empty_state({"model_size": (32, 32)})
    state, canvas, msg = app_mod.on_video_upload(str(sliding_video), state, max_frames=4)
    assert canvas.shape == (96, 160, 3) and state["tracks"][-1] == [] and len(state["tracks"]) >= 2
    assert all(len(t) == 4 for t in state["tracks"][:-1]) and "first 4 frames" in msg


def test_the_ui_variants_are_side_by_side_and_each_downloadable():
    """Variants 2 from seed 3: the video and overlay show seeds 3 and 4 side by side, each is also a
    download of its own, and one progress bar runs over both variants' steps."""
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA
    from dragnuwa.pipeline import Pipeline
    from dragnuwa.video import read_video

    torch.manual_seed(0)
    pipe = Pipeline(DragNUWA(get_preset("tiny")))
    image = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    tracks = {"width": 32, "height": 32, "tracks": [[[10, 10], [20, 12]]]}
    ticks = []
    paths = app_mod.run_generation(pipe, image, tracks, "", 4, 3, 3, 1.0, 1.0, upscale=2, variants=2,
                                   progress=lambda i, n: ticks.append((i, n)))
    video, overlay, _, gif, *singles = paths
    assert [p.rsplit("/", 1)[-1] for p in singles] == ["dragnuwa_seed3.mp4", "dragnuwa_seed4.mp4"]
    grid = read_video(video)[0]
    assert grid.shape == (4, 64, 2 * 64 + 2, 3) and read_video(overlay)[0].shape == grid.shape
    assert read_video(gif)[0].shape == grid.shape
    one, two = (read_video(p)[0].astype(int) for p in singles)
    assert np.abs(one - two).mean() > 5  # two seeds, two videos
    assert np.abs(grid[:, 24:, 66:].astype(int) - two[:, 24:]).mean() < np.abs(grid[:, 24:, 66:] - one[:, 24:]).mean()
    assert ticks[-1][0] == ticks[-1][1] and [t[0] for t in ticks] == sorted(t[0] for t in ticks)
    assert len({n for _, n in ticks}) == 1  # one total for the whole run
    with pytest.raises(UserError, match="variants must be a whole number from 1 to 16"):
        app_mod.run_generation(pipe, image, tracks, "", 4, 1, 0, 1.0, 1.0, variants=0)
