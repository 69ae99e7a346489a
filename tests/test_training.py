import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dragnuwa.errors import UserError
from dragnuwa.training.config import DataConfig, TrainConfig, load_config, validate
from dragnuwa.training.loop import train


class FakeText:
    """Deterministic stand-in for MiniLM (keeps these tests independent of its 3 s load)."""

    def encode(self, prompts):
        toks = torch.stack([torch.full((4, 384), float(len(p) % 7) / 7) for p in prompts])
        return toks, torch.ones(len(prompts), 4, dtype=torch.bool)

    def to(self, device):
        return self


class TinyData(torch.utils.data.Dataset):
    def __init__(self, n=2, stage=1, animation=False, changed=False, first_seed=11):
        from dragnuwa.data.dataset import SyntheticClips

        self.inner = SyntheticClips(first_seed=first_seed, count=n, frames=4, size=(32, 32), stage=stage,
                                    animation=animation, changed=changed)

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        return self.inner[i]


def _cfg(tmp_path, **kw):
    base = dict(model="tiny", steps=6, batch_size=2, lr=2e-3, warmup=1, mixed_precision="no", ckpt_every=3,
                log_every=1, out_dir=str(tmp_path / "run"))
    base.update(kw)
    return TrainConfig(**base)


def _losses(cfg):
    return [json.loads(line)["loss"] for line in open(os.path.join(cfg.out_dir, "log.jsonl"))]


def test_loss_falls_when_overfitting_a_tiny_batch(tmp_path):
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA

    torch.manual_seed(0)
    cfg = _cfg(tmp_path, steps=120, ckpt_every=1000, lr=3e-3, ema_decay=0.9)
    # Overfit one clip, no condition dropout; a fixed noise level range keeps the loss comparable.
    model = DragNUWA(get_preset("tiny"))
    model.cfg.p_drop_text = model.cfg.p_drop_image = model.cfg.p_drop_traj = 0.0
    train(cfg, model=model, dataset=TinyData(n=1), text_encoder=FakeText())
    losses = _losses(cfg)
    first, last = sum(losses[:15]) / 15, sum(losses[-15:]) / 15
    assert last < 0.6 * first, (first, last)
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_resume_continues_exactly(tmp_path):
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA

    def fresh():
        torch.manual_seed(0)
        return DragNUWA(get_preset("tiny"))

    full = _cfg(tmp_path / "a", steps=6)
    train(full, model=fresh(), dataset=TinyData(), text_encoder=FakeText())
    part = _cfg(tmp_path / "b", steps=3)
    train(part, model=fresh(), dataset=TinyData(), text_encoder=FakeText())
    part.steps = 6
    part.workers = 2  # batches rendered ahead by worker processes: the same batches, in order
    train(part, resume=True, model=fresh(), dataset=TinyData(), text_encoder=FakeText())
    a, b = _losses(full), _losses(part)
    assert len(a) == 6 and len(b) == 6
    assert abs(a[3] - b[3]) < 1e-6 and abs(a[5] - b[5]) < 1e-6, (a, b)


def test_time_budget_stops_checkpoints_and_exports(tmp_path):
    from dragnuwa.models.config import get_preset
    from safetensors import safe_open

    from dragnuwa.models.dragnuwa import DragNUWA

    cfg = _cfg(tmp_path, steps=1000, ckpt_every=1000, max_minutes=1e-6)
    out = train(cfg, model=DragNUWA(get_preset("tiny")), dataset=TinyData(), text_encoder=FakeText())
    # Over budget after the first step: it stops there with a checkpoint and an exported model.
    assert len(_losses(cfg)) == 1
    row = json.loads((tmp_path / "run" / "log.jsonl").read_text())
    assert 0 < row["data_wait"] < 1 and row["sec_per_step"] > 0  # rendering in-process: part of the step
    assert (tmp_path / "run" / "checkpoint" / "state.pt").is_file()
    with safe_open(str(out), framework="pt") as f:
        assert json.loads(f.metadata()["extra"])["steps"] == 1


