"""`dragnuwa prepare`: a video corpus -> WebDataset shards of training clips, on Ray Data.

The paper trains on real captioned video (WebVid-10M, VideoCap), running the Trajectory Sampler
(Sec. 3.2) over every clip. Per video: decode (PyAV), cut ``clips_per_video`` clips of ``frames``
frames every ``stride``-th source frame, fitted to ``size`` (centre crop), skipping clips across a
scene cut; per clip: dense optical flow both ways, the sampler's candidate tracks, optionally the
forward flow for stage 1 (float16 on a grid ``flow_factor`` times smaller, ``data/shards.py``).

Videos are cut into shards of ``videos_per_shard`` in a fixed order; each shard is one Ray task
that writes its tar atomically and then a record ``shard-NNNNNN.json`` (counts, bytes, failures with
reasons, CPU seconds per stage, the worker's peak memory). A rerun skips every shard with a record, so
an interrupted job resumes where it stopped. A video that cannot be used (corrupt, unreadable, too
short, no caption) is listed with its reason and never stops the job. ``manifest.json`` sums the
records and keeps the settings (a rerun with other settings into the same folder is refused).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import resource
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dragnuwa.data.shards import MANIFEST, encode_sample, write_shard
from dragnuwa.errors import UserError, atomic_write_text, check_output

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
TABLE_SUFFIXES = (".csv", ".parquet")
STAGES = ("decode", "flow", "tracks", "encode", "write")


@dataclass
class PrepareConfig:
    """How clips are cut and what is stored (recorded in the manifest)."""

    frames: int = 16
    stride: int = 2  # source frames per clip frame
    clips_per_video: int = 1
    size: tuple[int, int] = (256, 256)  # (W, H), centre crop
    flow: bool = True  # store the forward flow for stage 1
    flow_factor: int = 8  # the stored flow grid is size / flow_factor (a latent grid)
    videos_per_shard: int = 100
    scene_cut: float = 6.0  # a frame differing from the last by this many times the clip's median is a cut
    crf: int = 15  # H.264 quality of the stored clips (lower: better, larger)
    seed: int = 0
    # The Trajectory Sampler's settings (trajectory.TrajectorySampler)
    sampler: dict = field(default_factory=lambda: {"flow": "dis", "consistency_flow": "dis_fast"})

    def check(self) -> None:
        if self.frames < 2:
            raise UserError(f"--frames must be at least 2, got {self.frames}")
        if self.stride < 1 or self.clips_per_video < 1 or self.videos_per_shard < 1:
            raise UserError("--stride, --clips-per-video and --videos-per-shard must be at least 1")
        if min(self.size) < 16:
            raise UserError(f"--size must be at least 16 px a side, got {self.size[0]}x{self.size[1]}")
        if self.flow_factor < 1 or min(self.size) // self.flow_factor < 2:
            raise UserError(f"--flow-factor {self.flow_factor} leaves no flow grid at {self.size[0]}x{self.size[1]}")
        from dragnuwa.flow import get_flow

        get_flow(self.sampler.get("flow", "dis"))  # an unknown backend fails before any work


@dataclass
class VideoEntry:
    index: int  # position in the corpus (the sample keys' first part)
    path: str
    caption: str | None
    name: str  # as the manifest names it (relative to SOURCE)


def _read_table(path: Path) -> list[dict]:
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as e:
        raise UserError(f"cannot read table {path}: {e.__class__.__name__}: {str(e).splitlines()[0]}") from None


def _columns(rows: list[dict], path: Path, video_column: str, caption_column: str) -> None:
    have = list(rows[0]) if rows else []
    for flag, col in (("--video-column", video_column), ("--caption-column", caption_column)):
        if col not in have:
            raise UserError(f"{path.name} has no column {col!r} ({flag}); its columns: {', '.join(have) or 'none'}")


def list_videos(source: str | Path, captions: str | Path | None = None, video_column: str = "path",
                caption_column: str = "caption") -> list[VideoEntry]:
    """The corpus: a folder of videos (captions from NAME.txt beside each, or ``captions``, a CSV/Parquet
    table) or a table of video paths and captions (WebVid layout; paths relative to the table)."""
    source = Path(source)
    if not source.exists():
        raise UserError(f"SOURCE not found: {source}")
    if source.is_file():
        if source.suffix.lower() not in TABLE_SUFFIXES:
            raise UserError(f"SOURCE must be a folder of videos or a .csv/.parquet table, got {source}")
        rows = _read_table(source)
        if not rows:
            raise UserError(f"{source} lists no videos")
        _columns(rows, source, video_column, caption_column)
        out = []
        for i, row in enumerate(rows):
            rel = str(row[video_column] or "")
            cap = row[caption_column]
            out.append(VideoEntry(i, str(source.parent / rel), None if cap is None else str(cap).strip(), rel))
        return out
    videos = sorted(p for p in source.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise UserError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {source}")
    table: dict[str, str] = {}
    if captions:
        captions = Path(captions)
        if not captions.is_file():
            raise UserError(f"--captions table not found: {captions}")
        rows = _read_table(captions)
        _columns(rows, captions, video_column, caption_column)
        for row in rows:
            table[str(row[video_column])] = str(row[caption_column]).strip()
    out = []
    for i, v in enumerate(videos):
        rel = str(v.relative_to(source))
        side = v.with_suffix(".txt")
        cap = table.get(rel, table.get(v.name))
        if cap is None and side.is_file():
            cap = side.read_text(encoding="utf-8", errors="replace").strip()
        out.append(VideoEntry(i, str(v), cap, rel))
    if not any(e.caption is not None for e in out):
        raise UserError(f"no captions for the videos in {source}: put NAME.txt beside each video or pass --captions "
                        "TABLE (columns set by --video-column and --caption-column)")
    return out


def scene_cuts(frames: np.ndarray, ratio: float) -> np.ndarray:
    """Frames ``t`` (>= 1) that differ from frame t-1 by more than ``ratio`` times the clip's median
    change and by more than 12 grey levels on 32x32 thumbnails: a cut, which no track survives."""
    import cv2

    thumbs = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
                       for f in frames]).astype(np.float32)
    d = np.abs(np.diff(thumbs, axis=0)).mean(axis=(1, 2))
    return np.nonzero((d > ratio * max(np.median(d), 1.0)) & (d > 12.0))[0] + 1


def clip_starts(n_frames: int, cfg: PrepareConfig) -> list[int]:
    """First source frames of the clips: ``clips_per_video`` spread evenly over the video."""
    span = (cfg.frames - 1) * cfg.stride + 1
    if n_frames < span:
        return []
    return sorted({int(round(s)) for s in np.linspace(0, n_frames - span, cfg.clips_per_video)})


def decode_clips(path: str, cfg: PrepareConfig) -> tuple[list[tuple[int, np.ndarray]], float]:
    """Decode a video and cut its clips -> ([(start, uint8 [T, H, W, 3])], source fps). Frames are
    fitted to ``cfg.size`` as ``video.read_video(size=...)`` does; only the frames clips use are kept.
    Unreadable or too short -> ``UserError`` with the reason."""
    import av
    import cv2

    from dragnuwa.video import fit_image

    p = Path(path)
    if not p.is_file():
        raise UserError("file not found")
    if p.stat().st_size == 0:
        raise UserError("empty file (0 bytes)")

    def convert(frame):
        if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
            arr = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
        else:
            arr = frame.to_ndarray(format="rgb24")
        return fit_image(arr, cfg.size, "crop")[0]

    def run(needed: set[int] | None):
        kept, count, fps = {}, 0, 8.0
        try:
            with av.open(str(p)) as container:
                if not container.streams.video:
                    raise UserError("no video stream")
                stream = container.streams.video[0]
                stream.codec_context.thread_count = 1  # one process per core already
                fps = float(stream.average_rate or stream.guessed_rate or 8.0)
                last = max(needed) if needed else None
                for frame in container.decode(stream):
                    if needed is None or count in needed:
                        kept[count] = convert(frame)
                    count += 1
                    if last is not None and count > last:
                        break
        except UserError:
            raise
        except av.error.EOFError:
            pass  # ends before its first packet: "no frames" below
        except (av.error.FFmpegError, ValueError, OSError) as e:
            reason = getattr(e, "strerror", None) or (str(e).splitlines()[0] if str(e) else "")
            raise UserError(f"cannot decode: {e.__class__.__name__}: {reason}") from None
        return kept, count, fps

    span = (cfg.frames - 1) * cfg.stride + 1
    # The container's frame count (when it has one) says which frames to keep, in one pass.
    n_hint = _frame_count(p)
    starts = clip_starts(n_hint, cfg) if n_hint else []
    needed = {s + k * cfg.stride for s in starts for k in range(cfg.frames)} if starts else None
    kept, count, fps = run(needed)
    if needed is not None and len(kept) < len(needed):  # the count overstated the frames: keep them all
        kept, count, fps = run(None)
        needed = None
    if needed is None:
        starts = clip_starts(count, cfg)
    if count == 0:
        raise UserError("no frames")
    if not starts:
        raise UserError(f"too short: {count} frames, a clip needs {span} (--frames {cfg.frames} x --stride {cfg.stride})")
    return [(s, np.stack([kept[s + k * cfg.stride] for k in range(cfg.frames)])) for s in starts], fps


def _frame_count(path: Path) -> int:
    """The container's frame count (0 when unknown or unreadable: the decode pass reports why)."""
    import av

    try:
        with av.open(str(path)) as c:
            return int(c.streams.video[0].frames) if c.streams.video else 0
    except Exception:  # noqa: BLE001
        return 0


