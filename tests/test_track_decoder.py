"""The track decoder (models/track_decoder.py): where the tracks are, as the decoder's second input."""

import numpy as np
import pytest
import torch

from dragnuwa.models.config import get_preset
from dragnuwa.models.track_decoder import DISPLACEMENT_SCALE, PLANES, track_planes
from dragnuwa.tracks_io import TrackSet


def test_track_planes_mark_where_each_point_is_and_where_it_started():
    track = np.array([[[10.5, 20.5], [20.5, 22.5], [30.5, 24.5]]], np.float32)  # pixel centres
    planes = track_planes(track, 64, 64)
    assert planes.shape == (3, PLANES, 64, 64) and planes.dtype == np.float32
    for t, (x, y) in enumerate(track[0].astype(int)):
        assert np.unravel_index(planes[t, 0].argmax(), (64, 64)) == (y, x)  # the point in frame t
        assert planes[t, 0, y, x] == pytest.approx(1.0)
        assert np.unravel_index(planes[t, 3].argmax(), (64, 64)) == (20, 10)  # where it started
        shift = (track[0, t] - track[0, 0]) / DISPLACEMENT_SCALE
        assert planes[t, 1:3, y, x] == pytest.approx(shift)  # its displacement since frame 0
        assert planes[t, 4:6, 20, 10] == pytest.approx(shift)
    assert planes[1, 0, 22, 40] < 1e-6  # a bump is local (1.5 px at 64 px)
    # The spread and the displacement scale with the frame: the same track at twice the size.
    big = track_planes(track * 2, 128, 128)
    assert big[2, 0].sum() == pytest.approx(4 * planes[2, 0].sum(), rel=1e-3)  # twice as wide
    assert big[2, 1].sum() == pytest.approx(4 * planes[2, 1].sum(), rel=1e-3)  # the same shift, in its units
    assert not track_planes(np.zeros((0, 5, 2)), 32, 32).any()  # no tracks, no marks
    assert track_planes(np.zeros((0, 5, 2)), 32, 32).shape == (5, PLANES, 32, 32)


def _track_model(seed=0, live=True):
    """A tiny model with a track decoder; ``live``: its output convolutions (zero at
    initialisation) made non-zero, so that the tracks change what is decoded."""
    from dragnuwa.models.dragnuwa import DragNUWA

    torch.manual_seed(seed)
    cfg = get_preset("tiny")
    cfg.autoencoder.tracks = True
    model = DragNUWA(cfg).eval()
    if live:
        for conv in model.autoencoder.track_injection.out:
            torch.nn.init.normal_(conv.weight, std=0.5)
    return model


def test_a_track_decoder_starts_as_the_plain_one_and_reads_each_frames_planes():
    from dragnuwa.models.autoencoder import Autoencoder

    torch.manual_seed(0)
    plain = Autoencoder(get_preset("tiny").autoencoder).eval()
    fresh = _track_model(live=False).autoencoder
    fresh.load_state_dict(plain.state_dict(), strict=False)
    z = torch.randn(2, 3, 4, 8, 8)
    tracks = np.array([[[4.0, 4.0], [12.0, 8.0], [20.0, 12.0]]], np.float32)
    planes = torch.from_numpy(track_planes(tracks, 32, 32))[None].expand(2, -1, -1, -1, -1)
    with torch.no_grad():
        assert torch.equal(fresh.decode(z, planes=planes), plain.decode(z))  # a fine-tune starts where run 10 is
        live = _track_model().autoencoder
        video = live.decode(z, planes=planes)
        frames = live.decode(z.flatten(0, 1), planes=planes.flatten(0, 1)).unflatten(0, (2, 3))
        assert torch.allclose(video, frames, atol=1e-5)  # frame by frame, each with its own planes
        none = live.decode(z)
        assert torch.equal(none, live.decode(z, planes=torch.zeros_like(planes)))  # no tracks = zero planes
        assert (video - none).abs().mean() > 0.01  # the tracks are read
    with pytest.raises(ValueError, match="track planes"):
        live.decode(z, planes=planes[:1])


def test_a_track_model_file_round_trips_and_replaces_a_plain_autoencoder(tmp_path):
    """What `scripts/export_model.py --autoencoder` does: the video model takes the decoder's kind."""
    from dragnuwa.models.dragnuwa import DragNUWA, load_model, save_model
    from dragnuwa.training.checkpoint import load_weights_into

    model = _track_model()
    source = save_model(tmp_path / "tracks.safetensors", model)
    back = load_model(source)
    assert back.cfg.autoencoder.tracks
    torch.manual_seed(1)
    plain = DragNUWA(get_preset("tiny"))
    load_weights_into(plain, source, prefix="autoencoder.")
    assert plain.cfg.autoencoder.tracks
    merged = load_model(save_model(tmp_path / "merged.safetensors", plain))
    z = torch.randn(1, 4, 4, 8, 8)
    planes = torch.rand(1, 4, PLANES, 32, 32)
    with torch.no_grad():
        want = model.autoencoder.decode(z, planes=planes)
        assert torch.allclose(back.autoencoder.decode(z, planes=planes), want, atol=1e-6)
        assert torch.allclose(merged.autoencoder.decode(z, planes=planes), want, atol=1e-6)


def test_generation_gives_the_decoder_the_tracks_unless_the_trajectory_is_dropped(monkeypatch):
    from dragnuwa.evaluate import autoencoder_round_trip
    from dragnuwa.pipeline import Pipeline

    model = _track_model()
    pipe = Pipeline(model)
    seen = []
    decode = model.autoencoder.decode
    monkeypatch.setattr(model.autoencoder, "decode",
                        lambda z, ref=None, planes=None: (seen.append(planes), decode(z, ref, planes))[1])
    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    ts = TrackSet(32, 32, [np.array([[8.0, 8.0], [20.0, 12.0]])])
    res = pipe.generate(img, ts, "a red circle", steps=2, show_progress=False)
    planes = seen[-1][0].numpy()
    assert planes.shape == (model.cfg.frames, PLANES, 32, 32)
    assert np.array_equal(planes, track_planes(res.tracks, 32, 32))  # the tracks at the model's size
    end = res.tracks[0, -1].astype(int)
    assert planes[-1, 0, end[1], end[0]] > 0.5  # the last frame marks where the drag ends
    pipe.generate(img, ts, "a red circle", steps=2, show_progress=False, drop=("traj",))
    assert seen[-1] is None  # the ablation without the trajectory takes it from the decoder too
    video = np.stack([img] * 4)
    tracks = np.repeat(np.array([[[8.0, 8.0]]], np.float32), 4, axis=1)
    autoencoder_round_trip(model.autoencoder)(video, tracks)  # the evaluation's yardsticks get the tracks
    assert np.array_equal(seen[-1][0].numpy(), track_planes(tracks, 32, 32))


def test_a_track_decoder_needs_sampled_pairs_to_train(tmp_path):
    from dragnuwa.errors import UserError
    from dragnuwa.training.config import AutoencoderTrainConfig, validate

    with pytest.raises(UserError, match="samples_from"):  # checked when the config is read
        validate(AutoencoderTrainConfig(model="tiny", steps=2, tracks=True, out_dir=str(tmp_path / "a")))
