"""The command line end to end: real subprocesses, exit codes, one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np


def run(*args, cwd=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "dragnuwa.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_synth_then_tracks_with_overlay(tmp_path):
    r = run("synth", str(tmp_path / "clips"), "--count", "1", "--frames", "8", "--size", "128", "--seed", "5")
    assert r.returncode == 0, r.stderr
    video = next((tmp_path / "clips").glob("*.mp4"))
    r = run("tracks", str(video), "--out", str(tmp_path / "t.json"), "--max-tracks", "4",
            "--viz", str(tmp_path / "viz.mp4"))
    assert r.returncode == 0, r.stderr
    obj = json.loads((tmp_path / "t.json").read_text())
    assert obj["width"] == 128 and 1 <= len(obj["tracks"]) <= 4 and all(len(t) == 8 for t in obj["tracks"])
    from dragnuwa.video import read_video

    frames, _ = read_video(tmp_path / "viz.mp4")
    assert frames.shape == (8, 128, 128, 3)


def test_tracks_run_flow_at_max_side_and_keep_the_video_size(tmp_path, sliding_video):
    """The sliding texture (3, 1) px per frame at 160x96: flow at 80 px a side, or at full size,
    gives tracks in the video's pixels that move by that step."""
    for side in ("80", "0"):
        out = tmp_path / f"t{side}.json"
        r = run("tracks", str(sliding_video), "--out", str(out), "--max-tracks", "5", "--max-side", side)
        assert r.returncode == 0, r.stderr
        obj = json.loads(out.read_text())
        steps = np.diff(np.array(obj["tracks"], float), axis=1)
        assert (obj["width"], obj["height"]) == (160, 96) and steps.shape[1:] == (5, 2)
        assert np.abs(steps.mean(axis=(0, 1)) - [3.0, 1.0]).max() < 0.2, (side, steps.mean(axis=(0, 1)))
    r = run("tracks", str(sliding_video), "--out", str(tmp_path / "t.json"), "--max-side", "-1")
    assert r.returncode == 2 and "expected 0 or more" in r.stderr


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    (tmp_path / "corrupt.mp4").write_bytes(os.urandom(2000))
    (tmp_path / "a_file").write_text("not a folder")
    video = str(tmp_path / "clip.mp4")
    from dragnuwa.video import write_video

    write_video(video, np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8))
    from PIL import Image

    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "img.png")
    corner = np.zeros((32, 32), np.uint8)
    corner[:5, :5] = 255
    Image.fromarray(corner).save(tmp_path / "corner.png")
    (tmp_path / "drag.json").write_text(json.dumps({"width": 32, "height": 32, "tracks": [[[16, 16], [24, 20]]]}))
    cases = [
        # Outputs that cannot be written are refused before any work (one line, not a traceback).
        ("tracks", video, "--out", str(tmp_path / "a_file" / "t.json")),
        ("tracks", video, "--out", str(tmp_path / "t.json"), "--viz", str(tmp_path / "a_file" / "v.mp4")),
        ("tracks", video, "--out", str(tmp_path / "t.json"), "--viz", str(tmp_path / "v.avi")),
        ("tracks", video, "--out", str(tmp_path / "v.mp4")),  # the tracks are JSON, not a video
        ("synth", str(tmp_path / "a_file"), "--count", "1"),
        ("synth", str(tmp_path / "a_file" / "clips"), "--count", "1"),
        ("app", "--port", "70000"),
        ("generate", "--image", str(tmp_path / "img.png"), "--out", str(tmp_path / "a_file" / "v.mp4")),
        ("generate", "--image", str(tmp_path / "img.png"), "--out", str(tmp_path / "v.mp4"),
         "--overlay", str(tmp_path / "a_file" / "o.gif")),
        ("tracks", str(tmp_path / "corrupt.mp4"), "--out", str(tmp_path / "t.json")),
        ("tracks", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "t.json")),
        ("tracks", str(tmp_path / "corrupt.mp4"), "--out", str(tmp_path / "t.json"), "--flow", "nope"),
        ("synth", str(tmp_path / "x"), "--frames", "1"),
        ("tracks", video, "--out", str(tmp_path / "t.json"), "--size", "8"),  # too small for optical flow
        # Seeds that torch's or numpy's generator would refuse with a traceback.
        ("synth", str(tmp_path / "x"), "--seed", "-1"),
        ("generate", "--image", str(tmp_path / "img.png"), "--out", str(tmp_path / "v.mp4"), "--seed", str(2**70)),
        # A brush says which pixels move along the drags: it needs drags, a readable mask and a drag in it.
        ("generate", "--image", str(tmp_path / "img.png"), "--brush", str(tmp_path / "img.png"),
         "--out", str(tmp_path / "v.mp4")),
        ("generate", "--image", str(tmp_path / "img.png"), "--tracks", str(tmp_path / "drag.json"),
         "--brush", str(tmp_path / "missing.png"), "--out", str(tmp_path / "v.mp4")),
        ("generate", "--image", str(tmp_path / "img.png"), "--tracks", str(tmp_path / "drag.json"),
         "--brush", str(tmp_path / "corner.png"), "--out", str(tmp_path / "v.mp4")),
    ]
    for args in cases:
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "t.json").exists() and not (tmp_path / "v.mp4").exists()


def test_existing_output_survives_a_failed_run(tmp_path):
    out = tmp_path / "t.json"
    out.write_text("keep me")
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(500))
    r = run("tracks", str(tmp_path / "corrupt.mp4"), "--out", str(out))
    assert r.returncode == 2 and out.read_text() == "keep me"
