"""Text at inference for DragNUWA on SVD (issue #28): a model fine-tuned with ``text: minilm`` reads a prompt.

A tiny random SVD is trained for 2 steps with text and exported; the export's zero-initialised text
output projections are then filled with random values so that the text visibly moves the video (2
steps barely move them). The bundled MiniLM encodes the prompts, as ``dragnuwa generate`` does.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import dragnuwa
from dragnuwa.svd.train_config import SVDDataConfig, SVDTrainConfig

testing = pytest.importorskip("dragnuwa.svd.testing")
DEMO = Path(dragnuwa.__file__).parent / "assets" / "examples" / "demo"
KW = dict(width=64, height=64, num_frames=4, num_inference_steps=2, output_type="latent")
TRACKS = [[[10, 10], [50, 40]], [[32, 50]]]
PROMPT = "a red ball rolls to the left"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(tiny svd folder, a model trained with text, the same UNet without its text adapter)."""
    from safetensors.torch import load_file, save_file

    from dragnuwa.svd.text import TEXT_FOLDER, WEIGHTS
    from dragnuwa.svd.training import train

    root = tmp_path_factory.mktemp("svd_text")
    tiny = root / "svd"
    testing.make_tiny_svd(tiny)
    testing.make_tiny_dragnuwa(tiny)
    cfg = SVDTrainConfig(init=str(tiny), width=64, height=64, frames=4, lora_rank=4, steps=2, batch_size=1,
                         lr=1e-3, warmup=1, mixed_precision="no", gradient_checkpointing=False, save_dtype="fp32",
                         ckpt_every=2, log_every=1, text="minilm", out_dir=str(root / "run"),
                         data=SVDDataConfig(count=2, max_tracks=2))
    train(cfg)
    run = Path(cfg.out_dir)
    weights = run / TEXT_FOLDER / WEIGHTS
    state = load_file(str(weights))
    g = torch.Generator().manual_seed(0)
    perturbed = {k: (v + torch.randn(v.shape, generator=g) * 0.5 if "to_out_text" in k else v) for k, v in state.items()}
    assert sum("to_out_text" in k for k in state) >= 2
    save_file(perturbed, str(weights))
    plain = root / "plain"
    plain.mkdir()
    shutil.copytree(run / "unet", plain / "unet")
    return str(tiny), str(run), str(plain)


def _load(model, svd, **kw):
    from dragnuwa.svd.pipeline import load_svd_pipeline

    pipe = load_svd_pipeline(model, svd=svd, **kw)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, **kw):
    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    return pipe(image, tracks=TRACKS, generator=torch.Generator().manual_seed(0), **{**KW, **kw}).frames


@pytest.fixture(scope="module")
def pipes(runs):
    tiny, run, plain = runs
    return _load(run, tiny), _load(plain, tiny)


def _adapter_processors(unet):
    from dragnuwa.svd.text import ImageTokenProcessor, TextCrossAttnProcessor

    procs = unet.attn_processors.values()
    return ([p for p in procs if isinstance(p, TextCrossAttnProcessor)],
            [p for p in procs if isinstance(p, ImageTokenProcessor)])


def test_the_adapter_loads_after_sdpa_and_survives_it(runs, pipes):
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
    from safetensors.torch import load_file

    from dragnuwa.svd.pipeline import use_sdpa
    from dragnuwa.svd.text import TEXT_FOLDER, WEIGHTS, text_parameters

    text, plain = pipes
    assert text.has_text and text.text_adapter[1] == "minilm" and not plain.has_text
    spatial, temporal = _adapter_processors(text.unet)
    names = [n for n in text.unet.attn_processors if n.endswith("attn2.processor")]
    assert len(spatial) == sum("temporal" not in n for n in names) > 0  # every cross-attention has it
    assert len(temporal) == sum("temporal" in n for n in names) > 0
    assert all(isinstance(p.base, AttnProcessor2_0) for p in spatial + temporal)
    # use_sdpa again, after the processors were swapped for the plain ones: the adapter is kept, with its weights.
    saved = load_file(str(Path(runs[1]) / TEXT_FOLDER / WEIGHTS))
    for p in spatial + temporal:
        p.base = AttnProcessor()
    use_sdpa(text)
    assert _adapter_processors(text.unet)[0] == spatial and _adapter_processors(text.unet)[1] == temporal
    assert all(isinstance(p.base, AttnProcessor2_0) for p in spatial + temporal)
    params = text_parameters(text.unet)
    assert len(params) == sum(k.startswith("unet.") for k in saved) > 0
    for name, p in params.items():
        assert torch.equal(p, saved[f"unet.{name}"]), name
    assert sum(isinstance(p, AttnProcessor2_0) for p in text.unet.attn_processors.values()) > 0


