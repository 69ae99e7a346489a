"""Adaptive Training on the SVD backend (dragnuwa/svd/training.py) with a tiny random SVD, on CPU.

The tiny parts come from ``dragnuwa.svd.testing`` (nothing downloaded). One torch thread: on the
shared 2-core machine the tiny model is many times faster so than with two oversubscribed ones.
"""

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import dragnuwa
from dragnuwa.errors import UserError
from dragnuwa.svd.train_config import SVDDataConfig, SVDTrainConfig, load_svd_config
from dragnuwa.svd.training import (Objective, flow_parameter_names, load_parts, prepare_batch, train,
                                   train_from_config)
from support import torchrun

testing = pytest.importorskip("dragnuwa.svd.testing")
DEMO = Path(dragnuwa.__file__).parent / "assets" / "examples" / "demo"
CONFIGS = Path(__file__).parent.parent / "configs"


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """The tiny models run on one thread (conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One folder with a tiny random SVD (vae/, image_encoder/, ...) and a tiny DragNUWA 1.5 unet/."""
    root = tmp_path_factory.mktemp("tiny_svd") / "svd"
    testing.make_tiny_svd(root)
    testing.make_tiny_dragnuwa(root)
    return str(root)


class FakeText:
    """A deterministic stand-in for MiniLM: 4 tokens of 384, zero and masked for an empty prompt."""

    dim = 384

    def encode(self, prompts):
        toks = torch.stack([torch.full((4, 384), (len(p) % 7 + 1) / 7.0) * torch.linspace(-1, 1, 384) for p in prompts])
        mask = torch.tensor([[bool(p.strip())] * 4 for p in prompts])
        return toks * mask[..., None], mask

    def to(self, device):
        return self


def _cfg(tmp_path, tiny, **kw):
    base = dict(init=tiny, width=64, height=64, frames=4, lora_rank=4, steps=4, batch_size=1, lr=1e-3, warmup=1,
                mixed_precision="no", gradient_checkpointing=False, save_dtype="fp32", ckpt_every=2, log_every=1,
                out_dir=str(tmp_path / "run"), data=SVDDataConfig(count=4, max_tracks=3))
    base.update(kw)
    return SVDTrainConfig(**base)


def _losses(run):
    return [json.loads(line)["loss"] for line in open(Path(run) / "log.jsonl")]


def _eval_inputs(parts, cfg, sigmas=(0.5, 1.5)):
    """A fixed batch (clip 0, every condition kept) at fixed noise levels: comparable losses."""
    from dragnuwa.svd.training import build_dataset, _stack

    item = build_dataset(cfg)[0]
    batch = _stack([item] * len(sigmas))
    inputs = prepare_batch(parts, batch, cfg, torch.Generator().manual_seed(123), "cpu")
    sigma = torch.tensor(sigmas)
    noise = torch.randn(inputs["x0"].shape, generator=torch.Generator().manual_seed(7))
    inputs.update(sigma=sigma, noisy=inputs["x0"] + sigma.view(-1, 1, 1, 1, 1) * noise)
    return inputs


def _eval_loss(parts, inputs):
    with torch.no_grad():
        return Objective(parts.unet, parts.text_projection)(**inputs).item()


def test_text_branch_changes_nothing_until_trained_and_nothing_without_text():
    from dragnuwa.svd.text import hidden_states_with_text, install_text_adapter

    unet = testing.tiny_unet(num_frames=4)
    g = torch.Generator().manual_seed(0)
    sample, flow = torch.randn(2, 4, 8, 8, 8, generator=g), torch.randn(2, 4, 2, 64, 64, generator=g)
    image = torch.randn(2, 1, 32, generator=g)
    args = (torch.tensor([0.1, 0.5]), )
    ids = torch.tensor([[4.0, 4.0, 0.02]] * 2)
    with torch.no_grad():
        before = unet(sample, *args, image, ids, flow=flow).sample
        projection = install_text_adapter(unet, 384)
        tokens, mask = FakeText().encode(["a red ball rolls left", ""])
        ehs = hidden_states_with_text(image, projection(tokens, mask))
        assert ehs.shape == (2, 1 + 4, 32) and not ehs[1, 1:].any()
        after = unet(sample, *args, ehs, ids, flow=flow).sample
        assert (after - before).abs().max().item() <= 1e-6  # zero-initialised: the same model at step 0
        # Once its output projection has weights, the text moves the prompted video only; the video
        # without a prompt is exactly the image-only model.
        for name, p in unet.named_parameters():
            if "to_out_text" in name:
                p.normal_(0, 0.5, generator=g)
        trained = unet(sample, *args, ehs, ids, flow=flow).sample
    assert (trained[0] - before[0]).abs().max().item() > 1e-2
    assert torch.equal(trained[1], after[1])