def test_ema_is_the_decayed_average_and_copies_buffers():
    from dragnuwa.training.ema import EMA

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = EMA(model, decay=0.9)
    before = [p.clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model(torch.randn(8, 3))  # moves the batch-norm running statistics (buffers)
    ema.update(model, step=1000)  # past warm-up: decay 0.9
    for e, b, p in zip(ema.model.parameters(), before, model.parameters()):
        assert torch.allclose(e, 0.9 * b + 0.1 * p, atol=1e-6)
    assert torch.equal(ema.model[1].running_mean, model[1].running_mean)
    before = [p.clone() for p in ema.model.parameters()]
    ema.update(model, step=0)  # warm-up: decay (1 + 0) / (10 + 0) = 0.1, mostly the live weights
    for e, b, p in zip(ema.model.parameters(), before, model.parameters()):
        assert torch.allclose(e, 0.1 * b + 0.9 * p, atol=1e-6)


def test_stage2_from_stage1_init(tmp_path):
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA, load_model, save_model

    torch.manual_seed(0)
    s1 = train(_cfg(tmp_path / "s1", steps=2), model=DragNUWA(get_preset("tiny")), dataset=TinyData(),
               text_encoder=FakeText())
    cfg = _cfg(tmp_path / "s2", steps=2, stage=2, init=str(s1))
    torch.manual_seed(1)
    model = DragNUWA(get_preset("tiny"))
    train(cfg, model=model, dataset=TinyData(stage=2), text_encoder=FakeText())
    # Stage 2 started from stage 1: after 2 small steps the weights are still close to stage 1's.
    w1 = load_model(s1).state_dict()["unet.conv_in.weight"]
    assert (model.state_dict()["unet.conv_in.weight"] - w1).abs().max() < 0.05
    # A fine-tune keeps the sampling defaults of the model it starts from, not the preset's.
    tuned = load_model(s1)
    tuned.cfg.traj_guidance, tuned.cfg.motion_init = 4.5, 0.8
    tuned_path = save_model(tmp_path / "tuned.safetensors", tuned)
    out = train(_cfg(tmp_path / "s4", steps=1, stage=2, init=str(tuned_path)), model=DragNUWA(get_preset("tiny")),
                dataset=TinyData(stage=2), text_encoder=FakeText())
    assert (load_model(out).cfg.traj_guidance, load_model(out).cfg.motion_init) == (4.5, 0.8)
    with pytest.raises(UserError, match="not found"):
        train(_cfg(tmp_path / "s3", init=str(tmp_path / "none.safetensors")), model=DragNUWA(get_preset("tiny")),
              dataset=TinyData(), text_encoder=FakeText())


def test_a_model_on_a_finer_autoencoder_starts_from_another_models_networks(tmp_path, capsys):
    import dataclasses

    from dragnuwa.models.config import AutoencoderConfig, get_preset
    from dragnuwa.models.dragnuwa import DragNUWA, load_model, save_model
    from dragnuwa.training.checkpoint import transplant_networks

    torch.manual_seed(0)
    src_path = save_model(tmp_path / "src.safetensors", DragNUWA(get_preset("tiny")))  # 4x, 4 latent channels
    src = load_model(src_path)
    # `tiny` on a 2x autoencoder with 2 latent channels, as `small_f2` is `small` on a 2x one.
    fine_cfg = dataclasses.replace(get_preset("tiny"),
                                   autoencoder=AutoencoderConfig(channels=(8, 16), latent_channels=2))
    model = DragNUWA(fine_cfg)
    ae_before = {k: v.clone() for k, v in model.autoencoder.state_dict().items()}
    fresh = transplant_networks(model, src_path)
    # Left fresh: the UNet's input and output convs (channels follow the latents), nothing else.
    assert fresh and all(k.startswith("unet.") for k in fresh) and len(fresh) <= 4, fresh
    own, theirs = model.state_dict(), src.state_dict()
    copied = [k for k in own if not k.startswith("autoencoder.") and k not in fresh]
    assert len(copied) > 50 and all(torch.equal(own[k], theirs[k]) for k in copied)
    assert "trajectory_encoder.stem.4.weight" in theirs and "trajectory_encoder.stem.4.weight" not in own
    assert all(torch.equal(v, ae_before[k]) for k, v in model.autoencoder.state_dict().items())
    # Through the training loop, from the config's flag.
    cfg = _cfg(tmp_path / "t", steps=2, init=str(src_path), init_networks_only=True)
    train(cfg, model=DragNUWA(fine_cfg), dataset=TinyData(), text_encoder=FakeText())
    assert "init: trajectory encoder and UNet from" in capsys.readouterr().out
    with pytest.raises(UserError, match="does not match"):  # the plain init refuses the other latents
        train(_cfg(tmp_path / "u", steps=2, init=str(src_path)), model=DragNUWA(fine_cfg), dataset=TinyData(),
              text_encoder=FakeText())


def test_motion_init_training_noises_from_the_animation(tmp_path, monkeypatch):
    """With ``motion_init`` the loop encodes the batch's animation and hands it to the loss as the
    guide, for the samples that keep both the image and the trajectory (as at inference)."""
    from dragnuwa.diffusion.preconditioning import EDMDenoiser
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA

    calls, real_loss = [], EDMDenoiser.loss

    def spy(self, x0, cond, generator=None, per_sample=False, guide=None, guided=None, sigma_start=1.0, weight=None):
        calls.append((x0.detach().clone(), None if guide is None else guide.detach().clone(), guided, sigma_start))
        return real_loss(self, x0, cond, generator, per_sample, guide, guided, sigma_start, weight)

    monkeypatch.setattr(EDMDenoiser, "loss", spy)
    torch.manual_seed(0)
    model = DragNUWA(get_preset("tiny"))
    model.cfg.p_drop_image, model.cfg.p_drop_traj = 0.0, 1.0  # every trajectory dropped: nothing guided
    cfg = _cfg(tmp_path / "a", steps=2, stage=2, motion_init=0.7, motion_init_fraction=1.0)
    train(cfg, model=model, dataset=TinyData(stage=2, animation=True), text_encoder=FakeText())
    assert all(g is not None and not m.any() and s == 0.7 for _, g, m, s in calls)
    model.cfg.p_drop_traj = 0.0
    calls.clear()
    train(_cfg(tmp_path / "b", steps=2, stage=2, motion_init=0.7, motion_init_fraction=1.0), model=model,
          dataset=TinyData(stage=2, animation=True), text_encoder=FakeText())
    assert all(m.all() for _, _, m, _ in calls)
    # The guide is the animation's latents: same first frame as the clip, different later frames.
    x0, guide = calls[0][0], calls[0][1]
    assert torch.allclose(guide[:, 0], x0[:, 0], atol=1e-5) and not torch.allclose(guide, x0, atol=1e-3)
    assert _losses(cfg) and all(math.isfinite(v) for v in _losses(cfg))
    with pytest.raises(UserError, match="motion_init training needs data.source synthetic"):
        validate(_cfg(tmp_path, motion_init=1.0, data=DataConfig(source="folder", root=str(tmp_path))))


def test_changed_weight_weights_the_loss_where_the_surface_changed(tmp_path, monkeypatch):
    """With ``changed_weight`` the loop pools the batch's changed mask to the latent grid and hands
    the loss 1 + w x (the changed share of each latent cell); without it, no weight."""
    from dragnuwa.diffusion.preconditioning import EDMDenoiser
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA

    weights, real_loss = [], EDMDenoiser.loss

    def spy(self, x0, cond, generator=None, per_sample=False, guide=None, guided=None, sigma_start=1.0, weight=None):
        weights.append(weight)
        return real_loss(self, x0, cond, generator, per_sample, guide, guided, sigma_start, weight)

    monkeypatch.setattr(EDMDenoiser, "loss", spy)
    torch.manual_seed(0)
    data = TinyData(n=4, stage=2, changed=True, first_seed=600000)
    train(_cfg(tmp_path / "a", steps=2, stage=2, changed_weight=4.0), model=DragNUWA(get_preset("tiny")),
          dataset=data, text_encoder=FakeText())
    w = torch.cat(weights)
    f = get_preset("tiny").autoencoder.factor
    assert w.shape == (4, 4, 1, 32 // f, 32 // f)
    assert w.min() == 1 and w.max() > 1.5 and w.max() <= 5 and (w[:, 0] == 1).all()
    expected = 1 + 4 * torch.nn.functional.avg_pool2d(torch.stack([data[i]["changed"] for i in range(4)]), f)
    assert torch.allclose(w[:, :, 0], expected)
    weights.clear()
    train(_cfg(tmp_path / "b", steps=1, stage=2), model=DragNUWA(get_preset("tiny")), dataset=TinyData(stage=2),
          text_encoder=FakeText())
    assert weights == [None]
    with pytest.raises(UserError, match="changed_weight needs data.source synthetic"):
        validate(_cfg(tmp_path, changed_weight=1.0, data=DataConfig(source="folder", root=str(tmp_path))))


def test_sigma_data_override_trains_and_exports_with_it(tmp_path, monkeypatch, capsys):
    """``sigma_data`` in a training config replaces the preset's (or the init's) in the denoiser the loss
    uses and in the exported model's config (which the pipeline's sampler reads); 0 keeps it."""
    from dragnuwa.diffusion.preconditioning import EDMDenoiser
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA, load_model

    seen, real_loss = [], EDMDenoiser.loss

    def spy(self, *args, **kw):
        seen.append(self.sigma_data)
        return real_loss(self, *args, **kw)

    monkeypatch.setattr(EDMDenoiser, "loss", spy)
    assert get_preset("tiny").sigma_data == 0.5
    first = train(_cfg(tmp_path / "a", steps=2, sigma_data=1.0), model=DragNUWA(get_preset("tiny")),
                  dataset=TinyData(), text_encoder=FakeText())
    assert seen == [1.0, 1.0] and load_model(first).cfg.sigma_data == 1.0
    seen.clear()
    path = train(_cfg(tmp_path / "b", steps=1), model=DragNUWA(get_preset("tiny")), dataset=TinyData(),
                 text_encoder=FakeText())
    assert seen == [0.5] and load_model(path).cfg.sigma_data == 0.5
    # A run from ``init`` keeps the init's value (its weights were trained under it) unless told otherwise.
    seen.clear()
    path = train(_cfg(tmp_path / "c", steps=1, init=str(first)),
                 model=DragNUWA(get_preset("tiny")), dataset=TinyData(), text_encoder=FakeText())
    assert seen == [1.0] and load_model(path).cfg.sigma_data == 1.0
    seen.clear()
    train(_cfg(tmp_path / "d", steps=1, init=str(path), sigma_data=0.7), model=DragNUWA(get_preset("tiny")),
          dataset=TinyData(), text_encoder=FakeText())
    assert seen == [0.7] and "was trained with sigma_data 1; this run changes it to 0.7" in capsys.readouterr().out


def test_small_f2_preset_has_the_finer_latents():
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA

    cfg = get_preset("small_f2")
    assert cfg.autoencoder.factor == 2 and DragNUWA(cfg).latent_shape == (4, 32, 32)
    assert get_preset("small").unet == cfg.unet and cfg.traj_cumulative


@pytest.mark.parametrize("text, message", [
    ("model: tiny\nstpes: 3\n", "unknown key 'stpes'"),
    ("model: tiny\nsteps: many\n", "steps: expected int"),
    ("model: [unclosed\n", "not valid YAML"),
    ("stage: 3\n", "stage must be 1 or 2"),
    ("motion_init_fraction: 1.5\n", "motion_init_fraction in \\[0, 1\\]"),
    ("changed_weight: -1\n", "changed_weight must be >= 0"),
    ("sigma_data: -0.5\n", "sigma_data must be > 0"),
])
def test_bad_configs(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_config(path)


def test_cli_bad_config_and_checkpoint_exit_2(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    (tmp_path / "bad.yaml").write_text("model: tiny\nbogus: 1\n")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a model")
    (tmp_path / "init.yaml").write_text(f"model: tiny\nsteps: 1\ninit: {corrupt}\nout_dir: {tmp_path / 'o'}\n")
    for args in (["--config", str(tmp_path / "bad.yaml")], ["--config", str(tmp_path / "missing.yaml")],
                 ["--config", str(tmp_path / "init.yaml")]):
        r = subprocess.run([sys.executable, "-m", "dragnuwa.cli", "train", *args], capture_output=True, text=True,
                           env=env, timeout=120)
        lines = [line for line in r.stderr.splitlines() if line.strip() and "Loading" not in line]
        assert r.returncode == 2 and len(lines) == 1 and "error:" in lines[0], r.stderr


# Every config in configs/, so a new one is checked as soon as it lands.
@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).parent.parent / "configs").glob("*.yaml")))
def test_shipped_configs_load(name):
    from dragnuwa.models.config import get_preset
    from dragnuwa.training.config import AutoencoderTrainConfig, config_backend

    path = Path(__file__).parent.parent / "configs" / f"{name}.yaml"
    if config_backend(path) == "svd":  # the SVD backend's own typed config (dragnuwa/svd/train_config.py)
        from dragnuwa.svd.train_config import load_svd_config

        assert load_svd_config(path).stage in (1, 2)
        return
    cfg = load_config(path, AutoencoderTrainConfig if name.startswith("autoencoder") else TrainConfig)
    get_preset(cfg.model)  # names a real preset


