"""`dragnuwa evaluate`: do the three controls work, on held-out procedural clips? (paper Sec. 4)

For each held-out scene (seeds from 1_000_000 on; the shipped training configs use 0..899_999)
the model gets the scene's first frame, its caption and the true paths of its moving objects as
tracks, and is scored (metrics in ``dragnuwa.metrics``) on:
- trajectory error: requested tracks vs the same points followed through the generated video by
  an independent tracker (OpenCV pyramidal Lucas-Kanade), also as a ratio to a static video;
- first-frame fidelity: PSNR of the first frame against the given image;
- text check: in the last frame, is each object's named colour where it was asked to be?
The same runs without trajectory, without text and without image (null conditions) show what
each control contributes, the paper's point that all three are needed. Writes report.json,
report.md (a markdown table) and report.png (tracks over frames, bars per variant).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from dragnuwa.errors import UserError, atomic_path, atomic_write_text, check_output
from dragnuwa.metrics import (first_frame_psnr, psnr, static_trajectory_error, text_accuracy,  # noqa: F401
                              text_check, track_points, trajectory_error)

HELD_OUT_SEED = 1_000_000
MAX_SCENE_SIDE = 256  # scenes are rendered at a backend's own size up to this side (scene_size)
# ``motion_region`` for the evaluation only: each tracked object's true first-frame pixels painted as a
# motion brush (dragnuwa.motion_brush), what a user who paints the objects gives.
EVAL_BRUSH = "brush"
TRAINING_SEEDS_END = 900_000  # configs/*.yaml: data.first_seed 0, count 900_000
# Variant name -> conditions replaced by the null condition. "motion_init" is not a condition but the
# sampler's start from the cut-and-paste animation (dragnuwa.motion_init): without it the row is the
# model alone, sampled from pure noise as in the paper (run only for models that use motion init).
VARIANTS: dict[str, tuple[str, ...]] = {"full": (), "no_trajectory": ("traj",), "no_text": ("text",),
                                        "no_image": ("image",), "no_motion_init": ("motion_init",)}
# The yardsticks' names (row keys NAME_error, NAME_psnr) and what their rows in report.md say.
YARDSTICKS = {
    "true_clip": "the true clip (the tracker's own error)",
    "autoencoder": "the true clip through the model's autoencoder (the best its latents can do)",
    "redrawn": "the true clip noised to the motion-init sigma and redrawn by the model (what the redraw "
               "costs, even from a perfect start)",
    "animation": "the first frame cut and pasted along the tracks, through the autoencoder (where motion init starts)",
}

# generate(image uint8 [H,W,3], tracks [N,T,2], text, drop) -> video uint8 [T,H,W,3]
Generator = Callable[[np.ndarray, np.ndarray, str, tuple], np.ndarray]
# reconstruct(video uint8 [T,H,W,3], tracks [N,T,2] | None) -> the same video through the model's
# autoencoder (the tracks for a track decoder, as a generation's decoder reads them)
Reconstructor = Callable[[np.ndarray, np.ndarray | None], np.ndarray]
# redraw(video uint8 [T,H,W,3], image, tracks, text) -> the video noised to the motion-init sigma and
# sampled back by the model with all three conditions (SDEdit of the true clip)
Redrawer = Callable[[np.ndarray, np.ndarray, np.ndarray, str], np.ndarray]


@dataclass
class Case:
    """One held-out scene: what the model is given and what it is asked for."""

    seed: int
    image: np.ndarray  # uint8 [H, W, 3], the first frame
    text: str  # the scene's caption
    tracks: np.ndarray  # [N, T, 2] requested: true centre paths of moving objects visible throughout
    colors: list[str]  # the colour word of each tracked object
    frames: np.ndarray | None = None  # uint8 [T, H, W, 3], the true clip (for the yardsticks)
    objects: np.ndarray | None = None  # bool [H, W], the tracked objects' pixels in the first frame


def scene_cases(count: int, first_seed: int, frames: int, size: tuple[int, int],
                end_seed: int | None = None) -> list[Case]:
    """The first ``count`` procedural scenes from ``first_seed`` on with a moving object visible in
    every frame: held-out clips for the evaluation and validation, training scenes for the decoder's
    sample pairs. ``end_seed`` (exclusive) bounds the seeds: running past it is a ``UserError``."""
    from dragnuwa.data.synthetic import render_clip

    cases, seed = [], int(first_seed)
    while len(cases) < count:
        if end_seed is not None and seed >= end_seed:
            raise UserError(f"{count} scenes from seed {first_seed} run past seed {end_seed - 1} "
                            f"({len(cases)} found); start lower or ask for fewer")
        clip = render_clip(seed, frames, size)
        keep = clip.visible.all(axis=1) & np.array([o["moving"] for o in clip.objects])
        if keep.any():
            cases.append(Case(seed, clip.frames[0], clip.caption, clip.tracks[keep],
                              [o["color"] for o, k in zip(clip.objects, keep) if k], clip.frames,
                              np.isin(clip.layers[0], np.flatnonzero(keep))))
        seed += 1
    return cases


def pipeline_generator(model="bundled", steps: int | None = None, seed: int = 0,
                       motion_init: float | None = None, motion_region: str = "disc",
                       detail: bool | None = None, svd=None,
                       model_options: dict | None = None) -> tuple[Generator, tuple, int, Reconstructor | None,
                                                                  Redrawer | None]:
    """The one place the evaluation calls the generation pipeline: ``(generate, (W, H), frames,
    reconstruct, redraw)``; ``reconstruct`` passes a video through the model's autoencoder (None where
    the backend offers none), ``redraw`` (None without motion init) samples it back from sigma
    ``motion_init`` as the generations do from the animation. ``motion_init`` None = the model's
    default; a ``drop`` naming "motion_init" turns it off for that call; ``motion_region`` is what it
    moves along each track ("disc" or "object"; "brush": the ``brush`` mask ``generate`` is then called
    with, as a user's motion brush); ``detail``: the pipeline's detail restoration, on the generations
    and the round trip alike (None: the backend's default). The scenes are rendered at the backend's
    size when it is small (``scene_size``); otherwise the request path fits each scene to the backend
    (padded) and its video is brought back to the scene's pixels for scoring."""
    from dragnuwa.pipeline import load_pipeline

    pipe = load_pipeline(model, svd, **(model_options or {}))
    backend = pipe.backend
    size = scene_size(backend)
    fit = "crop" if size == backend.size else "pad"
    resolved = backend.resolve({"motion_init": motion_init, "detail": detail})

    def generate(image, tracks, text, drop, brush=None):
        start = 0.0 if "motion_init" in drop else motion_init
        # paste_first=False: the decoded first frame is scored, not the given image pasted over it.
        res = pipe.generate(image, tracks, text, frames=tracks.shape[1], steps=steps, seed=seed,
                            drop=tuple(d for d in drop if d != "motion_init"), paste_first=False,
                            show_progress=False, motion_init=start, brush=brush, detail=detail, fit=fit,
                            motion_region="disc" if motion_region == EVAL_BRUSH else motion_region)
        return to_scene(res.frames, image.shape[1::-1], fit)

    def redraw(video, image, tracks, text):
        res = pipe.generate(image, tracks, text, frames=tracks.shape[1], steps=steps, seed=seed, paste_first=False,
                            show_progress=False, motion_init=motion_init, start_video=video, detail=detail)
        return res.frames

    uses_motion_init = resolved.get("motion_init", 0.0) > 0
    return (generate, size, backend.frames, backend.reconstructor(bool(resolved.get("detail"))),
            redraw if uses_motion_init else None)


def scene_size(backend) -> tuple[int, int]:
    """The held-out scenes' size for a backend: its own when both sides are at most ``MAX_SCENE_SIDE``
    (the bundled model's 64 px), else 64 x 64 px scenes, which the request path fits to its size."""
    return backend.size if max(backend.size) <= MAX_SCENE_SIDE else (64, 64)


def to_scene(video: np.ndarray, size: tuple[int, int], fit: str) -> np.ndarray:
    """A video generated from a ``size=(W, H)`` scene fitted to the backend by ``fit`` -> the scene's
    pixels: the part showing the scene (all of it with pad and stretch), resized back (area)."""
    import cv2

    from dragnuwa.video import fit_transform

    T, H, W = video.shape[:3]
    if (W, H) == tuple(size):
        return video
    t = fit_transform(tuple(size), (W, H), fit)
    x0, y0 = max(0, round(t.offset_x)), max(0, round(t.offset_y))
    x1, y1 = min(W, round(t.offset_x + size[0] * t.scale_x)), min(H, round(t.offset_y + size[1] * t.scale_y))
    return np.stack([cv2.resize(np.ascontiguousarray(f[y0:y1, x0:x1]), tuple(size), interpolation=cv2.INTER_AREA)
                     for f in video])


def autoencoder_round_trip(autoencoder, detail: bool = False) -> Reconstructor:
    """``video uint8 [T, H, W, 3]`` (and its ``tracks [N, T, 2]``, for a track decoder) -> the same
    video encoded and decoded by ``autoencoder``: what the best latent video of a model with this
    autoencoder looks like (the evaluation's yardstick); ``detail`` restores its first frame's detail
    as the pipeline does (``dragnuwa.detail``)."""
    import torch

    from dragnuwa.detail import restore_detail
    from dragnuwa.models.track_decoder import track_planes
    from dragnuwa.video import to_tensor, to_uint8

    @torch.no_grad()
    def reconstruct(video: np.ndarray, tracks: np.ndarray | None = None) -> np.ndarray:
        param = next(autoencoder.parameters())
        x = to_tensor(video)[None].to(param.device, param.dtype)
        planes = None  # only a track decoder reads them
        if tracks is not None and autoencoder.cfg.tracks:
            planes = torch.from_numpy(track_planes(tracks, *video.shape[1:3]))[None]
        # (the first frame: a reference decoder's; the planes: a track decoder's)
        out = to_uint8(autoencoder.decode(autoencoder.encode(x), x[:, 0], planes)[0])
        return restore_detail(out, video[0]) if detail else out

    return reconstruct


def _checked_video(video, case: Case, variant: str) -> np.ndarray:
    video = np.asarray(video)
    T = case.tracks.shape[1]
    if video.shape != (T, *case.image.shape) or video.dtype != np.uint8:
        raise UserError(f"clip {case.seed} ({variant}): the generator returned {video.dtype} {video.shape}, "
                        f"expected uint8 {(T, *case.image.shape)}")
    return video


def evaluate_case(generate: Generator | None, case: Case, variants: dict = VARIANTS,
                  reconstruct: Reconstructor | None = None, motion_region: str = "disc",
                  redraw: Redrawer | None = None) -> dict:
    """Metrics of one case for each variant (one generation per variant), and the yardsticks
    (with no variants, ``generate`` is not called: the yardsticks alone); ``motion_region`` is
    what the motion-init yardstick cuts out along each track ("brush": the case's true objects,
    also given to ``generate`` as its ``brush``)."""
    starts = case.tracks[:, 0]
    static = np.repeat(case.image[None], case.tracks.shape[1], axis=0)
    # The static yardstick goes through the same tracker (on identical frames it stays put exactly).
    row = {"seed": case.seed, "text": case.text, "requested": case.tracks.tolist(),
           "static_error": trajectory_error(case.tracks, track_points(static, starts))}
    # What a perfect video scores: the tracker's own error on the true clip, and, through the
    # autoencoder, the best any video this model's latents can hold scores.
    if case.frames is not None:
        row["true_clip_error"] = trajectory_error(case.tracks, track_points(case.frames, starts))
        if reconstruct is not None:
            rec = reconstruct(case.frames, case.tracks)
            row["autoencoder_error"] = trajectory_error(case.tracks, track_points(rec, starts))
            row["autoencoder_psnr"] = psnr(rec, case.frames)  # all frames
        # What the redraw from motion init's sigma costs from a perfect start: the true clip itself,
        # noised to that sigma and sampled back by the model; compare with the autoencoder row.
        if redraw is not None:
            redrawn = _checked_video(redraw(case.frames, case.image, case.tracks, case.text), case, "redrawn")
            row["redrawn_error"] = trajectory_error(case.tracks, track_points(redrawn, starts))
            row["redrawn_psnr"] = psnr(redrawn, case.frames)
    # What motion init starts from: the first frame cut and pasted along the tracks, through the
    # autoencoder. It follows the tracks by construction; the model's part is to make it a video.
    if reconstruct is not None:
        from dragnuwa.motion_init import paste_along_tracks

        if motion_region == EVAL_BRUSH:
            from dragnuwa.motion_brush import brush_regions
            from dragnuwa.motion_init import paste_regions

            start = reconstruct(paste_regions(case.image, *brush_regions(case.objects, case.tracks)), case.tracks)
        else:
            start = reconstruct(paste_along_tracks(case.image, case.tracks, region=motion_region), case.tracks)
        row["animation_error"] = trajectory_error(case.tracks, track_points(start, starts))
    brush = {"brush": case.objects} if motion_region == EVAL_BRUSH else {}
    for name, drop in variants.items():
        video = _checked_video(generate(case.image, case.tracks, case.text, drop, **brush), case, name)
        followed = track_points(video, starts)
        row[name] = {"trajectory_error": trajectory_error(case.tracks, followed),
                     "first_frame_psnr": first_frame_psnr(video, case.image),
                     "text_ok": text_accuracy(video, case.tracks, case.colors),
                     "followed": np.round(followed, 3).tolist()}
    return row


def ratio_interval(errors, static, level: float = 0.95, draws: int = 4000, seed: int = 0) -> list[float]:
    """Percentile-bootstrap interval (Efron and Tibshirani 1993, Ch. 13) of ``mean(errors) /
    mean(static)`` over clips, each clip's pair resampled together: how far another draw of as many
    held-out clips would likely move the ratio. It does not cover the sampler's seed."""
    errors, static = np.asarray(errors, float), np.asarray(static, float)
    pick = np.random.default_rng(seed).integers(0, len(errors), (draws, len(errors)))
    ratios = errors[pick].mean(axis=1) / np.maximum(static[pick].mean(axis=1), 1e-9)
    tail = 100 * (1 - level) / 2
    return [float(q) for q in np.percentile(ratios, [tail, 100 - tail])]


def summarise(rows: list[dict], variants: dict = VARIANTS) -> dict:
    """Means over clips; trajectory errors also as a ratio to the static video's (0 = perfect,
    1 = no better than not moving), with its 95% bootstrap interval over clips."""
    statics = [r["static_error"] for r in rows]
    static = float(np.mean(statics))

    def trajectory(errors: list[float]) -> dict:
        err = float(np.mean(errors))
        return {"trajectory_error_px": err, "ratio_to_static": err / max(static, 1e-9),
                "ratio_ci95": ratio_interval(errors, statics)}

    out = {"clips": len(rows), "static_error_px": static}
    for name in variants:
        out[name] = {**trajectory([r[name]["trajectory_error"] for r in rows]),
                     "first_frame_psnr_db": float(np.mean([r[name]["first_frame_psnr"] for r in rows])),
                     "text_accuracy": float(np.mean([r[name]["text_ok"] for r in rows]))}
    yardsticks = {}
    for name in YARDSTICKS:
        if rows and all(f"{name}_error" in r for r in rows):
            yardsticks[name] = trajectory([r[f"{name}_error"] for r in rows])
            if all(f"{name}_psnr" in r for r in rows):
                yardsticks[name]["psnr_db"] = float(np.mean([r[f"{name}_psnr"] for r in rows]))
    if yardsticks:
        out["yardsticks"] = yardsticks
    if "full" in out and "no_trajectory" in out:
        out["no_trajectory_vs_full"] = out["no_trajectory"]["trajectory_error_px"] / max(
            out["full"]["trajectory_error_px"], 1e-9)
    ablations = {name: paired_comparison(rows, name, *ABLATION_CHECKS[name])
                 for name in variants if name in ABLATION_CHECKS and "full" in variants}
    if ablations:
        out["ablations"] = ablations
    return out


# Each ablation on the check of the condition it drops: (row key, True if higher is better).
ABLATION_CHECKS = {"no_trajectory": ("trajectory_error", False), "no_text": ("text_ok", True),
                   "no_image": ("first_frame_psnr", True), "no_motion_init": ("trajectory_error", False)}


def paired_comparison(rows: list[dict], variant: str, key: str, higher_is_better: bool) -> dict:
    """Is ``variant`` worse than the full model on ``key``? Per-clip pairs: how many clips got worse or
    better, and the two-sided Wilcoxon signed-rank p-value ("measurably worse" = mostly worse, small p)."""
    from scipy.stats import wilcoxon

    full = np.array([r["full"][key] for r in rows], float)
    ablated = np.array([r[variant][key] for r in rows], float)
    gain = (full - ablated) if higher_is_better else (ablated - full)  # > 0: dropping it made it worse
    p = float(wilcoxon(gain).pvalue) if np.any(gain != 0) else 1.0
    return {"check": key, "worse": int((gain > 0).sum()), "better": int((gain < 0).sum()), "p_value": p}


def markdown_table(summary: dict) -> str:
    lines = [f"Held-out clips: {summary['clips']}; a static video's trajectory error: "
             f"{summary['static_error_px']:.2f} px", "",
             "| variant | trajectory error (px) | ratio to static (95% interval) | first-frame PSNR (dB) "
             "| text check |",
             "|---|---|---|---|---|"]
    for name in VARIANTS:
        if name in summary:
            s = summary[name]
            lines.append(f"| {name} | {s['trajectory_error_px']:.2f} | {_ratio_cell(s)} | "
                         f"{s['first_frame_psnr_db']:.1f} | {100 * s['text_accuracy']:.0f}% |")
    yard = summary.get("yardsticks", {})
    for name, what in YARDSTICKS.items():
        if name in yard:
            psnr_cell = f"{yard[name]['psnr_db']:.1f} (all frames)" if "psnr_db" in yard[name] else ""
            lines.append(f"| *{what}* | {yard[name]['trajectory_error_px']:.2f} | "
                         f"{_ratio_cell(yard[name])} | {psnr_cell} | |")
    if summary.get("ablations"):
        lines += ["", "Each ablation on its own check, against the full model clip by clip (Wilcoxon signed-rank):", ""]
        for name, a in summary["ablations"].items():
            lines.append(f"- {name}: {a['check']} worse on {a['worse']} clips, better on {a['better']} "
                         f"(p = {a['p_value']:.2g})")
    return "\n".join(lines) + "\n"


def _ratio_cell(row: dict) -> str:
    lo_hi = row.get("ratio_ci95")
    return f"{row['ratio_to_static']:.2f}" + (f" ({lo_hi[0]:.2f}-{lo_hi[1]:.2f})" if lo_hi else "")


def _report_markdown(summary: dict, meta: dict) -> str:
    notes = [
        "", "- trajectory error: mean distance between the requested track and the same point followed "
        "through the generated video by pyramidal Lucas-Kanade (frames 1..T-1); ratio to static divides "
        "by the error of a video that does not move (1.0 = the drag had no effect); in brackets the 95% "
        "bootstrap interval over clips (another draw of as many clips), not over the sampler's seed.",
        "- first-frame PSNR: the generated first frame against the given image.",
        "- text check: share of objects whose named colour is at their requested last position.",
        "- rows in italics are yardsticks, not generations: the true clip shows the tracker's own error; "
        "through the autoencoder it shows the best this model can score, as every video it makes is "
        "decoded from latents" + ("; redrawn from the true clip, it shows what the model's redraw from the "
                                  "motion-init sigma costs even from a perfect start."
                                  if "redrawn" in summary.get("yardsticks", {}) else "."),
        _start_note(summary, meta),
        f"- model {meta['model']}, seeds from {meta['seed']}, steps {meta['steps']}, "
        f"{meta['frames']} frames at {meta['size'][0]}x{meta['size'][1]}"
        + {True: ", the image's detail restored (dragnuwa.detail) on every video given the image, and on the round trip.",
           False: ", no detail restoration (--no-detail)."}.get(meta.get("detail"), "."),
        *([f"- the {meta['backend']} backend works at {meta['backend_size'][0]}x{meta['backend_size'][1]}: each "
           "scene is fitted to it (padded) and its video brought back to the scene's size to be scored."]
          if meta.get("backend_size") and meta["backend_size"] != meta["size"] else []),
        *(["- the model's decoder reads the tracks (models/track_decoder.py), on every video given the "
           "trajectory and on the yardsticks."] if meta.get("track_decoder") else []),
        "", "![report](report.png)"]
    if meta.get("warning"):
        notes.insert(0, f"\n**Warning:** {meta['warning']}")
    return "# dragnuwa evaluation\n\n" + markdown_table(summary) + "\n".join(notes) + "\n"


def _start_note(summary: dict, meta: dict) -> str:
    """Where each row's sampling started: it follows the run's motion init, which needs both the
    image and the trajectory (``Pipeline.generate``), whether or not the ablations were run."""
    if not meta.get("motion_init"):
        return "- sampled from pure noise (no motion init), as in the paper."
    region = {"object": "the object under each track",
              EVAL_BRUSH: "each tracked object's true pixels, also given as a motion brush"}.get(
        meta.get("motion_region"), "a disc around each track")
    note = (f"- sampled from sigma {meta['motion_init']:g}, starting from the image cut and pasted along the "
            f"tracks (motion init; {region})")
    from dragnuwa.pipeline import MOTION_INIT_NEEDS

    scratch = [n for n, drop in VARIANTS.items() if n in summary and MOTION_INIT_NEEDS & set(drop)]
    if scratch:
        note += f"; {' and '.join(scratch)} from pure noise, as motion init needs the image and the trajectory"
    if "no_motion_init" in summary:
        note += "; no_motion_init is the model alone, sampled from pure noise as in the paper"
    return note + "."


def plot_report(rows: list[dict], summary: dict, path: Path, clips: int = 3) -> None:
    """Requested vs followed distance from the start over frames for a few clips, and the
    trajectory error of each variant against the static video's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(clips, len(rows))
    fig, axes = plt.subplots(1, n + 1, figsize=(4 * (n + 1), 3.6), dpi=100)
    axes = np.atleast_1d(axes)
    for ax, row in zip(axes[:n], rows):
        req = np.asarray(row["requested"])
        frames = range(req.shape[1])
        for k in range(len(req)):
            line = ax.plot(frames, np.linalg.norm(req[k] - req[k, 0], axis=-1), "--", lw=2,
                           label=f"requested #{k}")[0]
            for name, style in (("full", "-"), ("no_motion_init", "-."), ("no_trajectory", ":")):
                if name in row:
                    f = np.asarray(row[name]["followed"])[k]
                    ax.plot(frames, np.linalg.norm(f - f[0], axis=-1), style, color=line.get_color(),
                            label=f"{name} #{k}")
        ax.set_title(f"seed {row['seed']}")
        ax.set_xlabel("frame")
        ax.set_ylabel("distance from start (px)")
        ax.legend(fontsize=6)
    names = [v for v in VARIANTS if v in summary]
    axes[-1].bar(names, [summary[v]["trajectory_error_px"] for v in names], color="tab:blue")
    axes[-1].axhline(summary["static_error_px"], color="k", ls="--", label="static video")
    axes[-1].set_ylabel("trajectory error (px)")
    axes[-1].tick_params(axis="x", rotation=30)
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def run_evaluation(model="bundled", out_dir="eval_report", count: int = 100, seed: int = HELD_OUT_SEED,
                   steps: int | None = None, ablations: bool = True, generate_fn: Generator | None = None,
                   size: tuple[int, int] = (64, 64), frames: int = 14,
                   reconstruct_fn: Reconstructor | None = None, motion_init: float | None = None,
                   motion_region: str = "disc", redraw_fn: Redrawer | None = None, detail: bool | None = None,
                   svd=None, model_options: dict | None = None) -> Path:
    """Metrics on ``count`` held-out clips, with and without each condition; returns report.md's path.

    ``generate_fn(image, tracks, text, drop) -> uint8 [T, H, W, 3]`` replaces the model (tests);
    then ``size=(W, H)`` and ``frames`` set the clips, otherwise the model's resolution does, and
    ``reconstruct_fn`` and ``redraw_fn`` (optional) stand for the autoencoder round trip and the
    redraw of the true clip of the yardsticks.
    ``motion_init``: the sampler's start (None = the model's default); when it is on, the
    ``no_motion_init`` row shows the model alone (an injected ``generate_fn`` then gets that drop);
    ``motion_region`` ("disc" or "object") is what motion init moves along each track; "brush"
    paints each tracked object's true pixels as a motion brush instead (``generate_fn`` then gets
    a ``brush`` keyword). ``detail``: the pipeline's detail restoration (``dragnuwa.detail``; None:
    the backend's default). ``model``, ``svd`` and ``model_options`` choose the backend
    (``pipeline.load_pipeline``); ablations run for the conditions the backend reads.
    """
    if int(count) < 1:
        raise UserError(f"--count must be at least 1, got {count}")
    if steps is not None and int(steps) < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    from dragnuwa.pipeline import check_motion_region

    if motion_region != EVAL_BRUSH:
        check_motion_region(motion_region)
    out = Path(out_dir)
    check_output(out, folder=True, what="output folder")
    injected = generate_fn is not None
    # An injected generator says itself whether it starts from the animation (for the report).
    start = None if motion_init is None else float(motion_init)
    if not injected:
        from dragnuwa.pipeline import check_motion_init, load_pipeline

        from dragnuwa.backends import backend_class

        brush = motion_region == EVAL_BRUSH
        # Before the model loads and any clip is rendered or scored: what the backend lacks.
        backend_class(model).refuse_unsupported({"motion_init": start, "detail": detail,
                                                 "brush": True if brush else None,
                                                 "motion_region": None if brush else motion_region})
        backend = load_pipeline(model, svd, **(model_options or {})).backend
        resolved = backend.resolve({"motion_init": start, "detail": detail})
        start, detail = resolved.get("motion_init", 0.0), bool(resolved.get("detail"))
        track_decoder = backend.track_decoder
        check_motion_init(start)
        generate_fn, size, frames, reconstruct_fn, redraw_fn = pipeline_generator(
            model, steps, motion_init=start, motion_region=motion_region, detail=detail, svd=svd,
            model_options=model_options)
    variants = dict(VARIANTS) if ablations else {"full": ()}
    if not injected:  # only the conditions the backend reads can be dropped
        variants = {n: d for n, d in variants.items() if set(d) - {"motion_init"} <= backend.conditions}
    if not start:
        variants.pop("no_motion_init", None)
    name = str(model) if isinstance(model, (str, Path)) else type(model).__name__
    meta = {"model": "custom generator" if injected else name, "seed": int(seed), "steps": steps,
            "motion_init": start, "motion_region": motion_region, "detail": None if injected else bool(detail),
            "frames": int(frames), "size": [int(size[0]), int(size[1])],
            "variants": list(variants), "track_decoder": None if injected else track_decoder}
    if not injected:
        meta["backend"], meta["backend_size"] = backend.name, list(backend.size)
    if int(seed) < TRAINING_SEEDS_END:
        meta["warning"] = (f"seeds from {seed} overlap the training scenes (0..{TRAINING_SEEDS_END - 1}); "
                           f"use --seed {HELD_OUT_SEED} or above for held-out results")
        print(f"warning: {meta['warning']}")
    cases = scene_cases(int(count), seed, int(frames), tuple(size))
    rows = [evaluate_case(generate_fn, c, variants, reconstruct_fn, motion_region, redraw_fn)
            for c in tqdm(cases, desc="evaluating", unit="clip")]
    return _write_report(out, rows, meta, variants)


def _write_report(out: Path, rows: list[dict], meta: dict, variants: dict) -> Path:
    summary = summarise(rows, variants)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.json", json.dumps({"summary": summary, "meta": meta, "clips": rows}) + "\n")
    plot_report(rows, summary, out / "report.png")
    atomic_write_text(out / "report.md", _report_markdown(summary, meta))
    print(markdown_table(summary))
    return out / "report.md"


def rescore_report(out_dir: str | Path) -> Path:
    """Rewrite a report folder's summary, report.md and report.png from the clips its report.json
    holds (after a change to the summary), without generating anything again."""
    path = Path(out_dir) / "report.json"
    try:
        data = json.loads(path.read_text())
        rows, meta = data["clips"], data["meta"]
        variants = {name: VARIANTS[name] for name in meta["variants"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path} is not an evaluation report: {err}") from None
    return _write_report(Path(out_dir), rows, meta, variants)
