"""DragNUWASVDPipeline on tiny random Stable Video Diffusion parts (offline, CPU, seconds)."""

import math
import os

import numpy as np
import pytest
import torch

from dragnuwa.errors import UserError
from dragnuwa.svd.pipeline import DragNUWASVDPipeline, fit_image, load_svd_pipeline
from dragnuwa.svd.testing import (make_tiny_dragnuwa, make_tiny_svd, svd_scheduler, tiny_pipeline,
                                  tiny_unet)

W, H, T = 128, 64, 4
TRACKS = [[[20, 20], [100, 40]], [[64, 50]]]
KW = dict(width=W, height=H, num_frames=T, num_inference_steps=2)


def _image(seed=0):
    return (np.random.default_rng(seed).random((H, W, 3)) * 255).astype(np.uint8)


def _run(pipe, seed=0, **kw):
    args = {**KW, "tracks": TRACKS, **kw}
    return pipe(_image(), generator=torch.Generator().manual_seed(seed), **args)


@pytest.fixture(scope="module")
def pipe():
    p = tiny_pipeline()
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def reference(pipe):
    """The tiny pipeline's latents for the default inputs."""
    return _run(pipe, output_type="latent").frames


def _same(latents, reference):
    # Loaded weights are bit-identical; only BLAS rounding may differ (~1e-5 here).
    torch.testing.assert_close(latents, reference, atol=1e-3, rtol=0)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("svd")
    return make_tiny_dragnuwa(root / "dragnuwa"), make_tiny_svd(root / "svd")


def test_generates_finite_uint8_frames_reproducibly(pipe):
    out = _run(pipe)
    assert out.frames.shape == (1, T, H, W, 3) and out.frames.dtype == np.uint8
    assert out.flow.shape == (T, 2, H, W) and not np.any(out.flow[0])
    assert out.frames.std() > 1.0                   # not a constant image
    again = _run(pipe)
    np.testing.assert_array_equal(out.frames, again.frames)
    other = _run(pipe, seed=1)
    assert np.abs(other.frames.astype(int) - out.frames).mean() > 0.5


def test_flow_changes_the_output(pipe, reference):
    with_flow = reference
    # A torch flow and numpy sizes are accepted too (what the front door passes).
    no_flow = _run(pipe, tracks=None, flow=torch.zeros(T, 2, H, W), output_type="latent",
                   width=np.int64(W)).frames
    rel = (with_flow - no_flow).norm() / no_flow.norm()
    assert rel > 1e-3, float(rel)


def test_flow_features_once_per_video_and_official_conditioning(pipe, monkeypatch):
    calls, seen = [], []
    encode = pipe.unet.encode_flow
    monkeypatch.setattr(pipe.unet, "encode_flow", lambda f: calls.append(f.shape) or encode(f))
    hook = pipe.unet.register_forward_hook(
        lambda m, args, kwargs, out: seen.append((args, kwargs)), with_kwargs=True)
    try:
        _run(pipe, num_inference_steps=3)
    finally:
        hook.remove()
    assert calls == [(1, T, 2, H, W)]                # once, batch 1, for 3 steps x 2 halves
    assert len(seen) == 3
    (sample, t), kw = seen[0]
    assert sample.shape == (2, T, 8, H // 8, W // 8)
    # Unconditional half: zero CLIP embedding and zero image latent (force_uc_zero_embeddings).
    assert not torch.any(kw["encoder_hidden_states"][0]) and torch.any(kw["encoder_hidden_states"][1])
    assert not torch.any(sample[0, :, 4:]) and torch.any(sample[1, :, 4:])
    # The image latent is the same on every frame.
    assert torch.equal(sample[1, 0, 4:], sample[1, -1, 4:])
    # (fps id, motion bucket id, cond aug) passed as is: the demo's 4, 4, 0.02.
    np.testing.assert_allclose(kw["added_time_ids"].numpy(), [[4, 4, 0.02]] * 2, rtol=1e-6)
    # The first step is at sigma_max = 700: c_noise = 0.25 ln 700, input scaled by c_in.
    assert float(t) == pytest.approx(0.25 * math.log(700.0), rel=1e-5)
    assert kw["flow_features"] is not None


def test_a_separate_trajectory_scale(pipe, reference, monkeypatch):
    """traj_guidance_scale (combine_guidance's s_traj): 1 is the official guidance, bit for bit; another
    value adds a pass with a zero flow, whose features come from the same single encode_flow call."""
    same = _run(pipe, output_type="latent", traj_guidance_scale=1.0).frames
    assert torch.equal(same, reference)
    calls = []
    encode = pipe.unet.encode_flow
    monkeypatch.setattr(pipe.unet, "encode_flow", lambda f: calls.append(f.clone()) or encode(f))
    stronger = _run(pipe, output_type="latent", traj_guidance_scale=3.0).frames
    assert len(calls) == 1 and calls[0].shape == (2, T, 2, H, W)
    assert torch.any(calls[0][0]) and not torch.any(calls[0][1])
    rel = float((stronger - reference).norm() / reference.norm())
    assert rel > 1e-3, rel
    # With no motion at all the pass without the trajectory is the conditional pass: the scale then
    # changes nothing (up to the bigger batch's rounding).
    still = dict(tracks=None, flow=np.zeros((T, 2, H, W), np.float32), output_type="latent")
    torch.testing.assert_close(_run(pipe, traj_guidance_scale=3.0, **still).frames,
                               _run(pipe, **still).frames, atol=1e-4, rtol=0)


def test_scheduler_is_the_official_edm_euler():
    s = svd_scheduler()
    s.set_timesteps(25)
    n, rho, lo, hi = 25, 7.0, 0.002, 700.0
    ramp = np.linspace(0, 1, n)
    edm = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    np.testing.assert_allclose(s.sigmas.numpy(), np.append(edm, 0.0), rtol=1e-5)
    assert float(s.init_noise_sigma) == pytest.approx(math.sqrt(1 + hi ** 2))
    np.testing.assert_allclose(s.timesteps.numpy(), 0.25 * np.log(edm), rtol=1e-5)
    assert s.config.prediction_type == "v_prediction"


def test_no_guidance_runs_one_half(pipe, monkeypatch):
    shapes = []
    hook = pipe.unet.register_forward_hook(lambda m, a, o: shapes.append(a[0].shape[0]))
    try:
        _run(pipe, min_guidance_scale=1.0, max_guidance_scale=1.0)
    finally:
        hook.remove()
    assert shapes == [1, 1]


def test_save_and_load_round_trip(pipe, reference, tmp_path):
    pipe.save_pretrained(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "unet" / "config.json").is_file()
    loaded = DragNUWASVDPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.unet).__name__ == "DragNUWASVDUNet"
    _same(_run(loaded, output_type="latent").frames, reference)