def test_autoencoder_training_and_decoder_only_fine_tune_keep_the_latent_space(tmp_path):
    from dragnuwa.models.dragnuwa import load_model
    from dragnuwa.training.autoencoder import held_out_psnr, train_autoencoder
    from dragnuwa.training.config import AutoencoderTrainConfig

    torch.manual_seed(0)
    first = train_autoencoder(AutoencoderTrainConfig(model="tiny", steps=40, batch_size=8, lr=2e-3, log_every=10,
                                                     ckpt_every=40, photo_fraction=0.0, out_dir=str(tmp_path / "a")))
    a = load_model(first).autoencoder
    tuned = train_autoencoder(AutoencoderTrainConfig(model="tiny", steps=150, batch_size=8, lr=2e-3, log_every=10,
                                                     ckpt_every=150, photo_fraction=0.0, init=str(first),
                                                     decoder_only=True, out_dir=str(tmp_path / "b")))
    b = load_model(tuned).autoencoder
    for (name, pa), pb in zip(a.encoder.state_dict().items(), b.encoder.state_dict().values()):
        assert torch.equal(pa, pb), name  # the encoder is frozen ...
    assert float(a.scale) == float(b.scale) != 1.0  # ... and so is the latent scale
    assert not torch.equal(a.decoder.state_dict()["0.weight"], b.decoder.state_dict()["0.weight"])
    assert held_out_psnr(b, (32, 32), n=16) > held_out_psnr(a, (32, 32), n=16) + 0.5  # the decoder improved
    with pytest.raises(UserError, match="init"):
        train_autoencoder(AutoencoderTrainConfig(model="tiny", steps=1, decoder_only=True, out_dir=str(tmp_path / "c")))