def clip_sample(entry: VideoEntry, clip: int, start: int, frames: np.ndarray, fps: float, cfg: PrepareConfig,
                seconds: dict) -> dict:
    """One clip -> its encoded sample: the Trajectory Sampler's candidate tracks, the stage-1 flow."""
    import cv2

    from dragnuwa.flow import video_flow
    from dragnuwa.trajectory import TrajectorySampler

    key = f"{entry.index:08d}_{clip:02d}"
    seed = zlib.crc32(f"{cfg.seed}:{key}".encode())
    sampler = TrajectorySampler(**cfg.sampler)
    t0 = _clock()
    fwd = video_flow(frames, sampler.flow)
    bwd = video_flow(frames[::-1], sampler.consistency_flow or sampler.flow)[::-1]
    flow_maps, flow_size = None, None
    if cfg.flow:
        H, W = frames.shape[1:3]
        w, h = W // cfg.flow_factor, H // cfg.flow_factor
        small = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in fwd]) * [w / W, h / H]
        flow_maps = np.concatenate([np.zeros((1, 2, h, w)), small.transpose(0, 3, 1, 2)]).astype(np.float16)
        flow_size = [w, h]
    t1 = _clock()
    # The same draws as `dragnuwa tracks --seed SEED` on this clip (sample_video_tracks).
    tracks = sampler.candidates(frames, np.random.default_rng(seed), flows=(fwd, bwd))
    t2 = _clock()
    meta = {"source": entry.name, "video_index": entry.index, "clip": clip, "start": start, "stride": cfg.stride,
            "fps": fps / cfg.stride, "frames": int(len(frames)), "width": int(frames.shape[2]),
            "height": int(frames.shape[1]), "sampler_seed": seed, "tracks": int(len(tracks)), "flow_size": flow_size}
    sample = encode_sample(key, frames, fps / cfg.stride, entry.caption or "", tracks, meta, flow_maps, cfg.crf)
    t3 = _clock()
    seconds["flow"] += t1 - t0
    seconds["tracks"] += t2 - t1
    seconds["encode"] += t3 - t2
    return sample


