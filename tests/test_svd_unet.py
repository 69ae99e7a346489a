"""DragNUWASVDUNet against the official DragNUWA 1.5 forward (shared/nuwa15 fixtures, float64)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dragnuwa.svd.unet import DragNUWASVDUNet, diffusers_config_from_official

NUWA15 = Path(__file__).resolve().parents[2] / "shared" / "nuwa15"
needs_fixtures = pytest.mark.skipif(not (NUWA15 / "tiny_official.safetensors").is_file(),
                                    reason=f"the official DragNUWA 1.5 fixtures are not at {NUWA15}")


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """The tiny models run on one thread (conftest.one_torch_thread)."""


def rel_max(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the stricter of the two relative measures (rather than relative L2)."""
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def tiny():
    """The converted tiny official UNet in float64, with the fixture's inputs in diffusers' layout."""
    from safetensors.torch import load_file

    from dragnuwa.svd.convert import convert_state_dict, load_official_args, read_checkpoint

    args, scale = load_official_args(NUWA15 / "tiny_config.json")
    official = read_checkpoint(NUWA15 / "tiny_official.safetensors")
    config, state = convert_state_dict(official, args, scale)
    model = DragNUWASVDUNet.from_config(config)
    model.load_state_dict(state, strict=True)
    model = model.double().eval()
    raw = load_file(NUWA15 / "tiny_inputs.safetensors")
    b, t = raw["flow"].shape[:2]
    inputs = {
        # The official inputs are per frame; context, sigma and the added ids are constant over a video.
        "sample": raw["x"].double().unflatten(0, (b, t)),
        "timestep": raw["timesteps"].double()[::t],
        "encoder_hidden_states": raw["context"].double()[::t],
        "added_time_ids": torch.stack([raw["fps_id"], raw["motion_bucket_id"], raw["cond_aug"]], 1)[::t].double(),
        "flow": raw["flow"].double(),
    }
    return dict(model=model, inputs=inputs, raw=raw, expected=load_file(NUWA15 / "tiny_expected.safetensors"),
                official=official, args=args, scale=scale)


def run(model, inputs, **overrides) -> torch.Tensor:
    with torch.no_grad():
        return model(**{**inputs, **overrides}).sample.flatten(0, 1)


@needs_fixtures
def test_matches_official_forward_float64(tiny):
    out = run(tiny["model"], tiny["inputs"])
    expected = tiny["expected"]["out"]
    assert out.shape == expected.shape == (10, 4, 6, 10)
    # Acceptance: 1e-4 relative. The port gives ~1e-7 (the float32 sinusoidal embeddings both sides use),
    # so a 1e-6 bound also catches small slips such as diffusers' 1e-6 ResBlock GroupNorm eps.
    assert rel_max(out, expected) < 1e-6


@needs_fixtures
def test_intermediates_match(tiny):
    model, inputs, expected = tiny["model"], tiny["inputs"], tiny["expected"]
    with torch.no_grad():
        features = model.encode_flow(inputs["flow"])
        for k, f in enumerate(features):
            assert rel_max(f.flatten(0, 1), expected[f"inter.flow_feat_{k}"]) < 1e-10
        t = inputs["timestep"].repeat_interleave(5)
        temb = model.time_embedding(model.time_proj(t).double())
        assert rel_max(temb, expected["inter.time_embed_out"]) < 1e-6
        # diffusers' add_time_proj of (fps id, motion bucket id, cond aug) is the official vector y.
        ids = inputs["added_time_ids"].repeat_interleave(5, 0)
        y = model.add_time_proj(ids.flatten()).reshape(10, -1)
        assert (y - tiny["raw"]["y"]).abs().max().item() < 1e-5
        assert rel_max(model.add_embedding(y.double()), expected["inter.label_emb_out"]) < 1e-6


@needs_fixtures
def test_denoiser_level_matches(tiny):
    """The EDM wrapper of the official Denoiser: timestep = c_noise = 0.25 ln sigma, x = [noisy*c_in, concat]."""
    raw, inputs = tiny["raw"], tiny["inputs"]
    sigma = raw["sigma"].double()[::5]
    c_in, c_out, c_skip = [v[:, None, None, None, None] for v in
                           (1 / (sigma**2 + 1).sqrt(), -sigma / (sigma**2 + 1).sqrt(), 1 / (sigma**2 + 1))]
    noisy = raw["noisy_input"].double().unflatten(0, (2, 5))
    sample = torch.cat([noisy * c_in, raw["concat"].double().unflatten(0, (2, 5))], 2)
    out = run(tiny["model"], inputs, sample=sample, timestep=0.25 * sigma.log()).unflatten(0, (2, 5))
    denoised = out * c_out + noisy * c_skip
    assert rel_max(denoised.flatten(0, 1), tiny["expected"]["denoised"]) < 1e-6


@needs_fixtures
def test_float32_run_is_close_to_the_official_float32_run(tiny):
    model32 = DragNUWASVDUNet.from_config(tiny["model"].config)
    model32.load_state_dict({k: v.float() for k, v in tiny["model"].state_dict().items()})
    out = run(model32.eval(), {k: v.float() for k, v in tiny["inputs"].items()})
    assert rel_max(out.double(), tiny["expected"]["out"]) < 1e-5
    assert rel_max(out, tiny["expected"]["out_fp32_official"]) < 1e-5