def test_training_takes_an_autoencoder_file_that_holds_only_the_autoencoder(tmp_path):
    """``save_autoencoder_only`` (what `offline_gpu_train.sh prepare` carries) keeps a model file's
    autoencoder and its latent scale in a small file, and a config's ``autoencoder`` loads it."""
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA, load_model, save_model
    from dragnuwa.training.checkpoint import load_weights_into, save_autoencoder_only

    torch.manual_seed(0)
    src = DragNUWA(get_preset("tiny"))
    src.cfg.autoencoder.scale = 0.77
    full = save_model(tmp_path / "full.safetensors", src)
    small = save_autoencoder_only(full, tmp_path / "auto.safetensors")
    assert small.stat().st_size < 0.5 * full.stat().st_size
    torch.manual_seed(1)
    model = DragNUWA(get_preset("tiny"))
    unet_before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    load_weights_into(model, small, prefix="autoencoder.")
    assert model.cfg.autoencoder.scale == 0.77
    assert all(torch.equal(v, src.autoencoder.state_dict()[k]) for k, v in model.autoencoder.state_dict().items())
    assert all(torch.equal(v, unet_before[k]) for k, v in model.unet.state_dict().items())
    with pytest.raises(UserError, match="holds no weights under 'unet.'"):
        load_weights_into(model, small, prefix="unet.")
    with pytest.raises(UserError, match="does not match the config"):  # not a whole model
        load_model(small)
    # Through the training loop, from the config's field.
    out = train(_cfg(tmp_path / "t", steps=1, autoencoder=str(small)), dataset=TinyData(), text_encoder=FakeText())
    trained = load_model(out)
    assert trained.cfg.autoencoder.scale == 0.77
    assert all(torch.equal(v, src.autoencoder.state_dict()[k]) for k, v in trained.autoencoder.state_dict().items())
