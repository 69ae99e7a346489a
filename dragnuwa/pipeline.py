"""Generation: ``generate(image, tracks, text) -> video``, the API the CLI, the web UI and the
evaluation call: one request path in front of every backend (``dragnuwa.backends``).

image -> fitted to the backend's resolution (crop / pad / stretch; track points mapped the same way)
tracks -> PCHIP-resampled to T frames (and kept as drawn), a dense field or a motion brush fitted alike
-> ``Request`` -> the backend's ``sample`` (small: ``backends/small.py``; DragNUWA 1.5: ``svd/backend.py``)
-> frames -> the first frame pasted, videos, overlays, variants, upscaling, ``describe``, warnings
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from dragnuwa.backends.small import MOTION_INIT_NEEDS  # noqa: F401 (re-exported: the evaluation names it)
from dragnuwa.errors import UserError
from dragnuwa.tracks_io import TrackSet

BUNDLED_MODEL = Path(__file__).parent / "assets" / "model" / "dragnuwa_small.safetensors"
MAX_STEPS = 1000
MAX_VARIANTS = 16  # seeds side by side in one video: 4 x 4 tiles at most
MAX_FPS = 50  # a GIF cannot show frames faster (its delays are whole hundredths, at least 2)


@dataclass
class GenerationResult:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    tracks: np.ndarray  # [N, T, 2] at the model's resolution
    maps: np.ndarray  # [T, 2, H, W]
    image: np.ndarray  # the fitted first image, uint8 [H, W, 3]
    info: dict = field(default_factory=dict)
    latents: torch.Tensor | None = None  # what was decoded, [T, C, h, w] (the decoder's training pairs)
    # A motion brush's moving tracks [M, T, 2] and the painted region bool [H, W] each one moves.
    brush: tuple[np.ndarray, list[np.ndarray]] | None = None
    # The frames as decoded (before detail restoration and the pasted first frame), and the given
    # image as given (RGB, before fitting): what `upscaled_frames` restores detail at a larger size from.
    decoded: np.ndarray | None = None
    source: np.ndarray | None = None


def _load_motion_file(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"motion file not found: {path}")
    try:
        data = np.load(path)
        arr = data[data.files[0]] if hasattr(data, "files") else data
    except (ValueError, OSError, IndexError) as e:
        raise UserError(f"cannot read motion file {path}: {e.__class__.__name__}") from None
    return np.asarray(arr, dtype=np.float32)


def check_inputs(image, text: str, frames: int, steps: int, guidance: float, traj_guidance: float,
                 max_frames: int, motion_init: float = 0.0) -> None:
    """Reject what cannot be generated, with one line naming the problem."""
    if isinstance(image, (str, Path)) and not Path(image).is_file():
        raise UserError(f"image not found: {image}")
    if not isinstance(text, str):
        raise UserError("text must be a string")
    if not 2 <= frames <= max_frames:
        raise UserError(f"frames must be between 2 and {max_frames} for this model, got {frames}")
    if not 1 <= steps <= MAX_STEPS:
        raise UserError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
    for name, g in (("guidance", guidance), ("traj-guidance", traj_guidance)):
        if g is None:  # a backend without a trajectory guidance scale
            continue
        if not np.isfinite(g) or not 0 <= g <= 50:
            raise UserError(f"{name} must be a number between 0 and 50, got {g}")
    check_motion_init(motion_init)


def check_variants(variants) -> None:
    """How many seeds one run may sample side by side: a whole number from 1 to ``MAX_VARIANTS``."""
    if isinstance(variants, bool) or not isinstance(variants, (int, np.integer)) or not 1 <= variants <= MAX_VARIANTS:
        raise UserError(f"variants must be a whole number from 1 to {MAX_VARIANTS}, got {variants}")


def check_motion_init(motion_init: float) -> None:
    """A sampler start must be a noise level of the schedule (0 = off, up to its sigma_max)."""
    from dragnuwa.diffusion.schedules import SIGMA_MAX

    if not np.isfinite(motion_init) or not 0 <= motion_init <= SIGMA_MAX:
        raise UserError(f"motion-init must be a noise level between 0 (off) and {SIGMA_MAX:g}, got {motion_init}")


def check_motion_region(region: str) -> None:
    """What motion init moves along each track must be one of ``motion_init.MOTION_REGIONS``."""
    from dragnuwa.motion_init import MOTION_REGIONS

    if region not in MOTION_REGIONS:
        raise UserError(f"motion region must be {' or '.join(map(repr, MOTION_REGIONS))}, got {region!r}")


class Pipeline:
    """The one request path: reads, validates and fits a request once, hands it to a backend
    (``dragnuwa.backends``: the small bundled model, or DragNUWA 1.5 on SVD) and assembles the result.
    ``Pipeline(model)`` with a ``DragNUWA`` instance or a ``Backend``, or ``load_pipeline(model, svd=...)``."""

    def __init__(self, model, text_encoder=None):
        from dragnuwa.backends.base import Backend
        from dragnuwa.backends.small import SmallBackend

        self.backend = model if isinstance(model, Backend) else SmallBackend(model, text_encoder)

    # The small backend's model, config and text encoder, where scripts and tests reach into them.
    @property
    def model(self):
        return self.backend.model

    @property
    def cfg(self):
        return self.backend.cfg

    @property
    def text_encoder(self):
        return self.backend.text_encoder

    def read_tracks(self, tracks):
        """A tracks file -> ``TrackSet``: a tracks JSON, or a video, whose own motion the Trajectory
        Sampler reads off its first ``backend.max_frames`` frames. Anything else is returned as it is."""
        from dragnuwa.tracks_io import load_tracks
        from dragnuwa.video import VIDEO_INPUTS

        if not isinstance(tracks, (str, Path)):
            return tracks
        if Path(tracks).suffix.lower() in VIDEO_INPUTS:
            from dragnuwa.trajectory import tracks_from_video

            return tracks_from_video(tracks, max_frames=self.backend.max_frames)[1]
        return load_tracks(tracks)

    def _trackset(self, tracks, image_size: tuple[int, int]) -> TrackSet:
        """Tracks (TrackSet / dict / [N,T,2] array in image pixels, or a file) scaled onto the image."""
        from dragnuwa.tracks_io import parse_tracks

        tracks = self.read_tracks(tracks)
        if isinstance(tracks, dict):
            tracks = parse_tracks(tracks)
        elif isinstance(tracks, np.ndarray):
            tracks = TrackSet.from_array(tracks, *image_size)
        w, h = image_size
        return tracks.rescaled(w, h) if (tracks.width, tracks.height) != (w, h) else tracks

    def prepare_tracks(self, tracks, image_size: tuple[int, int], transform, frames: int) -> np.ndarray:
        """Tracks (TrackSet / dict / [N,T,2] array in image pixels, or a file for ``read_tracks``;
        scaled onto the image) -> ``[N, T, 2]`` at the backend's resolution."""
        if tracks is None:
            return np.zeros((0, frames, 2), np.float32)
        out = transform.apply(self._trackset(tracks, image_size).resampled(frames))
        return out.astype(np.float32)

    def fitted_clicks(self, tracks, image_size: tuple[int, int], transform) -> list[np.ndarray]:
        """Each track's points as given (not resampled), scaled onto the image and mapped like it."""
        if tracks is None:
            return []
        return [transform.apply(np.asarray(t, np.float64)) for t in self._trackset(tracks, image_size).tracks]

    @torch.no_grad()
    def generate(self, image, tracks=None, text: str = "", frames: int | None = None, steps: int | None = None,
                 seed: int = 0, guidance: float | None = None, traj_guidance: float | None = None, flow=None,
                 fit: str = "crop", progress: Callable[[int, int], None] | None = None,
                 sampler: str | None = None, show_progress: bool = True, drop: tuple[str, ...] = (),
                 paste_first: bool = True, motion_init: float | None = None,
                 motion_region: str = "disc", start_video: np.ndarray | None = None,
                 brush=None, detail: bool | None = None) -> GenerationResult:
        """Generate a video (paper Sec. 3: text + image + trajectory). Same seed, same video.

        The shared part of every backend: the image is read and fitted to the backend's size (crop /
        pad / stretch), the tracks mapped the same way (PCHIP-resampled to ``frames``, and as given,
        for a backend with its own recipe), a dense ``flow`` or a motion ``brush`` fitted like the
        image; the backend (``self.backend.sample``) turns that ``Request`` into frames.
        ``drop`` names conditions replaced by the null condition ("text", "image", "traj"), for
        ablations; ``paste_first=False`` keeps the decoded first frame instead of the given image.
        The rest are options a backend supports or refuses (``Backend.supports``; None: its default):
        ``traj_guidance``; ``motion_init`` > 0 starts sampling at that noise level from the image
        moved along the tracks or the dense motion (``dragnuwa.motion_init``; not in the paper);
        ``motion_region`` is what moves along each track in that animation: a "disc" around its
        start, or the "object" under it (GrabCut; docs/model_card.md has both measured).
        ``brush`` (a mask painted on the image: a file or an ``[H, W]`` / RGBA array) moves each
        painted region along the track that starts in it, as a dense motion input
        (``dragnuwa.motion_brush``); motion init then moves exactly those pixels.
        ``start_video`` (uint8 ``[frames, H, W, 3]`` at the model's size) replaces that animation as
        the start (SDEdit of a given video, the evaluation's yardstick). ``detail`` carries the given
        image's fine detail onto the decoded frames along the video's own motion (``dragnuwa.detail``).
        """
        from dragnuwa.backends.base import Request
        from dragnuwa.video import fit_image, load_image

        b = self.backend
        asked = {"traj_guidance": traj_guidance, "motion_init": motion_init, "motion_region": motion_region,
                 "flow": flow, "brush": brush, "detail": detail, "start_video": start_video, "sampler": sampler}
        b.refuse_unsupported(asked, tuple(drop))
        opts = b.resolve(asked)
        for name in ("traj_guidance", "motion_init"):
            if name in opts:
                opts[name] = float(opts[name])
        frames = b.frames if frames is None else int(frames)  # 0 is an error, not "use the default"
        steps = b.steps if steps is None else int(steps)
        guidance = b.guidance if guidance is None else float(guidance)
        check_inputs(image, text, frames, steps, guidance, opts.get("traj_guidance"), max_frames=b.max_frames,
                     motion_init=opts.get("motion_init", 0.0))
        check_motion_region(motion_region)
        if not (isinstance(seed, (int, np.integer)) and 0 <= seed < 2**63):
            raise UserError(f"seed must be a whole number between 0 and 2^63 - 1, got {seed}")
        t0 = time.time()
        img = load_image(image) if isinstance(image, (str, Path)) else np.asarray(image)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if img.ndim != 3 or img.shape[2] not in (3, 4):
            raise UserError(f"image must be H x W x 3 (RGB), got shape {img.shape}")
        img = img[..., :3].astype(np.uint8)
        src_h, src_w = img.shape[:2]
        fitted, transform = fit_image(img, b.size, fit)
        tracks = self.read_tracks(tracks)  # a file read once: a video's tracks are sampled here
        # The frame the tracks were drawn on (a video's, another image's); they are scaled onto this image.
        drawn_on = ([tracks.width, tracks.height] if isinstance(tracks, TrackSet)
                    else [tracks.get("width", src_w), tracks.get("height", src_h)] if isinstance(tracks, dict)
                    else [src_w, src_h])

        dense, brushed, regions, clicks = None, None, None, []  # the dense motion; the brush's tracks and regions
        if flow is not None:
            if brush is not None:
                raise UserError("a brush moves painted regions along tracks: give it tracks, "
                                "not a dense motion file")
            dense = self._motion_maps(flow, frames, (src_w, src_h), fit)
            trk = np.zeros((0, frames, 2), np.float32)
        else:
            trk = self.prepare_tracks(tracks, (src_w, src_h), transform, frames)
            clicks = self.fitted_clicks(tracks, (src_w, src_h), transform)
            if brush is not None:
                dense, brushed, regions = self._brush(brush, tracks, trk, (src_w, src_h), fit)
        # A track the fitted frame never shows (cropped away) cannot move anything: say so, not fail,
        # as tracks from another source (a video, a wider image) may well reach past the crop.
        inside = ((trk >= 0) & (trk < (b.width, b.height))).all(axis=-1)
        outside = [i + 1 for i in np.flatnonzero(~inside.any(axis=1))]
        brushing = None if regions is None else (brushed, regions)
        request = Request(fitted, text, frames, steps, int(seed), guidance, trk, clicks, dense, brushing,
                          tuple(drop), opts)
        sample = b.sample(request, progress, show_progress)
        out = sample.frames
        if paste_first:
            out[0] = fitted  # the first frame is the given image (the paper conditions on it)
        info = {"seed": int(seed), "steps": steps, "frames": frames, "guidance": guidance, **sample.info,
                "seconds": round(time.time() - t0, 2),
                "input_size": [src_w, src_h], "tracks_size": drawn_on, "model_size": [b.width, b.height],
                "fit": fit, "paste_first": bool(paste_first),
                "point_mapping": transform.describe(), "tracks": int(len(trk)), "tracks_outside": outside,
                "visible": [round(v, 1) for v in transform.visible((src_w, src_h), (b.width, b.height))],
                "brush_regions": None if regions is None else len(regions), "backend": b.name,
                "ignored": b.ignored(text)}
        return GenerationResult(out, trk, sample.maps, fitted, info, sample.latents, brushing, sample.decoded, img)

    def _brush(self, brush, tracks, trk: np.ndarray, image_size: tuple[int, int],
               fit: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """The motion brush (``dragnuwa.motion_brush``): a mask painted on the given image (path or
        array) and the tracks -> dense maps at the model's resolution, and the moving tracks with
        the painted region each one moves (what motion init pastes)."""
        from dragnuwa.motion_brush import as_mask, brush_maps, brush_regions, fit_brush

        if tracks is None:
            raise UserError("a brush needs tracks: the drags say where the painted regions go")
        mask = fit_brush(as_mask(brush), image_size, self.backend.size, fit)
        sampled = getattr(tracks, "sampled", False)  # read off a video, not drawn
        moving, regions = brush_regions(mask, trk, drop_outside=sampled)
        if not regions:
            if sampled:
                raise UserError("none of the video's moving tracks starts inside what you painted: paint where "
                                "the video moves, or drag by hand")
            raise UserError("no track moves a painted region: start a drag inside what you painted")
        return brush_maps(moving, regions), moving, regions

    def _motion_maps(self, flow, frames: int, image_size: tuple[int, int], fit: str) -> np.ndarray:
        """A dense motion field (``--flow``): maps [T,2,H,W] or flow [T-1,H,W,2] whose grid
        covers the given image (``image_size=(W, H)``), as a tracks JSON's width and height do, at any
        resolution -> maps at the model's resolution, cropped/padded exactly like the image."""
        import cv2

        from dragnuwa.trajectory import flow_to_maps
        from dragnuwa.video import fit_image

        arr = _load_motion_file(flow) if isinstance(flow, (str, Path)) else np.asarray(flow, np.float32)
        if arr.ndim == 4 and arr.shape[-1] == 2:
            arr = flow_to_maps(arr)
        if arr.ndim != 4 or arr.shape[1] != 2 or not np.isfinite(arr).all():
            raise UserError(f"motion must be maps [T,2,H,W] or flow [T-1,H,W,2] of finite numbers, got {arr.shape}")
        if arr.shape[0] != frames:
            raise UserError(f"motion has {arr.shape[0]} frames but {frames} frames are generated")
        H, W = arr.shape[2:]
        # Stretch the grid to the image's aspect ratio (a field needs no more than 1024 px a side),
        # then fit it like the image; displacements scale with each axis.
        img_w, img_h = image_size
        s = min(1.0, 1024 / max(img_w, img_h))
        gw, gh = max(1, round(img_w * s)), max(1, round(img_h * s))
        out = np.empty((frames, 2, self.backend.height, self.backend.width), np.float32)
        for t in range(frames):
            for c, grid_scale in ((0, gw / W), (1, gh / H)):
                grid = cv2.resize(arr[t, c], (gw, gh), interpolation=cv2.INTER_AREA if gw < W else cv2.INTER_LINEAR)
                fitted, transform = fit_image(grid * grid_scale, self.backend.size, fit)
                out[t, c] = fitted * (transform.scale_x if c == 0 else transform.scale_y)
        return out


_PIPELINES: dict[str, Pipeline] = {}


def load_pipeline(model="bundled", svd=None, **options) -> Pipeline:
    """A cached pipeline over the backend ``model`` names (``dragnuwa.backends.load_backend``):
    ``"bundled"``, a model file or a ``DragNUWA`` instance (small); a converted DragNUWA 1.5 folder
    or hub id with ``svd``, the Stable Video Diffusion parts, and its ``options`` (svd)."""
    from dragnuwa.backends import Backend, load_backend
    from dragnuwa.models.dragnuwa import DragNUWA

    if isinstance(model, (DragNUWA, Backend)):
        return Pipeline(load_backend(model, svd, **options))
    path = BUNDLED_MODEL if model in (None, "bundled") else Path(model)
    key = repr((str(path.resolve()) if path.exists() else str(model), svd, sorted(options.items())))
    if key not in _PIPELINES:
        _PIPELINES[key] = Pipeline(load_backend(model, svd, **options))
    return _PIPELINES[key]


def generate_to_file(image, tracks=None, flow=None, brush=None, text: str = "", out: str = "out.mp4", frames=None,
                     steps=None, seed: int = 0, guidance=None, traj_guidance=None, model="bundled", overlay=None,
                     fit: str = "crop", motion_init=None, motion_region: str = "disc", upscale: int = 1,
                     fps: float | None = None, variants: int = 1, detail: bool | None = None, svd=None,
                     model_options: dict | None = None) -> Path:
    """`dragnuwa generate`: one video written atomically to ``out`` (.mp4 or .gif; + optional tracks
    overlay), ``upscale`` times the model's size, played at ``fps`` (None: the model's). ``model``,
    ``svd`` and ``model_options`` choose the backend (``load_pipeline``); the rest is the same request
    for every backend, an option one lacks refused with one line (``Backend.supports``).

    ``variants`` > 1 samples seeds ``seed .. seed + variants - 1``: each video goes to
    ``<out stem>_seed<S><suffix>``, and ``out`` (and ``overlay``) shows them side by side, labelled."""
    from dragnuwa.video import check_upscale, check_video_path

    # Before the model loads: nothing is sampled for a file that cannot be written.
    for path, what in ((out, "--out"), (overlay, "--overlay")):
        if path:
            check_video_path(path, what)
    check_upscale(upscale)
    if fps is not None and not (np.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise UserError(f"fps must be a number above 0 and at most {MAX_FPS}, got {fps:g}")
    if brush is not None and tracks is None:
        raise UserError("--brush needs --tracks: the drags say where the painted regions go")
    check_variants(variants)
    if variants > 1 and isinstance(seed, int) and seed + variants - 1 >= 2**63:
        raise UserError(f"seeds {seed}..{seed + variants - 1} pass 2^63 - 1: start from a smaller --seed")
    from dragnuwa.paths import check_run_paths, variant_paths

    check_run_paths({"--image": image, "--tracks": tracks, "--flow": flow, "--brush": brush,
                     "--model": None if model == "bundled" else model},
                    {"--out": out, "--overlay": overlay,
                     "--variants": variant_paths(out, range(seed, seed + variants)) if variants > 1 else None})
    from dragnuwa.backends import backend_class

    # What the backend lacks is refused before minutes of loading it.
    backend_class(model).refuse_unsupported({"traj_guidance": traj_guidance, "motion_init": motion_init,
                                             "motion_region": motion_region, "flow": flow, "brush": brush,
                                             "detail": detail})
    if tracks is None and flow is None:
        print("note: no --tracks or --flow given: the motion follows the text and image alone")
    pipe = load_pipeline(model, svd, **(model_options or {}))
    fps = fps or pipe.backend.fps
    if variants == 1:
        res = pipe.generate(image, tracks=tracks, text=text, frames=frames, steps=steps, seed=seed,
                            guidance=guidance, traj_guidance=traj_guidance, flow=flow, fit=fit,
                            motion_init=motion_init, motion_region=motion_region, brush=brush, detail=detail)
        path, _ = write_outputs(res, out, overlay, fps, upscale)
        print(describe(res.info, upscale))
        for line in input_warnings(res.info):
            print(f"warning: {line}", file=sys.stderr)
        return path
    return _write_variants(pipe, dict(image=image, tracks=pipe.read_tracks(tracks), text=text, frames=frames,
                                      steps=steps, guidance=guidance, traj_guidance=traj_guidance, flow=flow, fit=fit,
                                      motion_init=motion_init, motion_region=motion_region, brush=brush,
                                      detail=detail),
                           seed, variants, Path(out), overlay, fps, upscale)


def render_variants(pipe, seeds: list[int], upscale: int = 1, draw: bool = True, progress=None, **kwargs):
    """``pipe.generate(**kwargs)`` once per seed -> yields ``(seed, result, frames, drawn)``: the frames
    ``upscale`` times the model's size, and (with ``draw``) the tracks drawn on them, else None.
    ``progress(i, n)`` runs once over all the seeds' sampler steps together."""
    for k, s in enumerate(seeds):
        step = None if progress is None else (lambda i, n, k=k: progress(k * n + i, len(seeds) * n))
        res = pipe.generate(seed=s, progress=step, show_progress=False, **kwargs)
        frames = upscaled_frames(res, upscale)
        yield s, res, frames, overlay_frames(res, frames, upscale) if draw else None


def _write_variants(pipe, kwargs: dict, seed: int, variants: int, out: Path, overlay, fps: float,
                    upscale: int) -> Path:
    """``variants`` seeds from ``seed``: each video beside ``out`` (``_seed<S>``), then ``out`` (and
    ``overlay``) with all of them side by side, each labelled with its seed."""
    from dragnuwa.video import write_video
    from dragnuwa.viz import tile_videos

    seeds = [seed + k for k in range(variants)]
    videos, drawn = [], []
    for s, res, frames, marked in tqdm(render_variants(pipe, seeds, upscale, bool(overlay), **kwargs),
                                       total=variants, desc="variants", unit="video", leave=False):
        path = write_video(out.with_name(f"{out.stem}_seed{s}{out.suffix}"), frames, fps)
        tqdm.write(f"{path}: {describe(res.info, upscale)}")  # above the progress bar, not through it
        videos.append(frames)
        drawn.append(marked)
    for line in input_warnings(res.info):  # the same inputs each time: say it once
        print(f"warning: {line}", file=sys.stderr)
    labels = [f"seed {s}" for s in seeds]
    if overlay:
        write_video(overlay, tile_videos(drawn, labels), fps)
    return write_video(out, tile_videos(videos, labels), fps)


def describe(info: dict, upscale: int = 1) -> str:
    """One line on what a generation did: how the image and points were fitted, what moved, and how
    sampling ran (``GenerationResult.info``)."""
    i = info
    how = "bicubic, with the image's detail" if i.get("detail") else "bicubic"
    parts = [f"image {i['input_size'][0]}x{i['input_size'][1]} -> {i['model_size'][0]}x{i['model_size'][1]} "
             f"({i['fit']}); {i['point_mapping']}",
             f"{i['tracks']} tracks"
             + (f" moving {i['brush_regions']} brushed regions" if i.get("brush_regions") else ""),
             f"{i['frames']} frames, {i['sampler_steps']} sampler steps"
             + (f" from motion init at sigma {i['motion_init']:g} ({i['motion_region']})" if i["motion_init"] else "")
             + (", the image's detail restored" if i.get("detail") else ""),
             f"{i['seconds']} s" + (f"; written {upscale}x larger ({how})" if upscale > 1 else "")]
    return parts[0] + "; " + ", ".join(parts[1:])


def stretch_warning(tracks_size, image_size) -> str | None:
    """A line when tracks drawn on a ``tracks_size`` (W, H) frame are stretched onto an image of
    another shape (aspect ratios more than 2% apart), else None."""
    (tw, th), (iw, ih) = tracks_size, image_size
    if abs(np.log((tw / th) / (iw / ih))) <= 0.02:
        return None
    return (f"the tracks were drawn on a {tw}x{th} frame and are stretched onto the {iw}x{ih} image "
            f"(aspect {tw / th:.2f} against {iw / ih:.2f}): motion along one axis is scaled more than along the other")


def input_warnings(info: dict) -> list[str]:
    """What a generation ignored or bent of its input, one line each (``GenerationResult.info``):
    tracks that lie wholly outside the part of the image the model sees, and tracks drawn on a
    frame of another shape (a video's, say), which are stretched onto the image."""
    lines = list(info.get("ignored") or [])  # inputs the backend reads nothing from (a prompt, say)
    stretched = stretch_warning(info.get("tracks_size") or info["input_size"], info["input_size"])
    if info["tracks"] and stretched:
        lines.append(stretched)
    outside = info.get("tracks_outside") or []
    if outside:
        x0, y0, x1, y1 = info["visible"]
        names = ", ".join(map(str, outside))
        hint = "; --fit pad keeps the whole image" if info["fit"] == "crop" else ""
        lines.append(f"track{'s' if len(outside) > 1 else ''} {names} of {info['tracks']} "
                     f"{'lie' if len(outside) > 1 else 'lies'} outside the part of the image the model sees "
                     f"(x {x0:g}-{x1:g}, y {y0:g}-{y1:g}) and had no effect{hint}")
    return lines


def write_outputs(res, out, overlay=None, fps: float = 8.0, upscale: int = 1) -> tuple[Path, Path | None]:
    """Write a generation's video, and optionally its tracks overlay (with a motion brush's regions
    outlined), ``upscale`` times the model's size (``upscaled_frames``; the tracks are drawn at the
    larger size, so they stay thin), each atomically."""
    from dragnuwa.video import write_video

    frames = upscaled_frames(res, upscale)
    path = write_video(out, frames, fps)
    drawn = write_video(overlay, overlay_frames(res, frames, upscale), fps) if overlay else None
    return path, drawn


def upscaled_frames(res, factor: int) -> np.ndarray:
    """A generation's frames ``factor`` times the model's size, for viewing: bicubic, and when the
    generation restored detail (``dragnuwa.detail``), the given image's own detail at that size
    restored along the video's motion, with the first frame the image itself fitted at that size
    (when it was pasted): a photo keeps its sharpness where the model's 64 px cannot hold it."""
    from dragnuwa.detail import DetailConfig, restore_detail
    from dragnuwa.video import fit_image, upscale

    decoded, source = getattr(res, "decoded", None), getattr(res, "source", None)
    info = getattr(res, "info", {})
    if factor == 1 or not info.get("detail") or decoded is None or source is None:
        return upscale(res.frames, factor)
    h, w = res.frames.shape[1:3]
    try:
        image = fit_image(source, (w * factor, h * factor), info["fit"])[0]
    except UserError:
        # A sliver-thin image cropped to a larger square would first be scaled past MAX_FIT_PIXELS,
        # though it fitted the model's size: it has no detail to give at that size anyway.
        return upscale(res.frames, factor)
    # The same split as at the model's size, in the larger video's pixels.
    out = restore_detail(upscale(decoded, factor), image, DetailConfig(sigma=DetailConfig.sigma * factor))
    if info.get("paste_first"):
        out[0] = image
    return out


def overlay_frames(res, frames: np.ndarray, upscale: int = 1) -> np.ndarray:
    """A generation's tracks (and a motion brush's regions, outlined) drawn on its ``frames``, which
    are ``upscale`` times the model's size (the drawing is done at that size, so lines stay thin)."""
    from dragnuwa.viz import draw_regions, draw_tracks

    brush = getattr(res, "brush", None)  # any object with frames and tracks will do
    marked = frames if brush is None else draw_regions(frames, brush[0] * upscale, brush[1], upscale)
    return draw_tracks(marked, np.asarray(res.tracks) * upscale)
