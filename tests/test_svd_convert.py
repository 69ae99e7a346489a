"""dragnuwa convert: the official DragNUWA 1.5 checkpoint -> a diffusers folder (shared/nuwa15 fixtures)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from dragnuwa.cli import main
from dragnuwa.errors import UserError
from dragnuwa.svd.convert import (
    GAUSSIAN_KEY,
    PREFIX,
    analytic_gaussian,
    convert_state_dict,
    load_official_args,
    read_checkpoint,
)
from dragnuwa.svd.unet import DragNUWASVDUNet

NUWA15 = Path(__file__).resolve().parents[2] / "shared" / "nuwa15"
TINY = NUWA15 / "tiny_official.safetensors"
CONFIG = NUWA15 / "tiny_config.json"
pytestmark = pytest.mark.skipif(not TINY.is_file(), reason=f"the official DragNUWA 1.5 fixtures are not at {NUWA15}")


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """The tiny models run on one thread (conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def official():
    return read_checkpoint(TINY)


@pytest.fixture(scope="module")
def tiny_inputs():
    from safetensors.torch import load_file

    raw = load_file(NUWA15 / "tiny_inputs.safetensors")
    return {
        "sample": raw["x"].unflatten(0, (2, 5)),
        "timestep": raw["timesteps"][::5],
        "encoder_hidden_states": raw["context"][::5],
        "added_time_ids": torch.stack([raw["fps_id"], raw["motion_bucket_id"], raw["cond_aug"]], 1)[::5],
        "flow": raw["flow"],
    }


def tiny_output(official_sd, inputs) -> torch.Tensor:
    args, scale = load_official_args(CONFIG)
    config, state = convert_state_dict(official_sd, args, scale)
    model = DragNUWASVDUNet.from_config(config)
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        return model.eval()(**inputs).sample


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


def test_tiny_loads_strictly(official):
    args, scale = load_official_args(CONFIG)
    assert scale == 1.0
    config, state = convert_state_dict(official, args, scale)
    model = DragNUWASVDUNet.from_config(config)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    counts = json.loads(CONFIG.read_text())["param_counts"]["groups"]
    # Every official UNet tensor lands somewhere (LoRA folded into its linear; the filter checked, not loaded).
    base = counts["unet_base"]["elements"] + counts["flow_encoder"]["elements"] + counts["flow_modulation"]["elements"]
    assert sum(v.numel() for v in state.values()) == base
    assert len(state) == counts["unet_base"]["tensors"] + counts["flow_encoder"]["tensors"] + \
        counts["flow_modulation"]["tensors"]


def test_full_key_list_maps_completely():
    """The full official UNet's keys (1428 SVD + 40 flow encoder + 80 modulation tensors, LoRA rank 32
    on all 464 linears) onto a full-size DragNUWASVDUNet on the meta device: shapes equal, nothing
    left over, nothing unfilled."""
    listing = json.loads((NUWA15 / "official_keys_full.json").read_text())
    sd = {k: torch.empty(shape, dtype=getattr(torch, dtype), device="meta") for k, shape, dtype, _ in listing["keys"]}
    sd[GAUSSIAN_KEY] = analytic_gaussian().float().expand(2, 1, 199, 199)
    config, state = convert_state_dict(sd, listing["unet_constructor_args"], listing["lora_scale"])
    with torch.device("meta"):
        model = DragNUWASVDUNet.from_official_config()  # the default: the full-size DragNUWA 1.5 UNet
    expected = model.state_dict()
    assert set(state) == set(expected)
    assert all(tuple(state[k].shape) == tuple(expected[k].shape) for k in expected)
    counts = listing["counts"]
    assert len(state) == counts["unet_base"]["tensors"] + counts["flow_encoder"]["tensors"] + \
        counts["flow_modulation"]["tensors"] == 1548
    assert sum(v.numel() for v in state.values()) == 1_639_315_082
    assert config["block_out_channels"] == (320, 640, 1280, 1280)


def test_strict_errors_name_the_key(official):
    args, scale = load_official_args(CONFIG)
    extra = {**official, PREFIX + "input_blocks.1.0.mystery.weight": torch.zeros(3)}
    with pytest.raises(UserError, match=r"input_blocks\.1\.0\.mystery\.weight has no place"):
        convert_state_dict(extra, args, scale)
    missing = {k: v for k, v in official.items() if k != PREFIX + "flow_blocks.1.4.op.weight"}
    with pytest.raises(UserError, match=r"flow_encoder\.stages\.1\.4\.weight is left unfilled"):
        convert_state_dict(missing, args, scale)
    half_lora = {k: v for k, v in official.items() if k != PREFIX + "label_emb.0.0.lora_up.weight"}
    with pytest.raises(UserError, match=r"label_emb\.0\.0 lacks .*lora_up"):
        convert_state_dict(half_lora, args, scale)
    bad_filter = {**official, GAUSSIAN_KEY: official[GAUSSIAN_KEY] / official[GAUSSIAN_KEY].sum()}
    with pytest.raises(UserError, match="differs from the official Gaussian"):
        convert_state_dict(bad_filter, args, scale)
    with pytest.raises(UserError, match="does --config describe"):
        convert_state_dict(official, None, 1.0)  # the full-size config on the tiny file


def test_flow_and_lora_matter(official, tiny_inputs):
    """README figures for the official forward: zeroing the flow changes the output by 57%, zeroing
    lora_up (before the merge) by 93% (relative L2)."""
    reference = tiny_output(official, tiny_inputs)
    no_flow = tiny_output(official, {**tiny_inputs, "flow": torch.zeros_like(tiny_inputs["flow"])})
    assert 0.3 < rel_l2(no_flow, reference) < 0.9
    no_lora = {k: (torch.zeros_like(v) if k.endswith("lora_up.weight") else v) for k, v in official.items()}
    assert 0.6 < rel_l2(tiny_output(no_lora, tiny_inputs), reference) < 1.3


def test_cli_round_trip_and_fp16(tmp_path, capsys, official, tiny_inputs):
    code, err = cli(capsys, "convert", TINY, "--out", tmp_path / "f32", "--config", CONFIG)
    assert code == 0, err
    code, err = cli(capsys, "convert", TINY, "--out", tmp_path / "f16", "--config", CONFIG, "--fp16")
    assert code == 0, err
    weights = "unet/diffusion_pytorch_model.safetensors"
    ratio = (tmp_path / "f16" / weights).stat().st_size / (tmp_path / "f32" / weights).stat().st_size
    assert 0.49 < ratio < 0.51
    model = DragNUWASVDUNet.from_pretrained(tmp_path / "f32", subfolder="unet").eval()
    with torch.no_grad():
        out = model(**tiny_inputs).sample
    assert torch.allclose(out, tiny_output(official, tiny_inputs), rtol=0, atol=1e-6)
    half = DragNUWASVDUNet.from_pretrained(tmp_path / "f16", subfolder="unet", torch_dtype=torch.float16)
    assert half.dtype == torch.float16
    # A second conversion replaces the folder whole; nothing temporary is left beside it.
    code, _ = cli(capsys, "convert", TINY, "--out", tmp_path / "f32", "--config", CONFIG)
    assert code == 0 and sorted(p.name for p in (tmp_path / "f32").iterdir()) == ["unet"]


def test_pth_with_wrapper_converts_like_safetensors(tmp_path, official):
    pth = tmp_path / "drag_nuwa_svd.pth"
    torch.save({"state_dict": dict(official)}, pth)
    assert read_checkpoint(pth).keys() == official.keys()


# --------------------------------------------------------------------------- bad inputs


def test_not_a_checkpoint(tmp_path, capsys):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(2)}, other)
    code, err = cli(capsys, "convert", other, "--out", tmp_path / "o", "--config", CONFIG)
    assert code == 2 and "not a DragNUWA checkpoint" in err and "\n" not in err
    text = tmp_path / "notes.pth"
    text.write_text("hello, not a model\n")
    code, err = cli(capsys, "convert", text, "--out", tmp_path / "o", "--config", CONFIG)
    assert code == 2 and "cannot read" in err and "\n" not in err
    code, err = cli(capsys, "convert", tmp_path / "missing.pth", "--out", tmp_path / "o")
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "o").exists()