def test_the_prompt_moves_the_video_and_an_empty_prompt_is_the_image_only_model(pipes):
    text, plain = pipes
    reference = _run(plain)
    assert torch.equal(_run(text), reference)  # no prompt: bit-identical to the model without text
    assert torch.equal(_run(text, prompt="  "), reference)
    assert torch.equal(_run(plain, prompt=PROMPT), reference)  # a model without text ignores it
    prompted = _run(text, prompt=PROMPT)
    assert (prompted - reference).abs().max().item() > 1e-2
    other = _run(text, prompt="a blue car drives away quickly")
    assert (prompted - other).abs().max().item() > 1e-3
    assert (_run(text, prompt=PROMPT, text_guidance_scale=4.0) - prompted).abs().max().item() > 1e-2


def test_guidance_passes_and_the_neutral_text_scale_is_the_official_guidance(pipes, monkeypatch):
    """Which passes run, and how they combine: the UNet is replaced by a fake whose passes are known
    numbers (no image: 0; image and text: 1; image without text: 0.5), and the guided prediction the
    scheduler gets is recorded."""
    text, _ = pipes
    calls, preds = [], []

    def fake_unet(sample, t, encoder_hidden_states=None, **kw):
        image = encoder_hidden_states[:, :1].abs().amax(dim=(1, 2)) > 0
        has_text = encoder_hidden_states[:, 1:].abs().amax(dim=(1, 2)) > 0 if encoder_hidden_states.shape[1] > 1 \
            else torch.zeros_like(image)
        calls.append((sample.shape[0], encoder_hidden_states.shape[1] > 1, has_text.tolist()))
        value = torch.where(image, torch.where(has_text, 1.0, 0.5), 0.0)
        return (value.view(-1, 1, 1, 1, 1).expand(*sample.shape[:2], 4, *sample.shape[3:]).clone(),)

    step = text.scheduler.step
    monkeypatch.setattr(text.unet, "forward", fake_unet)
    monkeypatch.setattr(text.scheduler, "step", lambda pred, t, x: preds.append(pred[0, :, 0, 0, 0]) or step(pred, t, x))
    ramp = torch.linspace(1.0, 2.5, 4)
    steps = KW["num_inference_steps"]
    cases = (({}, (2, False, [False, False]), ramp * 0.5),
             ({"prompt": PROMPT}, (2, True, [False, True]), ramp),  # neutral: exactly the official ramp
             ({"prompt": PROMPT, "text_guidance_scale": 3.0}, (3, True, [False, True, False]), ramp + 2 * 0.5),
             ({"prompt": PROMPT, "max_guidance_scale": 1.0}, (1, True, [True]), torch.ones(4)),
             ({"prompt": PROMPT, "max_guidance_scale": 1.0, "text_guidance_scale": 2.0}, (2, True, [True, False]),
              torch.full((4,), 1.5)))
    for kw, passes, guided in cases:
        calls.clear(), preds.clear()
        _run(text, **kw)
        assert calls == [passes] * steps, (kw, calls)
        assert len(preds) == steps and all(torch.equal(p, guided) for p in preds), (kw, preds)


def _generate(main, model, svd, out, *extra):
    return main(["generate", "--model", model, "--svd", svd, "--image", str(DEMO / "image.png"), "--tracks",
                 str(DEMO / "tracks.json"), "--out", str(out), "--steps", "1", "--frames", "4", "--size", "64x64",
                 *extra])


def test_generate_reads_the_prompt_of_a_model_trained_with_text(runs, tmp_path, capsys):
    from dragnuwa.cli import main
    from dragnuwa.video import read_video

    tiny, run, plain = runs
    paths = {k: tmp_path / f"{k}.mp4" for k in ("text", "none", "plain")}
    capsys.readouterr()
    assert _generate(main, run, tiny, paths["text"], "--text", PROMPT) == 0
    assert not [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert _generate(main, run, tiny, paths["none"]) == 0
    assert _generate(main, plain, tiny, paths["plain"], "--text", PROMPT) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "%|" not in line]
    assert err == ["warning: the svd backend has no text input yet and ignores the prompt"], err
    video = {k: read_video(p)[0].astype(int) for k, p in paths.items()}
    assert video["text"].shape == (4, 64, 64, 3)
    assert np.array_equal(video["none"], video["plain"])  # without a prompt the text model is the plain one
    assert np.abs(video["text"][1:] - video["none"][1:]).max() > 2