@needs_fixtures
def test_flow_features_reused_and_broadcast(tiny):
    model, inputs = tiny["model"], tiny["inputs"]
    reference = run(model, inputs)
    features = model.encode_flow(inputs["flow"])
    assert torch.equal(run(model, inputs, flow=None, flow_features=features), reference)
    # One video's flow serves a doubled (guidance) batch: features of batch 1 are repeated.
    one = model.encode_flow(inputs["flow"][:1])
    doubled = {k: (v[:1].repeat(2, *([1] * (v.ndim - 1))) if k != "flow" else None) for k, v in inputs.items()}
    out = run(model, doubled, flow_features=one)
    assert torch.allclose(out[:5], reference[:5], rtol=0, atol=1e-12)
    assert torch.allclose(out[5:], reference[:5], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="needs `flow` or `flow_features`"):
        model(**{**inputs, "flow": None})


@needs_fixtures
def test_flow_matters(tiny):
    """README figure: zeroing the flow changes the official output by 57% (relative L2)."""
    reference = run(tiny["model"], tiny["inputs"])
    no_flow = run(tiny["model"], tiny["inputs"], flow=torch.zeros_like(tiny["inputs"]["flow"]))
    change = ((no_flow - reference).norm() / reference.norm()).item()
    assert 0.3 < change < 0.9


def test_config_from_official_full_size():
    config = diffusers_config_from_official({
        "in_channels": 8, "model_channels": 320, "out_channels": 4, "num_res_blocks": 2,
        "attention_resolutions": [4, 2, 1], "channel_mult": [1, 2, 4, 4], "num_head_channels": 64,
        "context_dim": 1024, "adm_in_channels": 768, "transformer_depth": 1, "flow_dim_scale": 1,
    })
    # The same architecture as stabilityai/stable-video-diffusion-img2vid's unet/config.json.
    assert config["block_out_channels"] == [320, 640, 1280, 1280]
    assert config["num_attention_heads"] == [5, 10, 20, 20]
    assert config["down_block_types"] == ["CrossAttnDownBlockSpatioTemporal"] * 3 + ["DownBlockSpatioTemporal"]
    assert config["up_block_types"] == ["UpBlockSpatioTemporal"] + ["CrossAttnUpBlockSpatioTemporal"] * 3
    assert config["cross_attention_dim"] == 1024 and config["projection_class_embeddings_input_dim"] == 768


def test_other_configuration_builds_and_runs():
    """Three levels, attention only at the middle resolution, one ResBlock per level, fixed heads,
    transformer depth 2: every shape follows the config, none is tiny-specific."""
    args = {"in_channels": 8, "model_channels": 32, "out_channels": 4, "num_res_blocks": 1,
            "attention_resolutions": [2], "channel_mult": [1, 2, 2], "num_heads": 2, "num_head_channels": -1,
            "context_dim": 24, "adm_in_channels": 768, "transformer_depth": 2, "flow_dim_scale": 1}
    torch.manual_seed(0)
    model = DragNUWASVDUNet.from_official_config(args).eval()
    assert [len(b.resnets) for b in model.down_blocks] == [1, 1, 1]
    assert [type(b).__name__ for b in model.down_blocks] == [
        "DownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"]
    features = model.encode_flow(torch.randn(1, 3, 2, 64, 64))
    assert [tuple(f.shape) for f in features] == [(1, 3, 32, 8, 8), (1, 3, 64, 4, 4), (1, 3, 64, 2, 2)]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 8, 8, 8), torch.tensor([0.5]), torch.randn(1, 1, 24),
                    torch.tensor([[4.0, 4.0, 0.02]]), flow_features=features).sample
    assert out.shape == (1, 3, 4, 8, 8) and torch.isfinite(out).all()
    # Freshly built, the modulation's temporal convs are zero, so the flow has no effect yet.
    with torch.no_grad():
        still = model(torch.zeros(1, 3, 8, 8, 8), 0.5, torch.zeros(1, 1, 24), torch.tensor([[4.0, 4.0, 0.02]]),
                      flow=torch.randn(1, 3, 2, 64, 64)).sample
        still0 = model(torch.zeros(1, 3, 8, 8, 8), 0.5, torch.zeros(1, 1, 24), torch.tensor([[4.0, 4.0, 0.02]]),
                       flow=torch.zeros(1, 3, 2, 64, 64)).sample
    assert torch.equal(still, still0)


@pytest.mark.parametrize("key, value", [("use_scale_shift_norm", True), ("merge_strategy", "fixed"),
                                        ("video_kernel_size", [3, 3, 3]), ("channel_mult", [2, 4])])
def test_unsupported_official_arguments_are_named(key, value):
    args = {"in_channels": 8, "model_channels": 32, "out_channels": 4, "num_res_blocks": 1,
            "attention_resolutions": [1], "channel_mult": [1, 2], "num_head_channels": 16, "context_dim": 32,
            key: value}
    with pytest.raises(ValueError, match=key):
        diffusers_config_from_official(args)


@needs_fixtures
def test_tiny_config_json_parses():
    args = json.loads((NUWA15 / "tiny_config.json").read_text())["unet_constructor_args"]
    config = diffusers_config_from_official(args)
    assert config["block_out_channels"] == [32, 64] and config["num_attention_heads"] == [2, 4]