def test_load_svd_pipeline_from_folders(folders, reference):
    model, svd = folders
    loaded = load_svd_pipeline(model, svd=svd)
    loaded.set_progress_bar_config(disable=True)
    # The same seeds build the same tiny parts: the folders give the in-memory pipeline's output.
    _same(_run(loaded, output_type="latent").frames, reference)
    procs = {type(p).__name__ for m in (loaded.unet, loaded.vae) for p in m.attn_processors.values()}
    assert procs == {"AttnProcessor2_0"}             # SDPA everywhere
    half = load_svd_pipeline(model, svd=svd, torch_dtype="bf16")
    assert half.unet.dtype == torch.bfloat16 and half.vae.dtype == torch.bfloat16


def test_bf16_generation(folders):
    model, svd = folders
    p = load_svd_pipeline(model, svd=svd, torch_dtype=torch.bfloat16)
    p.set_progress_bar_config(disable=True)
    frames = _run(p, num_inference_steps=1).frames
    assert frames.shape == (1, T, H, W, 3) and frames.std() > 1.0


def test_model_cpu_offload_hooks_run_encode_flow(folders):
    model, svd = folders
    p = load_svd_pipeline(model, svd=svd)
    p.set_progress_bar_config(disable=True)
    # No GPU here: diffusers' offload onto "cpu" still installs the accelerate hooks, which the
    # pipeline must trigger for unet.encode_flow (not a forward).
    p.enable_model_cpu_offload(device="cpu")
    assert getattr(p.unet, "_hf_hook", None) is not None
    out = _run(p)
    assert out.frames.shape == (1, T, H, W, 3)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="GPU"):
            load_svd_pipeline(model, svd=svd, offload=True)


def _one_line(err):
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


def test_missing_svd_folder_is_one_line(folders, tmp_path):
    model, svd = folders
    with pytest.raises(UserError) as err:
        load_svd_pipeline(model, svd=tmp_path / "no_such_svd")
    msg = _one_line(err)
    assert "stabilityai/stable-video-diffusion-img2vid" in msg and "--svd" in msg
    partial = tmp_path / "partial"
    (partial / "vae").mkdir(parents=True)
    with pytest.raises(UserError, match="missing image_encoder/, feature_extractor/, scheduler/"):
        load_svd_pipeline(model, svd=partial)
    with pytest.raises(UserError, match="--svd"):
        load_svd_pipeline(model, svd=None)
    with pytest.raises(UserError, match="dragnuwa convert"):
        load_svd_pipeline(tmp_path / "no_model", svd=svd)
    with pytest.raises(UserError, match="not a converted"):
        load_svd_pipeline(svd, svd=svd)


def test_unreachable_hub_id_is_one_line(folders, monkeypatch):
    model, _ = folders
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        load_svd_pipeline(model, svd="nobody-here/no-such-svd-repo")
    msg = _one_line(err)
    assert "nobody-here/no-such-svd-repo" in msg and "--svd" in msg
    with pytest.raises(UserError) as err:
        load_svd_pipeline("nobody-here/no-such-dragnuwa", svd="nobody-here/no-such-svd-repo")
    assert "dragnuwa convert" in _one_line(err)


@pytest.mark.parametrize("kw, msg", [
    (dict(width=100), "multiple of 64"), (dict(height=72), "multiple of 64"),
    (dict(num_frames=1), "num_frames"), (dict(decode_chunk_size=0), "decode_chunk_size"),
    (dict(output_type="gif"), "output_type"),
    (dict(tracks=None, flow=np.zeros((T, 2, 32, 32), np.float32)), "flow has shape"),
    (dict(tracks=None), "either flow or tracks"),
    (dict(tracks=[[[500, 10]]]), "outside"),
])
def test_bad_inputs_are_user_errors(pipe, kw, msg):
    with pytest.raises(UserError, match=msg):
        _run(pipe, **kw)


def test_fit_image_covers_and_centre_crops():
    img = np.zeros((100, 400, 3), np.uint8)
    img[:, 150:250] = 255                             # a white band in the middle
    fitted = np.asarray(fit_image(img, 128, 64))
    assert fitted.shape == (64, 128, 3)
    # 400x100 -> 256x64, crop x 64..192: the band (96..160 after scaling) is centred in the crop.
    assert fitted[:, 64].mean() > 200 and fitted[:, 5].mean() < 10 and fitted[:, 122].mean() < 10


def test_tiny_parts_are_deterministic():
    a, b = tiny_unet(seed=3), tiny_unet(seed=3)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
