"""The standing bad-input suite (issue 25): every way a user can get an input wrong ends the same.

Each case runs the command line in this process (``dragnuwa.cli.main``) or calls the web app's API
through ``gradio_client`` against a server started here on 127.0.0.1, and asserts:
- exit code 2 (the app: a gradio error carrying our message, not gradio's generic one);
- exactly one line on stderr, naming what is wrong (a pattern per case); no traceback;
- nothing left in the output folder or the temp dir (``TMPDIR``/``tempfile.tempdir`` point at a
  folder of the test's own);
- every input byte-identical afterwards (hashed before and after; no file added beside them).
Most cases fail before a model loads; those that need one share the bundled pipeline, loaded once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from dragnuwa.cli import main
from support import tiny_app_server

DEEP = 100_000  # arrays nested this deep: Python's JSON parser recurses past its limit


@dataclass
class Case:
    id: str
    argv: list[str]  # "{in}" and "{out}" are replaced by the inputs and the output folder
    match: str  # what the one line on stderr must say (a regex)
    files: dict[str, bytes | str] = field(default_factory=dict)  # extra input files
    setup: Callable[[Path], None] | None = None  # links, folders: anything files cannot say
    model: bool = False  # fails only after the bundled model is loaded


def _tracks(obj) -> str:
    return json.dumps(obj)


def _drag(**over) -> str:
    obj = {"width": 32, "height": 32, "tracks": [[[16, 16], [24, 20]]]}
    obj.update(over)
    return _tracks(obj)


GEN = ["generate", "--image", "{in}/img.png", "--out", "{out}/v.mp4"]


def gen_tracks(name: str) -> list[str]:
    return GEN + ["--tracks", "{in}/" + name]


def _link(src: str, dst: str, symbolic: bool = False):
    def make(d: Path):
        (os.symlink if symbolic else os.link)(d / src, d / dst)
    return make


def _folder(name: str):
    return lambda d: (d / name).mkdir()


CONFIG = "model: tiny\nsteps: 1\n"

CASES = [
    # ---------------------------------------------------------------- tracks JSON
    Case("tracks-nested-100000-deep", gen_tracks("t.json"), r"nested too deeply", {"t.json": "[" * DEEP + "]" * DEEP},
         model=True),
    Case("tracks-a-json-array", gen_tracks("t.json"), r"must be an object .* got a list", {"t.json": "[1, 2]"},
         model=True),
    Case("tracks-a-json-string", gen_tracks("t.json"), r"must be an object .* got a string", {"t.json": '"drag"'},
         model=True),
    Case("tracks-empty-file", gen_tracks("t.json"), r"tracks file .* is empty", {"t.json": ""}, model=True),
    Case("tracks-malformed", gen_tracks("t.json"), r"is not valid JSON", {"t.json": '{"width": 32,'}, model=True),
    Case("tracks-not-utf8", gen_tracks("t.json"), r"not UTF-8", {"t.json": b"\xff\xfe\x00garbage\x9c"}, model=True),
    Case("tracks-missing-key", gen_tracks("t.json"), r"missing the key 'tracks'", {"t.json": '{"width": 3, "height": 3}'},
         model=True),
    Case("tracks-width-1e30", gen_tracks("t.json"), r"at most 65,536", {"t.json": _drag(width=1e30)}, model=True),
    Case("tracks-height-70000", gen_tracks("t.json"), r"at most 65,536", {"t.json": _drag(height=70000)}, model=True),
    Case("tracks-width-zero", gen_tracks("t.json"), r"positive integers", {"t.json": _drag(width=0)}, model=True),
    Case("tracks-width-negative", gen_tracks("t.json"), r"positive integers", {"t.json": _drag(width=-32)},
         model=True),
    Case("tracks-width-fraction", gen_tracks("t.json"), r"positive integers", {"t.json": _drag(width=31.5)},
         model=True),
    Case("tracks-width-nan", gen_tracks("t.json"), r"width: nan is not a finite number",
         {"t.json": _drag().replace('"width": 32', '"width": NaN')}, model=True),
    Case("tracks-width-text", gen_tracks("t.json"), r"width: expected a number", {"t.json": _drag(width="32")},
         model=True),
    Case("tracks-width-true", gen_tracks("t.json"), r"width: expected a number", {"t.json": _drag(width=True)},
         model=True),
    Case("tracks-5000-digit-number", gen_tracks("t.json"), r"not valid JSON: Exceeds the limit",
         {"t.json": _drag().replace('"width": 32', '"width": ' + "9" * 5000)}, model=True),
    Case("tracks-empty-list", gen_tracks("t.json"), r"has no tracks", {"t.json": _drag(tracks=[])}, model=True),
    Case("tracks-list-is-text", gen_tracks("t.json"), r"'tracks' must be a list", {"t.json": _drag(tracks="drag")},
         model=True),
    Case("tracks-empty-track", gen_tracks("t.json"), r"track 0: must be a non-empty list", {"t.json": _drag(tracks=[[]])},
         model=True),
    Case("tracks-point-one-number", gen_tracks("t.json"), r"track 0, point 1: expected \[x, y\]",
         {"t.json": _drag(tracks=[[[1, 1], [2]]])}, model=True),
    Case("tracks-point-text", gen_tracks("t.json"), r"track 0, point 0, x: expected a number",
         {"t.json": _drag(tracks=[[["a", 1]]])}, model=True),
    Case("tracks-point-outside", gen_tracks("t.json"), r"x=500 is outside the image width",
         {"t.json": _drag(tracks=[[[1, 1], [500, 1]]])}, model=True),
    Case("tracks-point-infinite", gen_tracks("t.json"), r"not a finite number",
         {"t.json": '{"width": 32, "height": 32, "tracks": [[[1, Infinity]]]}'}, model=True),
    Case("tracks-file-missing", gen_tracks("nope.json"), r"tracks file not found", model=True),
    Case("tracks-file-is-a-folder", gen_tracks("dir.json"), r"tracks file not found", setup=_folder("dir.json"),
         model=True),
    # ---------------------------------------------------------------- images
    Case("image-missing", ["generate", "--image", "{in}/nope.png", "--out", "{out}/v.mp4"], r"image not found",
         model=True),
    Case("image-is-text", ["generate", "--image", "{in}/bad.png", "--out", "{out}/v.mp4"], r"not a readable image",
         {"bad.png": "not an image"}, model=True),
    Case("image-zero-bytes", ["generate", "--image", "{in}/zero.png", "--out", "{out}/v.mp4"],
         r"not a readable image", {"zero.png": b""}, model=True),
    Case("image-truncated-png", ["generate", "--image", "{in}/cut.png", "--out", "{out}/v.mp4"],
         r"not a readable image", setup=lambda d: (d / "cut.png").write_bytes((d / "img.png").read_bytes()[:60]),
         model=True),
    Case("image-is-a-folder", ["generate", "--image", "{in}/pic.png", "--out", "{out}/v.mp4"], r"image not found",
         setup=_folder("pic.png"), model=True),
    Case("image-corrupt-video", ["generate", "--image", "{in}/bad.mp4", "--out", "{out}/v.mp4"],
         r"cannot decode video", {"bad.mp4": bytes(range(256)) * 8}, model=True),
    # ---------------------------------------------------------------- videos
    Case("video-missing", ["tracks", "{in}/nope.mp4", "--out", "{out}/t.json"], r"video not found"),
    Case("video-corrupt", ["tracks", "{in}/bad.mp4", "--out", "{out}/t.json"], r"cannot decode video",
         {"bad.mp4": bytes(range(256)) * 8}),
    Case("video-zero-bytes", ["tracks", "{in}/zero.mp4", "--out", "{out}/t.json"], r"video is empty",
         {"zero.mp4": b""}),
    Case("video-is-text", ["tracks", "{in}/notes.mp4", "--out", "{out}/t.json"], r"cannot decode video",
         {"notes.mp4": "just some words, not a video\n" * 20}),
    Case("video-too-small-for-flow", ["tracks", "{in}/clip.mp4", "--out", "{out}/t.json", "--size", "8"],
         r"too small|at least|no trackable points"),
    Case("video-unknown-flow", ["tracks", "{in}/clip.mp4", "--out", "{out}/t.json", "--flow", "nope"], r"nope"),
    # ---------------------------------------------------------------- output paths
    Case("out-is-the-image-video", ["generate", "--image", "{in}/clip.mp4", "--out", "{in}/clip.mp4"],
         r"--out .*clip.mp4 is the same file as --image"),
    Case("out-is-the-image-gif", ["generate", "--image", "{in}/in.gif", "--out", "{in}/in.gif"],
         r"--out .*in.gif is the same file as --image"),
    Case("viz-is-the-video", ["tracks", "{in}/clip.mp4", "--out", "{out}/t.json", "--viz", "{in}/clip.mp4"],
         r"--viz .*clip.mp4 is the same file as VIDEO"),
    Case("overlay-is-out", GEN + ["--overlay", "{out}/v.mp4"], r"--out .*v.mp4 and --overlay .*v.mp4 name the same"),
    Case("overlay-is-out-spelt-otherwise", GEN + ["--overlay", "{out}/../out/./v.mp4"], r"name the same file"),
    Case("overlay-is-the-image", ["generate", "--image", "{in}/in.gif", "--out", "{out}/v.mp4",
                                  "--overlay", "{in}/in.gif"], r"--overlay .*in.gif is the same file as --image"),
    Case("out-is-the-tracks-video", ["generate", "--image", "{in}/img.png", "--tracks", "{in}/clip.mp4",
                                     "--out", "{in}/clip.mp4"], r"same file as --(image|tracks)"),
    Case("out-is-the-brush", ["generate", "--image", "{in}/img.png", "--tracks", "{in}/drag.json",
                              "--brush", "{in}/mask.gif", "--out", "{in}/mask.gif"], r"same file as --brush"),
    Case("out-hard-link-to-image", ["generate", "--image", "{in}/clip.mp4", "--out", "{in}/link.mp4"],
         r"--out .*link.mp4 is the same file as --image", setup=_link("clip.mp4", "link.mp4")),
    Case("out-symlink-to-image", ["generate", "--image", "{in}/clip.mp4", "--out", "{in}/sym.mp4"],
         r"--out .*sym.mp4 is the same file as --image", setup=_link("clip.mp4", "sym.mp4", symbolic=True)),
    Case("variant-file-is-the-image", ["generate", "--image", "{in}/v_seed1.mp4", "--out", "{in}/v.mp4",
                                       "--variants", "2"], r"--variants .*v_seed1.mp4 is the same file as --image",
         setup=lambda d: shutil.copy(d / "clip.mp4", d / "v_seed1.mp4")),
    Case("variant-file-is-the-overlay", GEN + ["--variants", "3", "--seed", "4", "--overlay", "{out}/v_seed5.mp4"],
         r"name the same file"),
    Case("out-under-a-file", ["generate", "--image", "{in}/img.png", "--out", "{in}/img.png/v.mp4"],
         r"is a file, not a folder"),
    Case("out-is-a-folder", ["generate", "--image", "{in}/img.png", "--out", "{in}/vids.mp4"],
         r"is an existing folder", setup=_folder("vids.mp4")),
    Case("out-avi", ["generate", "--image", "{in}/img.png", "--out", "{out}/v.avi"], r"must end in .mp4 or .gif"),
    Case("overlay-png", GEN + ["--overlay", "{out}/o.png"], r"--overlay must end in"),
    Case("tracks-out-not-json", ["tracks", "{in}/clip.mp4", "--out", "{out}/t.mp4"], r"must end in .json"),
    Case("synth-into-a-file", ["synth", "{in}/img.png", "--count", "1"], r"is an existing file"),
    Case("demo-out-under-a-file", ["demo", "--out", "{in}/img.png/d.mp4"], r"is a file, not a folder"),
    Case("train-init-is-the-export", ["train", "--config", "{in}/c.yaml", "--init", "{in}/model.safetensors",
                                      "--out-dir", "{in}"], r"--out-dir .*model.safetensors is the same file as --init"),
    Case("train-config-in-out-dir", ["train", "--config", "{in}/config.yaml", "--out-dir", "{in}"],
         r"config.yaml is the same file as --config", {"config.yaml": CONFIG}),
    Case("autoencoder-init-is-the-export", ["train-autoencoder", "--config", "{in}/c.yaml", "--init",
                                            "{in}/model.safetensors", "--out-dir", "{in}"],
         r"same file as --init"),
    Case("failed-run-keeps-existing-out", ["generate", "--image", "{in}/bad.png", "--out", "{in}/existing.mp4"],
         r"not a readable image", {"bad.png": "not an image"},
         setup=lambda d: shutil.copy(d / "clip.mp4", d / "existing.mp4"), model=True),
    # ---------------------------------------------------------------- numbers
    Case("frames-zero", GEN + ["--frames", "0"], r"expected a positive integer, got 0"),
    Case("frames-1000", GEN + ["--frames", "1000"], r"frames must be between 2 and \d+", model=True),
    Case("steps-negative", GEN + ["--steps", "-1"], r"expected a positive integer"),
    Case("steps-word", GEN + ["--steps", "many"], r"expected a positive integer, got 'many'"),
    Case("seed-negative", GEN + ["--seed", "-1"], r"seed must be between 0 and 2\^63 - 1"),
    Case("seed-2-to-the-70", GEN + ["--seed", str(2**70)], r"seed must be between"),
    Case("guidance-nan", GEN + ["--guidance", "nan"], r"guidance must be a number between 0 and 50", model=True),
    Case("traj-guidance-huge", GEN + ["--traj-guidance", "1e9"], r"traj-guidance must be a number between",
         model=True),
    Case("motion-init-negative", GEN + ["--motion-init", "-1"], r"motion-init must be a noise level", model=True),
    Case("fps-zero", GEN + ["--fps", "0"], r"fps must be a number above 0"),
    Case("fps-infinite", GEN + ["--fps", "inf"], r"fps must be a number above 0"),
    Case("upscale-100", GEN + ["--upscale", "100"], r"upscale must be a whole number from 1 to 16"),
    Case("variants-17", GEN + ["--variants", "17"], r"variants must be a whole number from 1 to 16"),
    Case("seeds-past-2-to-the-63", GEN + ["--variants", "3", "--seed", str(2**63 - 2)], r"pass 2\^63 - 1"),
    Case("synth-size-100000", ["synth", "{out}/clips", "--size", "100000"], r"at most 4096 px"),
    Case("synth-size-zero", ["synth", "{out}/clips", "--size", "0"], r"positive numbers"),
    Case("synth-count-zero", ["synth", "{out}/clips", "--count", "0"], r"expected a positive integer"),
    Case("synth-one-frame", ["synth", "{out}/clips", "--frames", "1"], r"--frames must be at least 2"),
    Case("tracks-max-side-negative", ["tracks", "{in}/clip.mp4", "--out", "{out}/t.json", "--max-side", "-1"],
         r"expected 0 or more"),
    Case("app-port-70000", ["app", "--port", "70000"], r"between 1 and 65535"),
    Case("demo-steps-zero", ["demo", "--steps", "0", "--out", "{out}/d.mp4"], r"expected a positive integer"),
    # ---------------------------------------------------------------- model files
    Case("model-missing", GEN + ["--model", "{in}/nope.safetensors"], r"model file not found"),
    Case("model-is-text", GEN + ["--model", "{in}/bad.safetensors"], r"corrupt model file",
         {"bad.safetensors": "not a model"}),
    Case("model-zero-bytes", GEN + ["--model", "{in}/zero.safetensors"], r"corrupt model file",
         {"zero.safetensors": b""}),
    Case("model-is-a-folder", GEN + ["--model", "{in}/m.safetensors"], r"m.safetensors",
         setup=_folder("m.safetensors")),
    Case("train-init-corrupt", ["train", "--config", "{in}/c.yaml", "--init", "{in}/bad.safetensors",
                                "--out-dir", "{out}/run"], r"bad.safetensors", {"bad.safetensors": "not a model"}),
    # ---------------------------------------------------------------- motion files
    Case("flow-missing", GEN + ["--flow", "{in}/nope.npy"], r"motion file not found", model=True),
    Case("flow-corrupt", GEN + ["--flow", "{in}/bad.npy"], r"cannot read motion file", {"bad.npy": "not numpy"},
         model=True),
    Case("flow-wrong-shape", GEN + ["--flow", "{in}/flat.npy"], r"motion must be maps",
         setup=lambda d: np.save(d / "flat.npy", np.zeros((4, 5), np.float32)), model=True),
    Case("brush-without-tracks", GEN + ["--brush", "{in}/mask.gif"], r"--brush needs --tracks"),
    Case("brush-missing", gen_tracks("drag.json") + ["--brush", "{in}/nope.png"], r"not found", model=True),
    Case("brush-misses-every-drag", gen_tracks("drag.json") + ["--brush", "{in}/corner.png"],
         r"starts outside every painted region", model=True),
    # ---------------------------------------------------------------- configs
    Case("config-empty-train", ["train", "--config", "{in}/empty.yaml"], r"empty.yaml is empty", {"empty.yaml": ""}),
    Case("config-empty-autoencoder", ["train-autoencoder", "--config", "{in}/empty.yaml"], r"empty.yaml is empty",
         {"empty.yaml": "# nothing here\n\n"}),
    Case("config-missing", ["train", "--config", "{in}/nope.yaml"], r"config not found"),
    Case("config-bad-yaml", ["train", "--config", "{in}/bad.yaml"], r"not valid YAML", {"bad.yaml": "model: [tiny\n"}),
    Case("config-not-utf8", ["train", "--config", "{in}/bin.yaml"], r"not UTF-8", {"bin.yaml": b"\xff\xfe\x9c\x00"}),
    Case("config-nested-deep", ["train", "--config", "{in}/deep.yaml"], r"nested too deeply",
         {"deep.yaml": "[" * 100_000 + "]" * 100_000}),
    Case("config-a-list", ["train", "--config", "{in}/list.yaml"], r"expected a mapping", {"list.yaml": "- 1\n- 2\n"}),
    Case("config-unknown-key", ["train", "--config", "{in}/c2.yaml"], r"unknown key 'stpes'",
         {"c2.yaml": "stpes: 3\n"}),
    Case("config-number-key", ["train", "--config", "{in}/c2.yaml"], r"unknown key '1'", {"c2.yaml": "1: 3\n"}),
    Case("config-wrong-type", ["train", "--config", "{in}/c2.yaml"], r"steps: expected int",
         {"c2.yaml": "steps: many\n"}),
    Case("config-nan-lr", ["train", "--config", "{in}/c2.yaml"], r"lr: expected a finite number",
         {"c2.yaml": "lr: .nan\n"}),
    Case("config-stage-3", ["train", "--config", "{in}/c2.yaml"], r"stage must be 1 or 2", {"c2.yaml": "stage: 3\n"}),
    Case("config-negative-steps", ["train-autoencoder", "--config", "{in}/c2.yaml"], r"steps must be positive",
         {"c2.yaml": "steps: -5\n"}),
]


# ---------------------------------------------------------------- helpers


def _make_assets(d: Path) -> None:
    """Valid inputs every case can name: a 32x32 image with a disc, a 4-frame clip (mp4 and GIF), a
    drag, a motion brush painted on a corner and another as a GIF, a training config, a model file."""
    from dragnuwa.video import write_video

    yy, xx = np.mgrid[0:32, 0:32]
    img = np.full((32, 32, 3), 90, np.uint8)
    img[(xx - 16) ** 2 + (yy - 16) ** 2 <= 36] = (230, 40, 40)
    Image.fromarray(img).save(d / "img.png")
    clip = np.stack([np.roll(img, t, axis=1) for t in range(4)])
    write_video(d / "clip.mp4", clip)
    write_video(d / "in.gif", clip)
    (d / "drag.json").write_text(_drag())
    corner = np.zeros((32, 32), np.uint8)
    corner[:5, :5] = 255
    Image.fromarray(corner).save(d / "corner.png")
    Image.fromarray(corner).save(d / "mask.gif")
    (d / "c.yaml").write_text(CONFIG)
    (d / "model.safetensors").write_bytes(b"weights the run would export over")


def _hashes(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` -> the sha256 of its bytes (folders: "dir")."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _entries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _one_line(err: str) -> list[str]:
    """The lines a terminal shows: a progress bar that a later "\r" wrote over is gone."""
    return [line.split("\r")[-1] for line in err.split("\n") if line.split("\r")[-1].strip()]


@pytest.fixture(scope="module")
def bundled_pipeline():
    """The bundled model, loaded once for the module: the command line's cached pipeline reuses it."""
    from dragnuwa.pipeline import load_pipeline

    return load_pipeline("bundled")


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """inputs (valid assets), an empty output folder (also the working directory) and an empty temp dir."""
    dirs = {name: tmp_path / name for name in ("in", "out", "tmp")}
    for d in dirs.values():
        d.mkdir()
    _make_assets(dirs["in"])
    monkeypatch.setenv("TMPDIR", str(dirs["tmp"]))
    monkeypatch.setattr(tempfile, "tempdir", str(dirs["tmp"]))
    monkeypatch.chdir(dirs["out"])
    return dirs