def test_truncated_files(tmp_path, capsys, official):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(TINY.read_bytes()[: TINY.stat().st_size // 2])
    code, err = cli(capsys, "convert", cut, "--out", tmp_path / "o", "--config", CONFIG)
    assert code == 2 and "truncated" in err and "\n" not in err
    pth = tmp_path / "full.pth"
    torch.save(dict(official), pth)
    cut_pth = tmp_path / "cut.pth"
    cut_pth.write_bytes(pth.read_bytes()[: pth.stat().st_size // 2])
    code, err = cli(capsys, "convert", cut_pth, "--out", tmp_path / "o", "--config", CONFIG)
    assert code == 2 and "cannot read" in err and "\n" not in err
    assert not (tmp_path / "o" / "unet").exists()


class _Payload:
    """Unpickling this calls open(marker, "w"): the file appears if the pickle's code runs."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_and_not_run(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "drag_nuwa_svd.pth"
    torch.save({"model.diffusion_model.flow_blocks.0.0.weight": _Payload(marker)}, evil)
    assert not marker.exists()
    code, err = cli(capsys, "convert", evil, "--out", tmp_path / "o")
    assert code == 2 and "refusing to load" in err and "\n" not in err
    assert not marker.exists()
    # The same payload as a plain pickle (not torch's zip format) is refused as well.
    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps({"x": _Payload(marker)}))
    code, err = cli(capsys, "convert", plain, "--out", tmp_path / "o")
    assert code == 2 and "refusing to load" in err and "\n" not in err
    assert not marker.exists()


def test_out_equal_to_input_is_refused(tmp_path, capsys):
    copy = tmp_path / "ckpt.safetensors"
    copy.write_bytes(TINY.read_bytes())
    code, err = cli(capsys, "convert", copy, "--out", copy, "--config", CONFIG)
    assert code == 2 and "overwrite the input" in err
    assert copy.read_bytes()[:64] == TINY.read_bytes()[:64] and copy.stat().st_size == TINY.stat().st_size
    # A --config read from the unet/ folder the run replaces is an input too.
    (tmp_path / "o" / "unet").mkdir(parents=True)
    config = tmp_path / "o" / "unet" / "config.json"
    config.write_bytes(CONFIG.read_bytes())
    code, err = cli(capsys, "convert", TINY, "--out", tmp_path / "o", "--config", config)
    assert code == 2 and "overwrite the input --config" in err and config.read_bytes() == CONFIG.read_bytes()
    code, err = cli(capsys, "convert", TINY, "--out", tmp_path / "o", "--config", tmp_path / "nope.json")
    assert code == 2 and "cannot read the UNet config" in err
