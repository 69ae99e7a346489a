"""Evaluation on held-out procedural clips: do the three controls work? (paper Sec. 4)

For each held-out scene (seeds from 1_000_000 on; training uses 0..899_999) the model gets the
scene's first frame, its caption and the true object paths as tracks, and:
- trajectory error: requested tracks vs the same points followed through the generated video by an
  independent tracker (OpenCV pyramidal Lucas-Kanade), also as a ratio to a static video;
- first-frame fidelity: PSNR of the decoded first frame against the given image;
- text check: at the last frame, is the named colour where the object should be?
and the same without trajectory, without text and without image (null conditions), as in the
paper's claim that all three controls are needed. Writes report.json, report.md and report.png.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from dragnuwa.errors import atomic_path, atomic_write_text

HELD_OUT_SEED = 1_000_000
VARIANTS = {"full": (), "no_trajectory": ("traj",), "no_text": ("text",), "no_image": ("image",)}


def track_points(frames: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Follow ``[N, 2]`` points through ``uint8 [T, H, W, 3]`` frames with pyramidal Lucas-Kanade.

    Chained frame to frame; a point whose forward-backward error exceeds 1 px keeps its last
    position (a lost point counts as not moving, which is what a failed video shows).
    """
    # Small videos are upsampled so LK's windows hold enough texture for sub-pixel accuracy.
    up = max(1, int(np.ceil(256 / max(frames.shape[1:3]))))
    grey = [np.ascontiguousarray(cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), None, fx=up, fy=up,
                                            interpolation=cv2.INTER_CUBIC)) for f in frames]
    params = dict(winSize=(21, 21), maxLevel=3,
                  criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    pts = np.asarray(starts, np.float32).reshape(-1, 1, 2) * up - 0.5  # OpenCV: pixel centres at integers
    out = np.zeros((len(starts), len(frames), 2), np.float32)
    out[:, 0] = starts
    for t in range(1, len(frames)):
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(grey[t - 1], grey[t], pts, None, **params)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(grey[t], grey[t - 1], nxt, None, **params)
        ok = (st[:, 0] == 1) & (st2[:, 0] == 1) & (np.linalg.norm(back - pts, axis=2)[:, 0] < up)
        pts = np.where(ok[:, None, None], nxt, pts)
        out[:, t] = (pts[:, 0] + 0.5) / up
    return out


def trajectory_error(requested: np.ndarray, followed: np.ndarray) -> float:
    """Mean pixel distance between requested and followed tracks ``[N, T, 2]`` (frames 1..T-1)."""
    return float(np.linalg.norm(requested[:, 1:] - followed[:, 1:], axis=-1).mean())


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def text_check(frame: np.ndarray, position: np.ndarray, color_name: str, radius: int = 2) -> bool:
    """Is the mean colour around ``position`` closest to ``color_name`` among the scene palette?"""
    from dragnuwa.data.synthetic import COLORS

    h, w = frame.shape[:2]
    x, y = np.clip(np.floor(position).astype(int), 0, [w - 1, h - 1])
    patch = frame[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1].reshape(-1, 3).mean(0)
    names = list(COLORS)
    dists = [np.linalg.norm(patch - np.array(COLORS[n])) for n in names]
    return names[int(np.argmin(dists))] == color_name


@dataclass
class Case:
    seed: int
    image: np.ndarray  # uint8 [H, W, 3]
    text: str
    tracks: np.ndarray  # [N, T, 2] requested (true paths of moving, visible objects)
    colors: list[str]


def held_out_cases(count: int, first_seed: int, frames: int, size: tuple[int, int]) -> list[Case]:
    """Held-out scenes with at least one moving object visible in every frame."""
    from dragnuwa.data.synthetic import render_clip

    cases, seed = [], first_seed
    while len(cases) < count:
        clip = render_clip(seed, frames, size)
        keep = clip.visible.all(axis=1) & np.array([o["moving"] for o in clip.objects])
        if keep.any():
            cases.append(Case(seed, clip.frames[0], clip.caption, clip.tracks[keep],
                              [o["color"] for o, k in zip(clip.objects, keep) if k]))
        seed += 1
    return cases


def evaluate_case(generate: Callable, case: Case, variants=VARIANTS) -> dict:
    """Metrics of one case for each variant. ``generate(image, tracks, text, drop) -> uint8 [T,H,W,3]``."""
    row = {"seed": case.seed}
    starts = case.tracks[:, 0]
    static = np.repeat(case.image[None], case.tracks.shape[1], axis=0)
    row["static_error"] = trajectory_error(case.tracks, track_points(static, starts))
    for name, drop in variants.items():
        video = generate(case.image, case.tracks, case.text, drop)
        followed = track_points(video, starts)
        row[name] = {
            "trajectory_error": trajectory_error(case.tracks, followed),
            "first_frame_psnr": psnr_uint8(video[0], case.image),
            "text_ok": float(np.mean([text_check(video[-1], p, c) for p, c in zip(case.tracks[:, -1], case.colors)])),
            "followed": followed.tolist(),
        }
    return row


def summarise(rows: list[dict], variants=VARIANTS) -> dict:
    static = float(np.mean([r["static_error"] for r in rows]))
    out = {"clips": len(rows), "static_error_px": static}
    for name in variants:
        err = float(np.mean([r[name]["trajectory_error"] for r in rows]))
        out[name] = {"trajectory_error_px": err, "ratio_to_static": err / max(static, 1e-9),
                     "first_frame_psnr_db": float(np.mean([r[name]["first_frame_psnr"] for r in rows])),
                     "text_accuracy": float(np.mean([r[name]["text_ok"] for r in rows]))}
    if "full" in out and "no_trajectory" in out:
        out["no_trajectory_vs_full"] = out["no_trajectory"]["trajectory_error_px"] / max(
            out["full"]["trajectory_error_px"], 1e-9)
    return out


def markdown_table(summary: dict) -> str:
    lines = [f"Held-out clips: {summary['clips']}; static-video trajectory error: "
             f"{summary['static_error_px']:.2f} px", "",
             "| variant | trajectory error (px) | ratio to static | first-frame PSNR (dB) | text check |",
             "|---|---|---|---|---|"]
    for name in VARIANTS:
        if name in summary:
            s = summary[name]
            lines.append(f"| {name} | {s['trajectory_error_px']:.2f} | {s['ratio_to_static']:.2f} | "
                         f"{s['first_frame_psnr_db']:.1f} | {100 * s['text_accuracy']:.0f}% |")
    return "\n".join(lines) + "\n"


def plot_report(rows: list[dict], cases: list[Case], summary: dict, path: Path) -> None:
    """Requested vs followed tracks over frames for a few clips, and errors per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(3, len(rows))
    fig, axes = plt.subplots(1, n + 1, figsize=(4 * (n + 1), 3.6), dpi=100)
    axes = np.atleast_1d(axes)
    for ax, row, case in zip(axes[:n], rows, cases):
        T = case.tracks.shape[1]
        for k in range(len(case.tracks)):
            for name, style in (("full", "-"), ("no_trajectory", ":")):
                f = np.array(row[name]["followed"])[k]
                ax.plot(range(T), np.linalg.norm(f - f[0], axis=-1), style, label=f"{name} #{k}")
            ax.plot(range(T), np.linalg.norm(case.tracks[k] - case.tracks[k, 0], axis=-1), "k--", lw=1,
                    label=f"requested #{k}")
        ax.set_title(f"seed {case.seed}"), ax.set_xlabel("frame"), ax.set_ylabel("distance from start (px)")
        ax.legend(fontsize=6)
    names = [v for v in VARIANTS if v in summary]
    axes[-1].bar(names + ["static"], [summary[v]["trajectory_error_px"] for v in names] + [summary["static_error_px"]])
    axes[-1].set_ylabel("trajectory error (px)"), axes[-1].tick_params(axis="x", rotation=30)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def run_evaluation(model="bundled", out_dir="eval_report", count: int = 100, seed: int = HELD_OUT_SEED,
                   steps: int | None = None, ablations: bool = True, generate_fn: Callable | None = None,
                   size: tuple[int, int] = (64, 64), frames: int = 14) -> Path:
    """`dragnuwa evaluate`: metrics on ``count`` held-out clips; returns the markdown report path.

    ``generate_fn(image, tracks, text, drop) -> uint8 [T, H, W, 3]`` replaces the model (tests; then
    ``size``/``frames`` set the clips, otherwise the model's resolution and frame count do).
    """
    if generate_fn is None:
        from dragnuwa.pipeline import load_pipeline

        pipe = load_pipeline(model)
        cfg = pipe.cfg
        size, frames = (cfg.width, cfg.height), cfg.frames

        def generate_fn(image, tracks, text, drop):
            res = pipe.generate(image, tracks, text, steps=steps, seed=0, drop=drop, paste_first=False,
                                show_progress=False)
            return res.frames
    variants = VARIANTS if ablations else {"full": ()}
    cases = held_out_cases(count, seed, frames, size)
    rows = [evaluate_case(generate_fn, c, variants) for c in tqdm(cases, desc="evaluating", unit="clip")]
    summary = summarise(rows, variants)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.json", json.dumps({"summary": summary, "clips": rows}) + "\n")
    atomic_write_text(out / "report.md", "# dragnuwa evaluation\n\n" + markdown_table(summary))
    plot_report(rows, cases, summary, out / "report.png")
    print(markdown_table(summary))
    return out / "report.md"