def test_the_suite_covers_at_least_60_cases():
    kinds = {c.id.split("-")[0] for c in CASES}
    assert len(CASES) + len(APP_CASES) >= 60 and len({c.id for c in CASES}) == len(CASES), len(CASES)
    assert {"tracks", "image", "video", "out", "frames", "model", "config", "flow", "brush"} <= kinds


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_refuses_bad_input_with_one_line(case, sandbox, capsys, request):
    if case.model:
        request.getfixturevalue("bundled_pipeline")
    ind, out, tmp = sandbox["in"], sandbox["out"], sandbox["tmp"]
    for name, content in case.files.items():
        (ind / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    if case.setup:
        case.setup(ind)
    before = _hashes(ind)
    argv = [a.replace("{in}", str(ind)).replace("{out}", str(out)) for a in case.argv]
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    err = capsys.readouterr().err
    lines = _one_line(err)
    assert code == 2, (argv, err)
    assert len(lines) == 1 and "error:" in lines[0], err
    assert re.search(case.match, lines[0]), lines[0]
    assert "Traceback" not in err
    assert _entries(out) == [] and _entries(tmp) == []
    assert _hashes(ind) == before


# ---------------------------------------------------------------- the app's API


@dataclass
class AppCase:
    id: str
    args: dict  # overrides of the valid call's arguments ("image": a file name in the inputs, or None)
    match: str
    files: dict[str, bytes | str] = field(default_factory=dict)


GOOD_TRACKS = _drag()
APP_CASES = [
    AppCase("no-image", {"image": None}, r"no image"),
    AppCase("image-is-text", {"image": "bad.png"}, r"not a readable image", {"bad.png": "not an image"}),
    AppCase("tracks-nested-100000-deep", {"tracks": "[" * DEEP + "]" * DEEP}, r"nested too deeply"),
    AppCase("tracks-a-json-array", {"tracks": "[[1, 2]]"}, r"must be an object .* got a list"),
    AppCase("tracks-a-json-string", {"tracks": '"drag"'}, r"must be an object .* got a string"),
    AppCase("tracks-empty-list", {"tracks": _drag(tracks=[])}, r"has no tracks"),
    AppCase("tracks-malformed", {"tracks": "{"}, r"tracks text is not valid JSON"),
    AppCase("tracks-width-1e30", {"tracks": _drag(width=1e30)}, r"at most 65,536"),
    AppCase("tracks-point-outside", {"tracks": _drag(tracks=[[[1, 1], [500, 1]]])}, r"x=500 is outside"),
    AppCase("frames-empty", {"frames": None}, r"frames must be a whole number, got None"),
    AppCase("frames-fraction", {"frames": 2.5}, r"frames must be a whole number, got 2.5"),
    AppCase("frames-too-many", {"frames": 1000}, r"frames must be between 2 and"),
    AppCase("steps-zero", {"steps": 0}, r"steps must be between 1 and"),
    AppCase("seed-negative", {"seed": -1}, r"seed must be a whole number between 0"),
    AppCase("guidance-empty", {"guidance": None}, r"guidance must be a finite number"),
    AppCase("fit-zoom", {"fit": "zoom"}, r"fit must be one of"),
    AppCase("motion-region-x", {"motion_region": "x"}, r"motion region must be"),
    AppCase("motion-init-negative", {"motion_init": -1}, r"motion-init must be"),
]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """The app on 127.0.0.1 (tiny random model) with its temp dir and gradio's cache in a folder of
    this module's own; yields (url, that folder)."""
    tmp = tmp_path_factory.mktemp("app_tmp")
    with tiny_app_server(tmp) as (url, _demo):
        yield url, tmp


@pytest.fixture(scope="module")
def app_client(app_server):
    from gradio_client import Client

    return Client(app_server[0], verbose=False)


def _call(client, folder: Path, args: dict):
    from gradio_client import handle_file

    call = {"image": "img.png", "tracks": GOOD_TRACKS, "text": "", "frames": 4, "steps": 1, "seed": 0,
            "guidance": 1.0, "traj_guidance": 1.0, "fit": "crop", "motion_init": None, "motion_region": "disc"}
    call.update(args)
    image = None if call["image"] is None else handle_file(str(folder / call["image"]))
    return client.predict(image, call["tracks"], call["text"], call["frames"], call["steps"], call["seed"],
                          call["guidance"], call["traj_guidance"], fit=call["fit"], motion_init=call["motion_init"],
                          motion_region=call["motion_region"], api_name="/generate")


@pytest.mark.parametrize("case", APP_CASES, ids=[c.id for c in APP_CASES])
def test_app_api_refuses_bad_call_with_our_message(case, app_server, app_client, tmp_path, capfd):
    _, server_tmp = app_server
    _make_assets(tmp_path)
    for name, content in case.files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    before, server_before = _hashes(tmp_path), set(_entries(server_tmp))
    capfd.readouterr()
    with pytest.raises(Exception) as info:
        _call(app_client, tmp_path, case.args)
    message = str(info.value).strip()
    assert re.search(case.match, message) and "\n" not in message, message
    assert "upstream Gradio app has raised an exception" not in message
    assert "Traceback" not in capfd.readouterr().err  # nor in the server's log
    # Nothing of ours is left in the server's temp dir: the only new files are in gradio's upload
    # cache (GRADIO_TEMP_DIR, which gradio owns and clears): its copy of the uploaded image, and the
    # empty spool file its multipart parser leaves beside it.
    new = set(_entries(server_tmp)) - server_before
    assert all(e.startswith("gradio" + os.sep) for e in new), new
    uploads = [e for e in new if (server_tmp / e).is_file()]
    assert all(Path(e).name == case.args.get("image", "img.png")
               or Path(e).name.startswith("tmp") and (server_tmp / e).stat().st_size == 0 for e in uploads), uploads
    assert _hashes(tmp_path) == before


def test_app_generates_with_empty_tracks_text_and_refuses_an_empty_list(app_server, app_client, tmp_path):
    """The CLI's rule in the app: no tracks given (empty text) animates from the text and image alone
    (and returns no tracks file, as it has none); tracks given must hold one (the refusal above)."""
    from dragnuwa.video import read_video

    _make_assets(tmp_path)
    video, tpath = _call(app_client, tmp_path, {"tracks": ""})
    assert read_video(video)[0].shape == (4, 32, 32, 3) and tpath is None
    video, tpath = _call(app_client, tmp_path, {})
    assert json.loads(Path(tpath).read_text())["tracks"] == [[[16, 16], [24, 20]]]


KILLED_WRITE = """
import sys, time
from dragnuwa.errors import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half a video")
    print("writing", flush=True)
    time.sleep(600)
"""


def test_a_killed_write_is_removed_by_the_next_run_that_writes_there(tmp_path):
    """SIGKILL mid-write leaves atomic_path's hidden temporary; the next run writing into that folder
    removes it, silently, and leaves alone a live writer's temporary and the user's own files."""
    import signal
    import subprocess
    import sys

    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / ".notes.tmp").write_text("the user's")  # not atomic_path's pattern
    killed = subprocess.Popen([sys.executable, "-c", KILLED_WRITE, str(folder / "out.mp4")], stdout=subprocess.PIPE,
                              text=True)
    live = subprocess.Popen([sys.executable, "-c", KILLED_WRITE, str(folder / "other.mp4")], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert killed.stdout.readline().strip() == live.stdout.readline().strip() == "writing"
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        left = sorted(p.name for p in folder.iterdir())
        assert len(left) == 3 and sum(name.startswith(".out.tmp.") for name in left) == 1, left
        r = subprocess.run([sys.executable, "-m", "dragnuwa.cli", "synth", str(folder), "--count", "1",
                            "--frames", "2", "--size", "16"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and "error" not in r.stderr.lower(), r.stderr
        names = sorted(p.name for p in folder.iterdir())
        assert not any(name.startswith(".out.tmp.") for name in names), names
        assert ".notes.tmp" in names and sum(name.startswith(".other.tmp.") for name in names) == 1, names
    finally:
        live.kill()
        live.wait()
