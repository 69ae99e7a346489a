"""The reference decoder (models/reference.py): the first frame as the decoder's second input."""

import numpy as np
import pytest
import torch

from dragnuwa.models.config import get_preset
from dragnuwa.tracks_io import TrackSet


def _reference_model(seed=0, live=True):
    """A tiny model with a reference decoder; ``live``: its attention's output (zero at
    initialisation) made non-zero, so that the reference changes what is decoded."""
    from dragnuwa.models.dragnuwa import DragNUWA

    torch.manual_seed(seed)
    cfg = get_preset("tiny")
    cfg.autoencoder.reference = True
    model = DragNUWA(cfg).eval()
    if live:
        for attention in model.autoencoder.reference_attention:
            torch.nn.init.normal_(attention.out.weight, std=0.5)
    return model


def test_a_reference_decoder_starts_as_the_plain_one_and_decodes_videos_frame_by_frame():
    from dragnuwa.models.autoencoder import Autoencoder

    plain_cfg = get_preset("tiny").autoencoder
    torch.manual_seed(0)
    plain = Autoencoder(plain_cfg).eval()
    ref = _reference_model(live=False).autoencoder
    ref.load_state_dict(plain.state_dict(), strict=False)  # the plain weights; attention stays zero
    z, first = torch.randn(2, 3, 4, 8, 8), torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(ref.decode(z, first), plain.decode(z))  # a fine-tune starts where the plain one is
        live = _reference_model(live=True).autoencoder
        video = live.decode(z, first)  # [B, T] latents: one first frame per video
        frames = live.decode(z.flatten(0, 1), first.repeat_interleave(3, 0)).unflatten(0, (2, 3))
        assert torch.allclose(video, frames, atol=1e-5)
        assert (video - live.decode(z)).abs().mean() > 0.01  # the reference is used
        assert (video - live.decode(z, first.flip(0))).abs().mean() > 0.01  # ... each video its own
    with pytest.raises(ValueError, match="reference frames"):
        live.decode(z, first[:1])
    # A new reference decoder's reference encoder starts as the encoder's trunk (its lower-resolution features).
    ref.reference_encoder.copy_encoder(ref.encoder)
    with torch.no_grad():
        low, mid = ref.reference_encoder(first)
        assert torch.allclose(mid, ref.encoder[:4](first)) and torch.allclose(low, ref.encoder[:6](first))


def test_a_reference_model_file_round_trips(tmp_path):
    from dragnuwa.models.dragnuwa import load_model, save_model

    model = _reference_model()
    back = load_model(save_model(tmp_path / "ref.safetensors", model))
    assert back.cfg.autoencoder.reference
    z, first = torch.randn(1, 4, 4, 8, 8), torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(back.autoencoder.decode(z, first), model.autoencoder.decode(z, first), atol=1e-6)


def test_generation_gives_the_decoder_the_image_unless_the_image_is_dropped(monkeypatch):
    from dragnuwa.evaluate import autoencoder_round_trip
    from dragnuwa.pipeline import Pipeline
    from dragnuwa.video import to_tensor

    model = _reference_model()
    pipe = Pipeline(model)
    seen = []
    decode = model.autoencoder.decode
    monkeypatch.setattr(model.autoencoder, "decode", lambda z, ref=None, planes=None: (seen.append(ref), decode(z, ref))[1])
    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    ts = TrackSet(32, 32, [np.array([[8.0, 8.0], [20.0, 12.0]])])
    res = pipe.generate(img, ts, "a red circle", steps=2, show_progress=False)
    assert torch.equal(seen[-1], to_tensor(res.image)[None])
    pipe.generate(img, ts, "a red circle", steps=2, show_progress=False, drop=("image",))
    assert seen[-1] is None  # the ablation without the image takes it from the decoder too
    video = np.stack([img] * 4)
    autoencoder_round_trip(model.autoencoder)(video)  # the evaluation's yardstick
    assert torch.allclose(seen[-1], to_tensor(video)[:1])


def test_decoder_only_training_of_a_reference_decoder_learns_to_use_the_first_frame(tmp_path):
    """Fine-tuned from a plain autoencoder with the encoder frozen, the reference decoder ends
    closer to held-out frames given their clip's own first frame than given another clip's."""
    from dragnuwa.data.synthetic import render_clip
    from dragnuwa.models.dragnuwa import load_model
    from dragnuwa.training.autoencoder import HELD_OUT_SEED, train_autoencoder
    from dragnuwa.training.config import AutoencoderTrainConfig
    from dragnuwa.video import to_tensor

    torch.manual_seed(0)
    common = dict(model="tiny", batch_size=8, lr=2e-3, log_every=10, photo_fraction=0.0)
    plain = train_autoencoder(AutoencoderTrainConfig(steps=40, ckpt_every=40, out_dir=str(tmp_path / "a"), **common))
    tuned = train_autoencoder(AutoencoderTrainConfig(steps=STEPS, ckpt_every=STEPS, init=str(plain), decoder_only=True,
                                                     reference=True, out_dir=str(tmp_path / "b"), **common))
    a, b = load_model(plain).autoencoder, load_model(tuned).autoencoder
    assert b.cfg.reference and not a.cfg.reference
    for (name, pa), pb in zip(a.encoder.state_dict().items(), b.encoder.state_dict().values()):
        assert torch.equal(pa, pb), name  # the latent space is kept
    clips = [render_clip(HELD_OUT_SEED + i, 4, (32, 32)).frames for i in range(32)]
    frames, first = (to_tensor(np.stack([c[k] for c in clips])) for k in (3, 0))
    with torch.no_grad():
        z = b.encode(frames)
        own = float((b.decode(z, first) - frames).square().mean())
        other = float((b.decode(z, first.roll(1, 0)) - frames).square().mean())
        before = float((a.decode(z) - frames).square().mean())
    print(f"MSE plain {before:.4f}, reference decoder with its own first frame {own:.4f}, another's {other:.4f}")
    assert own < 0.95 * before  # the fine-tune improved it
    assert own < 0.95 * other


STEPS = 80


def test_a_reference_autoencoder_replaces_a_plain_one_in_a_model(tmp_path):
    """What `scripts/export_model.py --autoencoder` does: the video model takes the decoder's kind."""
    from dragnuwa.models.dragnuwa import DragNUWA, load_model, save_model
    from dragnuwa.training.checkpoint import load_weights_into

    source = save_model(tmp_path / "ref.safetensors", _reference_model())
    torch.manual_seed(1)
    model = DragNUWA(get_preset("tiny"))
    load_weights_into(model, source, prefix="autoencoder.")
    assert model.cfg.autoencoder.reference
    back = load_model(save_model(tmp_path / "merged.safetensors", model))
    z, first = torch.randn(1, 4, 4, 8, 8), torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        want = load_model(source).autoencoder.decode(z, first)
        assert torch.allclose(back.autoencoder.decode(z, first), want, atol=1e-6)