def _tiny_clip_text(folder):
    """A CLIP text encoder folder (tokenizer/ with a letters-only vocabulary, text_encoder/ width 32)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    (folder / "tokenizer").mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    (folder / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    (folder / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "tokenizer" / "vocab.json"), str(folder / "tokenizer" / "merges.txt"),
                  model_max_length=16).save_pretrained(folder / "tokenizer")
    torch.manual_seed(0)
    CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                 num_attention_heads=4, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                                 pad_token_id=1)).save_pretrained(folder / "text_encoder")
    return folder


def test_a_named_clip_text_encoder_gives_masked_tokens(tmp_path):
    from dragnuwa.svd.text import text_encoder

    enc = text_encoder(str(_tiny_clip_text(tmp_path / "clip")))
    tokens, mask = enc.encode(["a red ball", ""])
    assert enc.dim == 32 and tokens.shape == (2, 16, 32)
    assert mask[0].sum() == 10 and not mask[1].any() and not tokens[1].any()  # 8 letters + start/end; empty: none
    assert tokens[0, :10].abs().amin(-1).max() > 0
    with pytest.raises(UserError, match="CLIP text encoder"):
        text_encoder(str(tmp_path / "missing"))


def test_checkpointing_every_block_gives_the_same_gradients():
    from dragnuwa.svd.training import enable_checkpointing

    g = torch.Generator().manual_seed(0)
    sample, flow = torch.randn(1, 4, 8, 8, 8, generator=g), torch.randn(1, 4, 2, 64, 64, generator=g)
    args = (torch.tensor([0.1]), torch.randn(1, 1, 32, generator=g), torch.tensor([[4.0, 4.0, 0.02]]))
    grads = []
    for ckpt in (False, True):
        unet = testing.tiny_unet(num_frames=4).train()
        if ckpt:
            assert enable_checkpointing(unet) == 6  # the tiny UNet has 2 + 1 + 3 temporal transformer blocks
        unet(sample, *args, flow=flow).sample.square().mean().backward()
        grads.append({k: p.grad for k, p in unet.named_parameters()})
    assert all(torch.allclose(grads[0][k], grads[1][k], atol=1e-6, rtol=1e-5) for k in grads[0])
    assert grads[0]["flow_encoder.stages.0.0.weight"].abs().max() > 0  # the flow branch gets gradients too


def test_guidance_has_separate_image_text_and_trajectory_scales():
    from dragnuwa.svd.text import combine_guidance

    cond, uncond, no_text, no_traj = (torch.full((1, 3, 1, 1, 1), v) for v in (1.0, 0.0, 0.5, 0.25))
    ramp = torch.tensor([1.0, 1.75, 2.5])
    official = combine_guidance(cond, uncond, ramp)
    assert official.flatten().tolist() == [1.0, 1.75, 2.5]  # uncond + s (cond - uncond), per frame
    both = combine_guidance(cond, uncond, 1.0, no_text, 3.0, no_traj, 2.0)
    assert both.flatten().tolist() == [1.0 + 2 * 0.5 + 1 * 0.75] * 3
    with pytest.raises(ValueError, match="no_text"):
        combine_guidance(cond, uncond, 1.0, text_scale=2.0)


def test_stage_one_then_two_train_only_what_they_should_and_the_loss_falls(tiny, tmp_path):
    from dragnuwa.svd.unet import DragNUWASVDUNet

    # Stage 1 on one clip, every condition kept, so the fixed batch can be overfitted.
    drop = dict(p_drop_image=0.0, p_drop_traj=0.0, p_drop_text=0.0)
    cfg1 = _cfg(tmp_path, tiny, steps=30, lr=1e-2, ema_decay=0.0, ckpt_every=100, out_dir=str(tmp_path / "s1"),
                data=SVDDataConfig(count=1), **drop)
    parts = load_parts(cfg1)
    flow_names = set(flow_parameter_names(parts.unet))
    assert any(n.startswith("flow_encoder.") for n in flow_names) and any("flow_gamma_" in n for n in flow_names)
    frozen = [(n, p, p.detach().clone()) for n, p in parts.unet.named_parameters() if n not in flow_names]
    flow_before = {n: p.detach().clone() for n, p in parts.unet.named_parameters() if n in flow_names}
    vae_before = [p.detach().clone() for p in parts.vae.parameters()]
    inputs = _eval_inputs(parts, cfg1)
    loss0 = _eval_loss(parts, inputs)
    train(cfg1, parts=parts)
    loss1 = _eval_loss(parts, inputs)
    print("stage 1 loss on the fixed batch", loss0, "->", loss1)
    assert loss1 < 0.8 * loss0, (loss0, loss1)
    # Frozen weights bit-identical (LoRA keeps each base linear as the same parameter) ...
    assert all(torch.equal(p, p0) for _, p, p0 in frozen)
    assert all(torch.equal(p, p0) for p, p0 in zip(parts.vae.parameters(), vae_before))
    # ... while the flow encoder, the modulation and the LoRA moved.
    named = dict(parts.unet.named_parameters())
    assert sum(not torch.equal(named[n], p0) for n, p0 in flow_before.items()) == len(flow_before)
    lora_b = [p for n, p in named.items() if ".lora_B." in n]
    assert len(lora_b) > 10 and all(p.abs().max() > 0 for p in lora_b)

    # The export is a plain diffusers UNet folder with the LoRA merged; it computes what the trained
    # model computes (ema_decay 0: the EMA is the last weights).
    exported = DragNUWASVDUNet.from_pretrained(tmp_path / "s1", subfolder="unet")
    assert not any(".lora_" in k or "base_layer" in k for k in exported.state_dict())
    c_in = (inputs["sigma"] ** 2 + 1).rsqrt().view(-1, 1, 1, 1, 1)
    sample = torch.cat([inputs["noisy"] * c_in, inputs["cond_latent"][:, None].expand(-1, 4, -1, -1, -1)], 2)
    args = (sample, 0.25 * inputs["sigma"].log(), inputs["image_embeds"], inputs["time_ids"])
    with torch.no_grad():
        live = parts.unet(*args, flow=inputs["flow"]).sample
        loaded = exported(*args, flow=inputs["flow"]).sample
    torch.testing.assert_close(loaded, live, atol=1e-5, rtol=1e-5)
    info = json.loads((tmp_path / "s1" / "dragnuwa_svd_train.json").read_text())
    assert info["stage"] == 1 and info["steps"] == 30 and info["svd"] == str(Path(tiny).resolve())

    # Stage 2 continues from the stage-1 run (its svd recorded there), on sparse tracks.
    cfg2 = _cfg(tmp_path, tiny, stage=2, init=str(tmp_path / "s1"), steps=30, lr=1e-2, ckpt_every=100,
                out_dir=str(tmp_path / "s2"), data=SVDDataConfig(first_seed=3, count=1, max_tracks=3), **drop)
    cfg2.svd = ""
    parts2 = load_parts(cfg2)
    inputs2 = _eval_inputs(parts2, cfg2)
    assert 0 < inputs2["flow"].abs().amax().item() < 64 and (inputs2["flow"][:, 0] == 0).all()
    loss2 = _eval_loss(parts2, inputs2)
    train(cfg2, parts=parts2)
    loss3 = _eval_loss(parts2, inputs2)
    print("stage 2 loss on the fixed batch", loss2, "->", loss3)
    assert loss3 < 0.92 * loss2, (loss2, loss3)  # it starts from stage 1, on a new clip: less to gain


def test_resume_after_a_kill_gives_the_same_next_loss(tiny, tmp_path):
    full = _cfg(tmp_path, tiny, steps=4, out_dir=str(tmp_path / "full"), text="minilm")
    train(full, text_encoder=FakeText())
    part = _cfg(tmp_path, tiny, steps=2, out_dir=str(tmp_path / "part"), text="minilm")
    train(part, text_encoder=FakeText())  # "killed" after its step-2 checkpoint
    with pytest.raises(UserError, match="--resume"):
        train(part, text_encoder=FakeText())
    part.steps = 4
    train(part, resume=True, text_encoder=FakeText())
    a, b = _losses(full.out_dir), _losses(part.out_dir)
    assert len(a) == len(b) == 4 and a[:2] == b[:2]
    assert a[2:] == b[2:]  # steps 3 and 4 after the resume: the same numbers
    # The text adapter was trained and exported beside the UNet.
    assert (Path(part.out_dir) / "text_adapter" / "config.json").is_file()


def test_eight_bit_adamw_where_bitsandbytes_installs(tiny, tmp_path):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes not installed: the loop falls back to AdamW")
    cfg = _cfg(tmp_path, tiny, steps=2, optimizer="adamw8bit")
    train(cfg)
    state = torch.load(Path(cfg.out_dir) / "checkpoint" / "state.pt", weights_only=False)["optimizer"]["state"]
    moments = [s["__bnb_optimizer_quant_state__"]["state1"] for s in state.values()]  # bitsandbytes' layout
    assert torch.uint8 in {m.dtype for m in moments}  # tensors of 4096+ elements keep 8-bit moments
    assert all(np.isfinite(_losses(cfg.out_dir)))


def test_train_dispatches_and_generate_loads_the_export(tiny, tmp_path, capsys):
    from dragnuwa.cli import main
    from dragnuwa.video import read_video

    run = tmp_path / "run"
    assert main(["train", "--config", str(CONFIGS / "svd_tiny.yaml"), "--init", tiny, "--out-dir", str(run),
                 "--max-steps", "2"]) == 0
    assert (run / "unet" / "config.json").is_file() and len(_losses(run)) == 2
    out = tmp_path / "video.mp4"
    assert main(["generate", "--model", str(run), "--svd", tiny, "--image", str(DEMO / "image.png"),
                 "--tracks", str(DEMO / "tracks.json"), "--out", str(out), "--steps", "1", "--frames", "4",
                 "--size", "64x64"]) == 0
    frames = read_video(out)[0]
    assert frames.shape[0] == 4 and frames.shape[1:3] == (64, 64)
    # A run folder is not overwritten by accident, and the output never replaces the input.
    assert main(["train", "--config", str(CONFIGS / "svd_tiny.yaml"), "--init", tiny, "--out-dir", str(run)]) == 2
    assert main(["train", "--config", str(CONFIGS / "svd_tiny.yaml"), "--init", str(run), "--out-dir", str(run)]) == 2
    assert "same file" in capsys.readouterr().err


def test_configs_and_bad_values(tmp_path):
    for name in ("svd_stage1", "svd_stage2", "svd_tiny"):
        cfg = load_svd_config(CONFIGS / f"{name}.yaml")
        assert cfg.backend == "svd" and cfg.stage == (2 if name == "svd_stage2" else 1)
    full = load_svd_config(CONFIGS / "svd_stage1.yaml")
    assert (full.width, full.height, full.frames, full.lora_rank, full.mixed_precision) == (576, 320, 14, 32, "bf16")
    from accelerate.commands.config.config_args import load_config_from_file

    for name in ("ddp", "deepspeed_zero2"):
        assert load_config_from_file(str(CONFIGS / "accelerate" / f"{name}.yaml")).num_processes == 8
    for bad, line in (("width: 100", "multiple of 64"), ("optimizer: sgd", "optimizer"),
                      ("lora_rank: 0\ntrain_flow: false", "nothing to train"), ("colour: red", "unknown key")):
        p = tmp_path / "bad.yaml"
        p.write_text("backend: svd\ninit: x\n" + bad + "\n")
        with pytest.raises(UserError, match=line):
            train_from_config(p)


def test_stage_two_flow_is_the_official_gaussian_at_sampled_tracks():
    from dragnuwa.svd.train_data import dense_flow_input, flow_sigma, sparse_flow_input

    assert flow_sigma(576, 320) == (199, 20.0)  # the official kernel at the official size
    track = np.array([[[10.0, 20.0], [14.0, 17.0], [20.0, 17.0]]])
    flow = sparse_flow_input(track, 64, 64, np.random.default_rng(0), max_tracks=1, sigma=3.0)
    assert flow.shape == (3, 2, 64, 64) and not flow[0].any()
    np.testing.assert_allclose(flow[1, :, 20, 10], [4.0, -3.0], atol=1e-5)  # the peak is the displacement
    np.testing.assert_allclose(flow[2, :, 17, 14], [6.0, 0.0], atol=1e-5)
    assert abs(flow[1, 0, 20, 13] - 4.0 * np.exp(-9 / 18)) < 1e-4  # 3 px away: the Gaussian, unnormalised
    # Dense flow on a 2x coarser grid: values scale with the grid.
    maps = np.ones((3, 2, 32, 32), np.float32)
    assert np.allclose(dense_flow_input(maps, 64, 64), 2.0)


def _write_shards(folder, n=5):
    """``n`` procedural clips as `dragnuwa prepare` shards (2 per shard), with flow and candidate tracks."""
    from dragnuwa.data.dataset import candidate_tracks
    from dragnuwa.data.shards import encode_sample, write_shard
    from dragnuwa.data.synthetic import render_clip
    from dragnuwa.trajectory import flow_to_maps

    folder.mkdir()
    samples = []
    for i in range(n):
        clip = render_clip(i, 4, (96, 64))
        tracks = candidate_tracks(clip.flow, np.random.default_rng(i), clip.layers)
        meta = {"width": 96, "height": 64, "frames": 4, "fps": 8}
        samples.append(encode_sample(f"{i:08d}_00", clip.frames, 8.0, clip.caption, tracks, meta,
                                     flow_maps=flow_to_maps(clip.flow)[:, :, ::8, ::8] / 8))
    for k in range(0, n, 2):
        write_shard(folder / f"shard-{k // 2:06d}.tar", samples[k:k + 2])
    return folder


def test_shards_stream_in_the_same_order_split_over_workers_and_resumed(tmp_path):
    from dragnuwa.svd.train_data import shard_stream
    from dragnuwa.svd.training import micro_batches

    shards = _write_shards(tmp_path / "shards")
    for stage in (1, 2):
        cfg = SVDTrainConfig(init="x", stage=stage, width=64, height=64, frames=4, steps=6,
                             data=SVDDataConfig(source="shards", shards=str(shards), max_tracks=3))
        one = [it["text"] for it, _ in zip(shard_stream(cfg.data.shards, cfg, 0, 1, skip=0), range(8))]
        # Two workers' shares, taken in turn as a DataLoader does, are the one stream.
        parts = [shard_stream(cfg.data.shards, cfg, 0, 1, 0, part=w, parts=2) for w in (0, 1)]
        assert [next(parts[k % 2])["text"] for k in range(8)] == one
        # Two ranks: disjoint halves of the stream.
        ranks = [[it["text"] for it, _ in zip(shard_stream(cfg.data.shards, cfg, r, 2, skip=0), range(4))] for r in (0, 1)]
        assert ranks[0] == one[0:8:2] and ranks[1] == one[1:8:2]
        # A resume at step 2 gets exactly the batches 2.. of the whole run.
        full = list(micro_batches(cfg, None, 0, 0, 1))
        resumed = list(micro_batches(cfg, None, 2, 0, 1))
        assert len(full) == 6 and len(resumed) == 4
        for a, b in zip(full[2:], resumed):
            assert a["text"] == b["text"] and torch.equal(a["flow"], b["flow"]) and torch.equal(a["video"], b["video"])
        flow = full[0]["flow"]
        assert flow.shape == (1, 4, 2, 64, 64) and not flow[0, 0].any() and flow.abs().max() > 0


DDP_SCRIPT = textwrap.dedent('''
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_svd_training import _cfg
    from dragnuwa.svd.training import load_parts, train
    from accelerate import PartialState
    from pathlib import Path
    torch.set_num_threads(1)
    cfg = _cfg(Path({root!r}), {tiny!r}, steps=2, out_dir={out!r})
    parts = load_parts(cfg)
    train(cfg, parts=parts)
    rank = PartialState().process_index
    torch.save({{k: v for k, v in parts.unet.state_dict().items() if "lora_" in k or "flow_" in k}},
               {out!r} + f"/rank{{rank}}.pt")
''')


def test_two_processes_keep_identical_weights(tiny, tmp_path):
    script = tmp_path / "ddp.py"
    out = str(tmp_path / "run")
    script.write_text(DDP_SCRIPT.format(tests=os.path.dirname(__file__), root=str(tmp_path), tiny=tiny, out=out))
    r = torchrun(script, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    w0, w1 = torch.load(f"{out}/rank0.pt"), torch.load(f"{out}/rank1.pt")
    assert any(".lora_B." in k for k in w0) and sum(w0[k].abs().max() > 0 for k in w0 if ".lora_B." in k) > 10
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # each rank saw its own data; the average kept them equal
