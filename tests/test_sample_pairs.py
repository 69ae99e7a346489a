"""The decoder fine-tuned on the video model's own samples (training/sample_pairs.py)."""

import numpy as np
import pytest
import torch

from dragnuwa.errors import UserError


@pytest.fixture(scope="module")
def tiny_video_model(tmp_path_factory):
    """A `tiny` video model on a briefly trained autoencoder (a random one decodes nothing)."""
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA, load_model, save_model
    from dragnuwa.training.autoencoder import train_autoencoder
    from dragnuwa.training.config import AutoencoderTrainConfig

    root = tmp_path_factory.mktemp("pairs")
    torch.manual_seed(0)
    ae = train_autoencoder(AutoencoderTrainConfig(model="tiny", steps=40, batch_size=8, lr=2e-3, log_every=10,
                                                  ckpt_every=40, photo_fraction=0.0, out_dir=str(root / "ae")))
    model = DragNUWA(get_preset("tiny"))
    model.autoencoder.load_state_dict(load_model(ae).autoencoder.state_dict())
    model.cfg.autoencoder.scale = float(model.autoencoder.scale)
    return save_model(root / "video.safetensors", model)


def test_generation_returns_the_latents_it_decoded(tiny_video_model):
    from dragnuwa.pipeline import load_pipeline
    from dragnuwa.video import to_uint8

    pipe = load_pipeline(tiny_video_model)
    tracks = np.array([[[8.0, 8.0], [12, 10], [16, 12], [20, 14]]], np.float32)
    res = pipe.generate(np.full((32, 32, 3), 90, np.uint8), tracks, "a red circle", paste_first=False,
                        show_progress=False)
    assert res.latents.shape == (4, *pipe.model.latent_shape)
    with torch.no_grad():
        again = to_uint8(pipe.model.autoencoder.decode(res.latents[None])[0])
    assert np.array_equal(again, res.decoded)  # the frames as decoded, before detail restoration


def test_decoder_fine_tune_on_samples_decodes_them_closer_to_the_true_clips(tiny_video_model, tmp_path,
                                                                           monkeypatch):
    from dragnuwa.models.dragnuwa import load_model
    from dragnuwa.training import sample_pairs
    from dragnuwa.training.autoencoder import train_autoencoder
    from dragnuwa.training.config import AutoencoderTrainConfig

    def cfg(samples=True, out="run", moving_weight=0.0, tracks=False):
        return AutoencoderTrainConfig(model="tiny", steps=120, batch_size=8, lr=2e-3, log_every=20, ckpt_every=120,
                                      photo_fraction=0.0, init=str(tiny_video_model), decoder_only=True,
                                      samples_from=str(tiny_video_model) if samples else "", sample_clips=6,
                                      sample_steps=2, out_dir=str(tmp_path / out), moving_weight=moving_weight,
                                      tracks=tracks)

    tuned = train_autoencoder(cfg())
    pairs = torch.load(tmp_path / "run" / "sample_pairs.pt", weights_only=True)
    assert pairs["z"].shape[:2] == (6, 4) and pairs["x"].shape == (6, 4, 32, 32, 3)

    def pair_error(ae) -> float:
        z, x, _, _, _ = sample_pairs.pair_batch(pairs, 64, torch.Generator().manual_seed(1))
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(ae.decode(z), x))

    before, after = load_model(tiny_video_model).autoencoder, load_model(tuned).autoencoder
    control = load_model(train_autoencoder(cfg(samples=False, out="control"))).autoencoder  # frames only
    # The sampled latents now decode closer to the true clips, and not merely from more decoder training.
    assert pair_error(after) < 0.9 * pair_error(before)
    assert pair_error(after) < 0.9 * pair_error(control)
    assert all(torch.equal(a, b) for a, b in zip(before.encoder.state_dict().values(),
                                                 after.encoder.state_dict().values()))

    # Weighting what moves (run 9) decodes the moving pixels closer than the plain fit does.
    import shutil

    (tmp_path / "weighted").mkdir()
    shutil.copy(tmp_path / "run" / "sample_pairs.pt", tmp_path / "weighted")  # the same pairs, no resampling
    weighted = load_model(train_autoencoder(cfg(out="weighted", moving_weight=4.0))).autoencoder
    z, x, w, _, _ = sample_pairs.pair_batch(pairs, 256, torch.Generator().manual_seed(2), moving_weight=1.0)
    moving = w.expand_as(x) > 1

    def moving_error(ae) -> float:
        with torch.no_grad():
            return float((ae.decode(z) - x)[moving].square().mean())

    assert moving.float().mean() > 0.02
    assert moving_error(weighted) < 0.95 * moving_error(after), (moving_error(weighted), moving_error(after))

    # A track decoder (run 11), fitted the same way, decodes what moves closer given its scenes'
    # tracks than the weighted fit does, and closer than given another scene's tracks.
    (tmp_path / "tracks").mkdir()
    shutil.copy(tmp_path / "run" / "sample_pairs.pt", tmp_path / "tracks")
    tracked = load_model(train_autoencoder(cfg(out="tracks", moving_weight=4.0, tracks=True))).autoencoder
    assert tracked.cfg.tracks
    data = {**pairs, "tracks": sample_pairs.scene_tracks(6, 200_000, 4, (32, 32))}
    z, x, w, _, planes = sample_pairs.pair_batch(data, 256, torch.Generator().manual_seed(2), moving_weight=1.0)
    with torch.no_grad():
        own = float((tracked.decode(z, planes=planes) - x)[moving].square().mean())
        other = float((tracked.decode(z, planes=planes.roll(1, 0)) - x)[moving].square().mean())
    print(f"moving-pixel MSE: weighted {moving_error(weighted):.4f}, track decoder {own:.4f} ({other:.4f} "
          "with other frames' tracks)")
    assert own < 0.95 * moving_error(weighted) and own < 0.95 * other

    with pytest.raises(UserError, match="decoder_only"):
        from dragnuwa.training.config import validate

        validate(AutoencoderTrainConfig(samples_from="x.safetensors"))
    with pytest.raises(UserError, match="training scenes"):  # never the evaluation's scenes
        sample_pairs.build_sample_pairs(str(tiny_video_model), 2, 899_999, 1)
    # A second run with the same settings reads the cached pairs instead of sampling again.
    monkeypatch.setattr(sample_pairs, "build_sample_pairs", lambda *a, **k: pytest.fail("pairs rebuilt"))
    train_autoencoder(cfg())


