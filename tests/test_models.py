import os

import pytest
import torch

from dragnuwa.errors import UserError
from dragnuwa.models.config import config_from_dict, config_to_dict, get_preset
from dragnuwa.models.dragnuwa import Cond, DragNUWA, load_model, save_model
from dragnuwa.models.trajectory_encoder import cumulative_displacement


def _cond(model, b=2, t=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    t = t or cfg.frames
    C, h, w = model.latent_shape
    return Cond(torch.randn(b, 6, 384, generator=g), torch.ones(b, 6, dtype=torch.bool),
                torch.randn(b, C, h, w, generator=g), torch.randn(b, t, 2, cfg.height, cfg.width, generator=g) * 3)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DragNUWA(get_preset("tiny")).eval()


def _randomise(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("t", [2, 4, 7])
def test_shapes_for_several_frame_counts(model, t):
    C, h, w = model.latent_shape
    x = torch.randn(2, t, C, h, w)
    assert model(x, torch.zeros(2), _cond(model, t=t)).shape == x.shape


def test_untrained_trajectory_branch_leaves_output_unchanged():
    torch.manual_seed(0)
    m = DragNUWA(get_preset("tiny")).eval()
    _randomise(m.unet)  # a "trained" UNet ...
    with torch.no_grad():  # ... whose trajectory gamma/beta are still zero-initialised
        for name, p in m.unet.named_parameters():
            if ".gamma." in name or ".beta." in name:
                p.zero_()
        m.unet.conv_in.weight[:, 2 * m.latent_shape[0]:] = 0  # and its zero-init trajectory input channels
    C, h, w = m.latent_shape
    x = torch.randn(2, 4, C, h, w)
    cond = _cond(m)
    zero_maps = Cond(cond.text, cond.text_mask, cond.image, torch.zeros_like(cond.maps))
    with torch.no_grad():
        a, b = m(x, torch.zeros(2), cond), m(x, torch.zeros(2), zero_maps)
        assert torch.equal(a, b)
        # Once gamma/beta are trained, the maps change the output.
        _randomise(m.unet, seed=2)
        a, b = m(x, torch.zeros(2), cond), m(x, torch.zeros(2), zero_maps)
    assert (a - b).abs().max() > 1e-3


def test_each_condition_changes_output_and_drop_zeroes_it():
    torch.manual_seed(0)
    m = DragNUWA(get_preset("tiny")).eval()
    _randomise(m.unet)
    _randomise(m.trajectory_encoder, seed=3)
    C, h, w = m.latent_shape
    x = torch.randn(2, 4, C, h, w)
    cond = _cond(m)
    on, off = torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool)
    with torch.no_grad():
        full = m(x, torch.zeros(2), cond)
        for keep in [(off, on, on), (on, off, on), (on, on, off)]:
            dropped = cond.drop(*keep)
            assert (m(x, torch.zeros(2), dropped) - full).abs().max() > 1e-4
    d = cond.drop(off, on, off)
    assert d.text.abs().max() == 0 and not d.text_mask.any() and d.maps.abs().max() == 0
    assert torch.equal(d.image, cond.image)


def test_save_load_round_trip(tmp_path, model):
    path = save_model(tmp_path / "m.safetensors", model)
    back = load_model(path)
    C, h, w = model.latent_shape
    x = torch.randn(1, 4, C, h, w)
    cond = _cond(model, b=1)
    with torch.no_grad():
        assert torch.equal(model(x, torch.ones(1), cond), back(x, torch.ones(1), cond))
    half = save_model(tmp_path / "h.safetensors", model, half=True)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    # safetensors replaces the temporary file it is given: the saved file still gets plain-open() mode.
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_bad_model_files(tmp_path, model):
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(UserError, match="corrupt"):
        load_model(tmp_path / "corrupt.safetensors")
    path = save_model(tmp_path / "m.safetensors", model)
    other = get_preset("tiny")
    other.unet.channels = (16, 48)
    with pytest.raises(UserError, match="does not match"):
        load_model(path, cfg=other)


def test_config_round_trip_and_errors():
    cfg = get_preset("small")
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(UserError, match="unknown key 'chanels'"):
        config_from_dict({"unet": {"chanels": [1]}})
    with pytest.raises(UserError, match="model.frames: expected int"):
        config_from_dict({"frames": "many"})
    with pytest.raises(UserError, match="unknown model preset"):
        get_preset("huge")


def test_autoencoder_overfits_procedural_frames():
    import numpy as np

    from dragnuwa.data.synthetic import render_clip
    from dragnuwa.models.autoencoder import Autoencoder, psnr, reconstruction_loss
    from dragnuwa.models.config import AutoencoderConfig
    from dragnuwa.video import to_tensor

    torch.manual_seed(0)
    frames = to_tensor(np.stack([render_clip(s, 2, (32, 32)).frames[0] for s in range(4)]))
    ae = Autoencoder(AutoencoderConfig(channels=(16, 32, 32), latent_channels=8))
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    start = psnr(ae(frames), frames)
    for _ in range(150):
        loss = reconstruction_loss(ae(frames), frames)
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = psnr(ae(frames), frames)
    assert end > start + 8 and end > 22, (start, end)


def test_text_encoder_tokens():
    from dragnuwa.models.text_encoder import shared_text_encoder

    enc = shared_text_encoder()
    tok, mask = enc.encode(["a red circle moves left", "a red circle moves left", "a blue square", ""])
    assert tok.shape[0] == 4 and tok.shape[2] == 384
    assert torch.equal(tok[0], tok[1]) and (tok[0] - tok[2]).abs().max() > 0.1
    assert tok[3].abs().max() == 0 and not mask[3].any() and mask[0].sum() > 3


def test_text_encoder_batches_new_prompts_and_bounds_its_cache():
    from dragnuwa.models.text_encoder import shared_text_encoder

    enc = shared_text_encoder()
    prompts = [f"a red circle moves {d}" for d in ("left", "right", "up", "down")] + [""]
    one_by_one = torch.cat([enc.encode([p])[0] for p in prompts])
    enc._cache.clear()
    batched, _ = enc.encode(prompts)  # one forward for the 4 new prompts
    assert (batched - one_by_one).abs().max() < 1e-5
    old = enc.cache_size
    try:
        enc.cache_size = 3  # training meets a new caption nearly every sample: the cache must not grow
        enc.encode([f"a shape number {i}" for i in range(10)])
        assert len(enc._cache) == 3 and "a shape number 9" in enc._cache
    finally:
        enc.cache_size = old


def test_cumulative_displacement_composes_dense_flow_and_follows_a_track():
    import numpy as np

    from dragnuwa.trajectory import tracks_to_maps

    # Dense: a uniform 1.5 px/frame shift composes to 1.5 t everywhere it stays inside the image.
    maps = torch.zeros(1, 5, 2, 32, 32)
    maps[:, 1:, 0] = 1.5
    d = cumulative_displacement(maps)
    assert torch.allclose(d[0, :, 0, :, :20], torch.arange(5.0)[:, None, None] * 1.5)
    assert d[0, :, 1].abs().max() == 0
    # Sparse: at a Gaussian-spread track's first pixel, D_t is the track's displacement so far,
    # although each step is stored where the point was in the previous frame.
    track = np.array([[[10.5, 20.5], [13.5, 21.5], [17.5, 23.5], [20.5, 27.5], [19.5, 30.5]]])
    d = cumulative_displacement(torch.from_numpy(tracks_to_maps(track, 40, 40))[None])
    assert torch.allclose(d[0, :, :, 20, 10], torch.from_numpy(track[0] - track[0, 0]).float(), atol=1e-4)


def test_a_model_without_cumulative_input_loads_into_one_with_it_unchanged(tmp_path):
    from dragnuwa.training.checkpoint import load_weights_into

    torch.manual_seed(0)
    cfg = get_preset("tiny")
    cfg.traj_cumulative = False
    old = DragNUWA(cfg).eval()
    _randomise(old)
    save_model(tmp_path / "old.safetensors", old)
    new = DragNUWA(get_preset("tiny")).eval()
    assert new.cfg.traj_cumulative
    load_weights_into(new, tmp_path / "old.safetensors")  # extra input channels start at zero
    C, h, w = old.latent_shape
    x = torch.randn(2, 4, C, h, w)
    cond = _cond(old)
    with torch.no_grad():
        assert torch.allclose(old(x, torch.zeros(2), cond), new(x, torch.zeros(2), cond), atol=1e-6)
        # ... and an old file still loads as the architecture it was saved with.
        assert not load_model(tmp_path / "old.safetensors").cfg.traj_cumulative


def test_trajectory_features_are_reused_across_sampler_steps_only_for_the_same_maps():
    torch.manual_seed(0)
    model = DragNUWA(get_preset("tiny")).eval()
    with torch.no_grad():  # zero-initialised output layers would make every output 0
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    C, h, w = model.latent_shape
    cond = _cond(model, b=1)
    x, s = torch.randn(1, model.cfg.frames, C, h, w), torch.ones(1)

    def fresh():
        model._traj_memo = None
        return model(x, s, cond)

    with torch.no_grad():
        first = fresh()
        assert model._traj_memo is not None and torch.equal(model(x, s, cond), first)  # reused: same output
        cond.maps.add_(1.0)  # edited in place: must be recomputed
        edited = model(x, s, cond)
        assert (edited - first).abs().max() > 1e-4 and torch.equal(edited, fresh())
        other = Cond(cond.text, cond.text_mask, cond.image, cond.maps.clone() * 0)  # a new maps tensor
        assert torch.equal(model(x, s, other), model(x, s, other.drop(*(torch.ones(1, dtype=torch.bool),) * 3)))
        assert (model(x, s, other) - edited).abs().max() > 1e-4
    model(x, s, cond)  # training (grad on) never keeps a memo
    assert model._traj_memo is None