def _clock() -> float:
    # CPU seconds of this process: what a stage costs, however busy the machine (wall time on a shared
    # machine counts the other processes' turns too). Every stage runs in one thread (OpenCV, FFmpeg
    # and x264 are set to one), so this is also its wall time on an idle core.
    return time.process_time()


def _record_path(out: Path, shard: int) -> Path:
    return out / f"shard-{shard:06d}.json"


def prepare_shard(shard: int, entries: list[VideoEntry], cfg: PrepareConfig, out: str | Path) -> dict:
    """Videos -> one shard ``shard-NNNNNN.tar`` and its record (returned). Never raises for a bad video."""
    import cv2

    from dragnuwa import flow, trajectory, video  # noqa: F401 - a fresh worker's imports, before the clocks start

    cv2.setNumThreads(1)
    out = Path(out)
    wall0, started = time.perf_counter(), time.time()
    seconds = dict.fromkeys(STAGES, 0.0)
    samples, failures, cut_clips, trackless = [], [], 0, 0
    for entry in entries:
        try:
            if entry.caption is None:
                raise UserError("no caption")
            t0 = _clock()
            clips, fps = decode_clips(entry.path, cfg)
            seconds["decode"] += _clock() - t0
            for c, (start, frames) in enumerate(clips):
                if len(scene_cuts(frames, cfg.scene_cut)):
                    cut_clips += 1
                    continue
                samples.append(clip_sample(entry, c, start, frames, fps, cfg, seconds))
                # kept (stage 1 can use it), but stage 2 will see no trajectory in it: counted
                trackless += json.loads(samples[-1]["json"])["tracks"] == 0
        except Exception as e:  # noqa: BLE001 - any failure of one video is recorded, never fatal
            msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
            failures.append({"video": entry.name, "reason": msg if isinstance(e, UserError)
                             else f"{e.__class__.__name__}: {msg}"})
    t0 = _clock()
    name = f"shard-{shard:06d}.tar"
    n, size = write_shard(out / name, samples) if samples else (0, 0)
    seconds["write"] += _clock() - t0
    record = {"shard": name if n else None, "index": shard, "videos": len(entries), "clips": n, "bytes": size,
              "wall_seconds": time.perf_counter() - wall0, "started": started,
              "scene_cut_clips": cut_clips, "clips_without_tracks": trackless, "failures": failures, "seconds": seconds, "pid": os.getpid(),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    atomic_write_text(_record_path(out, shard), json.dumps(record) + "\n")
    return record


def _settings(cfg: PrepareConfig, source: Path, n_videos: int) -> dict:
    d = dataclasses.asdict(cfg)
    d["size"] = list(cfg.size)
    from dragnuwa.trajectory import TrajectorySampler

    d["sampler"] = dataclasses.asdict(TrajectorySampler(**cfg.sampler))  # with every default spelled out
    d["source"] = str(source.resolve())
    d["videos"] = n_videos
    return d


def _check_out(source: Path, out: Path, captions: str | Path | None) -> None:
    """--out must be a folder of its own: not SOURCE, its table or captions (``paths.check_run_paths``),
    nor the folder of videos itself."""
    from dragnuwa.paths import check_run_paths

    check_output(out, folder=True, what="--out")
    check_run_paths({"SOURCE": source, "--captions": captions}, {"--out": out})
    if source.is_dir() and out.resolve() == source.resolve():
        raise UserError(f"--out {out} is the SOURCE folder: choose a folder of its own for the shards")


def write_manifest(out: Path, settings: dict, records: list[dict], complete: bool) -> dict:
    """``manifest.json``: the settings, per-shard counts and sizes, every failure with its reason."""
    manifest = {
        "complete": complete, "settings": settings,
        "clips": sum(r["clips"] for r in records), "bytes": sum(r["bytes"] for r in records),
        "videos": sum(r["videos"] for r in records), "shards_done": len(records),
        "failed_videos": sum(len(r["failures"]) for r in records),
        "scene_cut_clips": sum(r["scene_cut_clips"] for r in records),
        "clips_without_tracks": sum(r.get("clips_without_tracks", 0) for r in records),
        "seconds": {k: round(sum(r["seconds"][k] for r in records), 3) for k in STAGES},
        "peak_rss_mb": round(max((r["peak_rss_mb"] for r in records), default=0.0), 1),
        "shards": {r["shard"]: {"clips": r["clips"], "bytes": r["bytes"]}
                   for r in sorted(records, key=lambda r: r["index"]) if r["shard"]},
        "failures": [f for r in sorted(records, key=lambda r: r["index"]) for f in r["failures"]],
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest


def plan(source: str | Path, out: str | Path, cfg: PrepareConfig, **listing) -> tuple[list, dict, list[dict]]:
    """Check everything, list the corpus -> (pending shards ``[(index, entries)]``, settings, done records).
    A folder prepared with other settings is refused; finished shards are not redone."""
    cfg.check()
    source, out = Path(source), Path(out)
    entries = list_videos(source, **listing)
    _check_out(source, out, listing.get("captions"))
    settings = _settings(cfg, source, len(entries))
    if (out / MANIFEST).is_file():
        old = json.loads((out / MANIFEST).read_text()).get("settings", {})
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise UserError(f"{out} holds shards prepared with other settings ({', '.join(diff)}): "
                            "rerun with the same ones or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    k = cfg.videos_per_shard
    shards = [(i, entries[i * k:(i + 1) * k]) for i in range((len(entries) + k - 1) // k)]
    done, pending = [], []
    for i, group in shards:
        rec = _record_path(out, i)
        record = json.loads(rec.read_text()) if rec.is_file() else None
        if record is not None and (record["shard"] is None or (out / record["shard"]).is_file()):
            done.append(record)
        else:
            pending.append((i, group))
    write_manifest(out, settings, done, complete=not pending)
    return pending, settings, done


def _init_ray(address: str | None, num_cpus: int | None) -> bool:
    """Start a quiet local Ray (or join ``address``) unless one is up; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UserError(f"cannot start or join Ray{f' at {address}' if address else ''}: "
                        f"{str(e).splitlines()[0] if str(e) else e.__class__.__name__}") from None
    return True


def _backpressure_policies() -> tuple[str | None, list]:
    """Ray Data's default backpressure policies less its adaptive concurrency cap, and their config key
    (None: this Ray has no such key, and its defaults stay)."""
    try:
        from ray.data._internal.execution import backpressure_policy as bp
    except ImportError:  # a Ray Data without them: nothing to change
        return None, []
    key = getattr(bp, "ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY", None)
    cap = getattr(bp, "ConcurrencyCapBackpressurePolicy", None)
    defaults = getattr(bp, "ENABLED_BACKPRESSURE_POLICIES", None)
    if key is None or cap is None or defaults is None:
        return None, []
    return key, [p for p in defaults if p is not cap]


def run_shards_ray(pending: list, cfg: PrepareConfig, out: Path, workers: int):
    """Each pending shard as one Ray Data task (``workers`` at a time) -> records, as they finish."""
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    # Set for this run, restored after (the context is the process's: a caller's own pipelines keep theirs).
    # - progress bars: ours counts clips, not blocks;
    # - the per-operator resource reservation: it keeps CPUs back for operators downstream of the map, and
    #   this pipeline has none (its output is one small record a shard);
    # - the concurrency-cap policy, when ``workers`` asks for every CPU anyway (the CPUs then bound the
    #   tasks at once): it counts a finished task as running until its output's metadata is fetched, so a
    #   free worker often waited ~1 s for its next shard. On 2 CPUs with both in place, 2 workers ran
    #   1.44x the single process; without, 1.8x (benchmarks/bench_prepare.py, docs/training.md). With
    #   fewer workers than CPUs it stays: it is what holds the tasks at once to ``workers``.
    saved = {k: getattr(ctx, k) for k in ("enable_progress_bars", "print_on_execution_start",
                                          "op_resource_reservation_enabled")}
    key, policies = _backpressure_policies()
    if workers < int(ray.cluster_resources().get("CPU", 0)):
        key = None
    saved_policies = ctx.get_config(key, None) if key else None
    ctx.enable_progress_bars = ctx.print_on_execution_start = ctx.op_resource_reservation_enabled = False
    if key:
        ctx.set_config(key, policies)
    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)
    rows = [{"shard": i, "entries": json.dumps([dataclasses.asdict(e) for e in group])} for i, group in pending]

    def task(row: dict) -> dict:
        entries = [VideoEntry(**e) for e in json.loads(row["entries"])]
        return {"record": json.dumps(prepare_shard(int(row["shard"]), entries, cfg, out))}

    try:
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map(
            task, num_cpus=1, compute=ray.data.TaskPoolStrategy(size=workers))
        for row in ds.iter_rows():
            yield json.loads(row["record"])
    finally:
        for k, v in saved.items():
            setattr(ctx, k, v)
        if key:
            if saved_policies is None:
                ctx.remove_config(key)
            else:
                ctx.set_config(key, saved_policies)


def run_shards_local(pending: list, cfg: PrepareConfig, out: Path):
    """The same shards in this process, one after another (``--workers 0``; the benchmark's baseline)."""
    for i, group in pending:
        yield prepare_shard(i, group, cfg, out)


def run_prepare(source: str | Path, out: str | Path, cfg: PrepareConfig | None = None, workers: int | None = None,
                address: str | None = None, captions: str | None = None, video_column: str = "path",
                caption_column: str = "caption", progress: bool = True) -> dict:
    """`dragnuwa prepare`: every pending shard, on Ray Data (``workers`` tasks at a time: default one per
    CPU of the local Ray or the cluster; 0 = this process alone) -> the manifest."""
    cfg = cfg or PrepareConfig()
    out = Path(out)
    if workers is not None and workers < 0:
        raise UserError(f"--workers must be 0 or more, got {workers}")
    pending, settings, records = plan(source, out, cfg, captions=captions, video_column=video_column,
                                      caption_column=caption_column)
    total = sum(len(g) for _, g in pending) * cfg.clips_per_video
    bar = tqdm(total=total, desc="prepare", unit="clip", disable=not progress or not pending)
    failed = 0
    started = False
    try:
        if workers == 0:
            results = run_shards_local(pending, cfg, out)
        elif pending:
            started = _init_ray(address, workers if not address else None)
            import ray

            workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            results = run_shards_ray(pending, cfg, out, workers)
        else:
            results = iter(())
        for record in results:
            records.append(record)
            failed += len(record["failures"])
            # clips the shard did not make (failed videos, fewer or cut clips) leave the total too
            bar.total -= record["videos"] * cfg.clips_per_video - record["clips"]
            bar.update(record["clips"])
            bar.set_postfix(failed=failed, refresh=False)
            write_manifest(out, settings, records, complete=False)  # an interrupted job leaves a true one
    finally:
        bar.close()
        if started:
            import ray

            ray.shutdown()
    return write_manifest(out, settings, records, complete=True)


def summary(manifest: dict) -> str:
    """A few lines for the terminal: counts, sizes, failures with reasons."""
    def n(count: int, noun: str) -> str:
        return f"{count} {noun}{'' if count == 1 else 's'}"

    m = manifest
    lines = [f"{n(m['clips'], 'clip')} from {m['videos'] - m['failed_videos']} of {n(m['videos'], 'video')} in "
             f"{n(len(m['shards']), 'shard')} ({m['bytes'] / 1e6:.1f} MB); "
             f"{n(m['scene_cut_clips'], 'clip')} skipped at a scene cut; {n(m['clips_without_tracks'], 'clip')} "
             f"with no track; {n(m['failed_videos'], 'video')} failed"]
    lines += [f"  failed: {f['video']}: {f['reason']}" for f in manifest["failures"][:20]]
    if len(manifest["failures"]) > 20:
        lines.append(f"  ... and {len(manifest['failures']) - 20} more (manifest.json)")
    return "\n".join(lines)