def test_a_cache_of_fewer_pairs_is_extended_to_what_sampling_all_at_once_gives(tiny_video_model, tmp_path,
                                                                              monkeypatch):
    from dragnuwa.training import sample_pairs

    whole = sample_pairs.build_sample_pairs(str(tiny_video_model), 3, 0, 1)
    cache = tmp_path / "pairs.pt"
    first = sample_pairs.load_or_build_sample_pairs(cache, str(tiny_video_model), 2, 0, 1)
    assert first["z"].shape[0] == 2
    extended = sample_pairs.load_or_build_sample_pairs(cache, str(tiny_video_model), 3, 0, 1)
    # The third scene, sampled in a second call, is the one a single call makes (its index sets its seed).
    assert torch.equal(extended["z"], whole["z"]) and torch.equal(extended["x"], whole["x"])
    monkeypatch.setattr(sample_pairs, "build_sample_pairs", lambda *a, **k: pytest.fail("pairs rebuilt"))
    cut = sample_pairs.load_or_build_sample_pairs(cache, str(tiny_video_model), 2, 0, 1)
    assert torch.equal(cut["z"], whole["z"][:2])
    monkeypatch.undo()
    other = sample_pairs.load_or_build_sample_pairs(cache, str(tiny_video_model), 2, 0, 2)  # other steps: afresh
    assert other["z"].shape[0] == 2 and not torch.equal(other["z"], whole["z"][:2])


def test_moving_mask_covers_the_moved_object_and_nothing_else():
    from dragnuwa.models.autoencoder import reconstruction_loss
    from dragnuwa.training.sample_pairs import moving_mask

    first = torch.full((1, 3, 32, 32), -0.5)
    first[..., 10:14, 4:8] = 0.8  # a 4x4 square ...
    moved = torch.full((1, 3, 32, 32), -0.5)
    moved[..., 10:14, 20:24] = 0.8  # ... 16 px to the right
    moved[..., 28:, :] += 0.05  # a faint change (noise, a colour shift) below the threshold
    mask = moving_mask(moved, first)[0, 0]
    # Both places of the square, grown by 2 px: rows 8..15, columns 2..9 and 18..25.
    expected = torch.zeros(32, 32)
    expected[8:16, 2:10] = expected[8:16, 18:26] = 1
    assert torch.equal(mask, expected)
    # Weight 1 everywhere is the plain loss; a weight on the mask counts the error there more.
    recon = moved + 0.1 * torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    recon[..., 10:14, 20:24] = -0.5  # the moved square missing
    plain = reconstruction_loss(recon, moved)
    assert torch.allclose(reconstruction_loss(recon, moved, torch.ones(1, 1, 32, 32)), plain)
    assert reconstruction_loss(recon, moved, 1 + 4 * mask[None, None]) > 1.5 * plain  # 1.79x here


def test_moving_weight_needs_sample_pairs_and_is_not_negative():
    from dragnuwa.training.config import AutoencoderTrainConfig, validate

    with pytest.raises(UserError, match="needs samples_from"):
        validate(AutoencoderTrainConfig(moving_weight=4.0))
    with pytest.raises(UserError, match="moving_weight must be >= 0"):
        validate(AutoencoderTrainConfig(samples_from="m.safetensors", decoder_only=True, moving_weight=-1.0))
    validate(AutoencoderTrainConfig(samples_from="m.safetensors", decoder_only=True, moving_weight=4.0))
