"""`dragnuwa app`: a web UI over ``dragnuwa.pipeline`` (no model logic here).

Upload an image (or pick a bundled example), click on it to add points to the current track,
start new tracks, undo, reset; write a prompt; Generate shows progress, then the video, an
overlay of the tracks, and download links for the video and the tracks JSON. Each browser
session has its own tracks (``gr.State``); generation is queued one at a time.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

from dragnuwa.errors import UserError

# The UI writes its videos 4x the model's 64 px (pipeline.upscaled_frames), so the player is not a thumbnail; the API
# endpoint returns the model's own size.
VIEW_UPSCALE = 4
VIEW_SIDE = 256  # the UI enlarges a video until its longer side reaches this, at most VIEW_UPSCALE times


def view_upscale(size: tuple[int, int]) -> int:
    """How many times the UI enlarges a backend's ``size=(W, H)`` videos: 4 for the small model's 64 px,
    1 for DragNUWA 1.5's 576x320."""
    return min(VIEW_UPSCALE, max(1, VIEW_SIDE // max(size)))

HELP = ("Click on the image to add points to the current track (drag path, first click = start). "
        "**New track** starts another; a track with one point keeps that point still (an anchor).")


# The motion brush's paint colour in the editor (any colour paints; the layer's alpha is the mask).
BRUSH_RGB = (255, 51, 102)


FITS = ("crop", "pad", "stretch")  # dragnuwa.video.fit_image's choices


def _empty_state(old: dict | None = None) -> dict:
    """No image, no tracks; keeps the old state's view settings. "brush": a bundled example's motion
    brush (bool [H, W]), shown painted when it is picked; "fit" and "model_size" (W, H) say which part
    of the image the model sees (None: the canvas does not shade it)."""
    view = {k: (old or {}).get(k, d) for k, d in (("fit", "crop"), ("model_size", None))}
    return {"image": None, "tracks": [[]], "brush": None, **view}


def _visible(state: dict) -> tuple[float, float, float, float] | None:
    """The part of the image the model sees with the chosen fit, in the image's pixels."""
    from dragnuwa.video import fit_transform

    if state["image"] is None or state.get("model_size") is None:
        return None
    h, w = state["image"].shape[:2]
    return fit_transform((w, h), state["model_size"], state["fit"]).visible((w, h), state["model_size"])


def _outside(state: dict) -> list[int]:
    """Tracks (1-based) with no point in the part of the image the model sees: they would do nothing."""
    box = _visible(state)
    if box is None:
        return []
    x0, y0, x1, y1 = box
    return [i + 1 for i, t in enumerate(t for t in state["tracks"] if t)
            if not any(x0 <= x < x1 and y0 <= y < y1 for x, y in t)]


def _render(state: dict):
    from dragnuwa.viz import draw_track_image, shade_outside

    if state["image"] is None:
        return None
    box = _visible(state)
    image = state["image"] if box is None else shade_outside(state["image"], box)
    return draw_track_image(image, [np.array(t) for t in state["tracks"] if t])


def _summary(state: dict) -> str:
    tracks = [t for t in state["tracks"] if t]
    if state["image"] is None:
        return "No image yet: upload one or pick an example."
    h, w = state["image"].shape[:2]
    kinds = ", ".join(f"#{i + 1}: {len(t)} point{'s' if len(t) > 1 else ''}{' (anchor)' if len(t) == 1 else ''}"
                      for i, t in enumerate(tracks))
    text = f"Image {w}x{h}. {len(tracks)} track(s){': ' + kinds if kinds else ''}."
    box = _visible(state)
    if box is not None and (box[2] - box[0] < w or box[3] - box[1] < h):
        text += f" The model sees the unshaded part ({state['fit']})."
    outside = _outside(state)
    if outside:
        text += (f" **Track {', '.join(f'#{i}' for i in outside)} lies outside it and would do nothing**: "
                 "move it, or fit by padding.")
    return text


def tracks_json(state: dict) -> dict:
    h, w = state["image"].shape[:2]
    return {"width": int(w), "height": int(h), "tracks": [t for t in state["tracks"] if t]}


def brush_mask(editor) -> np.ndarray | None:
    """The motion brush painted in the editor (``{"background", "layers", "composite"}``, RGBA layers)
    -> ``bool [H, W]`` where any layer is at least half opaque; None when nothing is painted."""
    layers = [np.asarray(layer) for layer in (editor or {}).get("layers") or [] if layer is not None]
    layers = [layer for layer in layers if layer.ndim == 3 and layer.shape[2] == 4]
    if not layers or layers[0].size == 0:
        return None
    painted = np.any([layer[..., 3] >= 128 for layer in layers if layer.shape == layers[0].shape], axis=0)
    return painted if painted.any() else None


def brush_canvas(state: dict) -> dict | None:
    """A fresh brush editor over the current image: unpainted, or with the picked example's brush."""
    if state["image"] is None:
        return None
    # One transparent layer the size of the image to paint on (the editor draws into its layers).
    layer = np.zeros(state["image"].shape[:2] + (4,), np.uint8)
    if state.get("brush") is not None:
        layer[state["brush"]] = BRUSH_RGB + (255,)
    return {"background": state["image"], "layers": [layer], "composite": None}


# ---------------------------------------------------------------- event handlers (pure functions of state)


def on_upload(image, state):
    state = _empty_state(state)
    if image is not None:
        state["image"] = np.asarray(image)[..., :3].astype(np.uint8)
    return state, _render(state), _summary(state)


def on_click(state, x: float, y: float):
    """Add a point; clicks outside the image (possible with some layouts) are ignored, not a crash."""
    if state["image"] is None:
        return state, None, "Upload an image first."
    h, w = state["image"].shape[:2]
    if not (0 <= x <= w and 0 <= y <= h):
        return state, _render(state), f"Ignored a click outside the image at ({x:.0f}, {y:.0f})."
    state["tracks"][-1].append([float(x), float(y)])
    return state, _render(state), _summary(state)


def on_new_track(state):
    if state["tracks"][-1]:
        state["tracks"].append([])
    return state, _render(state), _summary(state)


def on_undo_point(state):
    if not state["tracks"][-1] and len(state["tracks"]) > 1:
        state["tracks"].pop()
    if state["tracks"][-1]:
        state["tracks"][-1].pop()
    return state, _render(state), _summary(state)


def on_delete_track(state):
    """Delete the last track that has points; the next click starts a new track."""
    tracks = [t for t in state["tracks"] if t]
    state["tracks"] = tracks[:-1] + [[]]
    return state, _render(state), _summary(state)


def on_reset(state):
    state["tracks"] = [[]]
    return state, _render(state), _summary(state)


def on_fit(fit: str, state):
    """Crop, pad or stretch: changes which part of the image the canvas shows unshaded."""
    if fit not in FITS:
        raise UserError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    state["fit"] = fit
    return state, _render(state), _summary(state)


def on_tracks_upload(file, state):
    from dragnuwa.pipeline import stretch_warning
    from dragnuwa.tracks_io import load_tracks

    if file is None or state["image"] is None:
        return state, _render(state), "Upload an image before a tracks JSON."
    ts = load_tracks(file if isinstance(file, str) else file.name)
    h, w = state["image"].shape[:2]
    stretched = stretch_warning((ts.width, ts.height), (w, h))
    ts = ts.rescaled(w, h)
    state["tracks"] = [t.tolist() for t in ts.tracks] + [[]]
    return state, _render(state), _summary(state) + (f" Note: {stretched}." if stretched else "")


def on_video_upload(file, state, max_frames: int | None = None, max_tracks: int = 8):
    """A video: its first frame becomes the image and its own motion the tracks (the Trajectory
    Sampler, paper Sec. 3.2, on its first ``max_frames`` frames), to animate as it moved or to edit."""
    from dragnuwa.trajectory import tracks_from_video

    if file is None:
        return state, _render(state), _summary(state)
    first, ts = tracks_from_video(file if isinstance(file, str) else file.name, max_tracks=max_tracks,
                                  max_frames=max_frames)
    state = _empty_state(state)
    state["image"] = first
    state["tracks"] = [t.tolist() for t in ts.tracks] + [[]]
    frames = len(ts.tracks[0]) if ts.tracks else 0
    return state, _render(state), _summary(state) + f" Tracks read off the video's first {frames} frames."


def run_generation(pipe, image: np.ndarray, tracks: dict | None, text: str, frames: int, steps: int, seed: int,
                   guidance: float, traj_guidance: float, progress=None,
                   motion_init: float | None = None, motion_region: str = "disc",
                   upscale: int = 1, brush: np.ndarray | None = None, fit: str = "crop",
                   variants: int = 1, detail: bool | None = None,
                   out_root: str | Path | None = None) -> tuple[str, ...]:
    """Generate and write the video, the overlay, the tracks JSON and the video as a GIF (to share)
    into a fresh folder -> their paths; the videos ``upscale`` times the model's size. ``brush``: the
    painted regions that move along the tracks (``bool [H, W]`` over the image) or None; when given,
    it is written too (brush.png, white on black) and its path comes fifth. ``fit``: how an image of
    another aspect ratio is fitted (crop, pad, stretch). ``variants`` > 1: that many seeds from
    ``seed``, side by side (labelled) in the video, overlay and GIF, and each alone as
    ``dragnuwa_seed<S>.mp4`` at the end of the paths. The tracks JSON's path is None when no tracks
    were given. The folder is made in ``out_root`` (None: the temp dir) once the videos exist, so a
    refused request leaves none. ``detail``: restore the image's fine detail
    along the video's motion (``dragnuwa.detail``; None: the backend's default). The UI's controls for
    options the backend lacks are hidden, so their values are not requests: only the options the
    backend supports are passed on (``Backend.supports``)."""
    from dragnuwa.pipeline import check_variants, render_variants
    from dragnuwa.tracks_io import save_tracks
    from dragnuwa.video import write_video
    from dragnuwa.viz import tile_videos

    from dragnuwa.app_requests import finite_number, whole_number
    from dragnuwa.tracks_io import request_tracks

    variants = whole_number(variants, "variants")
    check_variants(variants)
    frames, steps, seed = whole_number(frames, "frames"), whole_number(steps, "steps"), whole_number(seed, "seed")
    guidance, traj_guidance = finite_number(guidance, "guidance"), finite_number(traj_guidance, "traj-guidance")
    motion_init = None if motion_init is None else finite_number(motion_init, "motion-init")
    if image is None:
        raise UserError("no image: upload the image to animate (or pick an example)")
    ts = request_tracks(tracks)  # the CLI's rule: none given, or at least one track
    fps, seeds = pipe.backend.fps, [int(seed) + k for k in range(variants)]
    options = {k: v for k, v in dict(
        traj_guidance=float(traj_guidance), motion_init=None if motion_init is None else float(motion_init),
        motion_region=motion_region, detail=None if detail is None else bool(detail)).items()
        if k in pipe.backend.supports}
    videos, drawn = [], []
    for s, _, enlarged, marked in render_variants(
            pipe, seeds, upscale, progress=progress, image=image, tracks=ts, text=text or "", frames=int(frames),
            steps=int(steps), guidance=float(guidance), brush=brush, fit=fit, **options):
        videos.append(enlarged)
        drawn.append(marked)
    labels = [f"seed {s}" for s in seeds] if variants > 1 else None
    video, overlay = tile_videos(videos, labels), tile_videos(drawn, labels)
    # The folder only now: a refused or stopped request leaves nothing behind, and a failed write
    # takes its folder with it.
    out = Path(tempfile.mkdtemp(prefix="dragnuwa_app_", dir=out_root))
    try:
        singles = [str(write_video(out / f"dragnuwa_seed{s}.mp4", v, fps)) for s, v in zip(seeds, videos)
                   if variants > 1]
        paths = [write_video(out / "dragnuwa.mp4", video, fps),
                 write_video(out / "dragnuwa_tracks.mp4", overlay, fps)]
        # No tracks, no tracks file: a file with an empty list is what `generate --tracks` refuses.
        tpath = None if ts is None else save_tracks(out / "tracks.json", ts)
        paths += [tpath, write_video(out / "dragnuwa.gif", video, fps)]
        if brush is not None:  # the painting, to reuse with `dragnuwa generate --brush`
            from PIL import Image

            Image.fromarray(np.asarray(brush, np.uint8) * 255).save(out / "brush.png")
            paths.append(out / "brush.png")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return tuple(None if p is None else str(p) for p in paths) + tuple(singles)


def build_app(model="bundled", svd=None, model_options: dict | None = None):
    """The gradio Blocks app. ``model``: "bundled", a model file, a ``DragNUWA`` instance, or a
    DragNUWA 1.5 folder / hub id with ``svd`` and ``model_options`` (``pipeline.load_pipeline``). It
    shows the controls of the options the backend supports (``Backend.supports``)."""
    import gradio as gr

    from dragnuwa.demo import example_paths, list_examples
    from dragnuwa.motion_init import MOTION_REGIONS
    from dragnuwa.pipeline import load_pipeline
    from dragnuwa.video import load_image

    pipe = load_pipeline(model, svd, **(model_options or {}))
    backend = pipe.backend
    supports, defaults, upscale = backend.supports, backend.defaults, view_upscale(backend.size)

    from dragnuwa.app_requests import RequestFolders, stop_when_client_leaves

    folders = RequestFolders()  # each request's files; removed when the next request starts and on close

    def guarded(fn):
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except UserError as e:
                # The user's mistake, said in one line to the page or client; no traceback in the server log.
                raise gr.Error(str(e), print_exception=False) from None
        return wrapper

    def with_fresh_brush(handler):
        """A new image clears the brush: the handler's outputs plus an unpainted editor over it."""
        def wrapper(*args):
            out = handler(*args)
            return (*out, brush_canvas(out[0]))
        return wrapper

    def click(state, evt: gr.SelectData):
        x, y = evt.index
        return on_click(state, x, y)

    def pick_example(name, state):
        if not name:
            return state, None, _summary(state), gr.update()
        ex = example_paths(name)
        state = _empty_state(state)
        state["image"] = load_image(ex["image"])
        state, _, _ = on_tracks_upload(str(ex["tracks"]), state)
        if "brush" in ex:
            from dragnuwa.motion_brush import load_brush

            state["brush"] = load_brush(ex["brush"])
        return state, _render(state), _summary(state), ex["prompt"].read_text().strip()

    def generate(state, text, frames, steps, seed, variants, guidance, traj_guidance, motion_init, motion_region,
                 detail, editor, progress=gr.Progress()):
        if state["image"] is None:
            raise gr.Error("Upload an image or pick an example first.")
        folders.sweep()
        progress(0, desc="sampling")
        # Nothing clicked is no tracks given: the motion follows the text and image alone, as in the CLI.
        video, overlay, tpath, gif, *rest = run_generation(
            pipe, state["image"], tracks_json(state) if any(state["tracks"]) else None, text, frames, steps, seed,
            guidance, traj_guidance, out_root=folders.root,
            progress=stop_when_client_leaves(lambda i, n: progress(i / n, desc=f"sampling step {i}/{n}")),
            motion_init=motion_init,
            motion_region=motion_region, upscale=upscale, brush=brush_mask(editor), fit=state["fit"],
            variants=variants, detail=detail)
        return video, overlay, [p for p in (video, gif, tpath, *rest) if p]

    def generate_api(image_path, tracks_text, text, frames, steps, seed, guidance, traj_guidance,
                     fit="crop", motion_init=None, motion_region="disc", detail=None, progress=gr.Progress()):
        """API endpoint: an image file + a tracks JSON string -> (video, tracks JSON file). The last
        four have defaults (the model's motion init when None), so clients that pass the first
        eight by position keep working. Empty tracks text is no tracks (then the tracks file is None).
        Progress is reported per sampler step, which also lets a client's disconnect be seen."""
        folders.sweep()
        if not image_path:
            raise UserError("no image: give the image file to animate")
        if fit not in FITS:
            raise UserError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
        image = load_image(image_path)
        # The tracks text is parsed by run_generation, by the CLI's rules (tracks_io.request_tracks).
        video, _, tpath, _ = run_generation(pipe, image, tracks_text, text, frames, steps, seed, guidance,
                                            traj_guidance, motion_init=motion_init, motion_region=motion_region,
                                            fit=fit, detail=detail, out_root=folders.root,
                                            progress=stop_when_client_leaves(lambda i, n: progress(i / n)))
        return video, tpath

    # Open on the bundled demo example, so a first visitor sees an image with tracks to try.
    first, first_prompt = _empty_state({"model_size": backend.size}), ""
    if "demo" in list_examples():
        first, _, _, first_prompt = pick_example("demo", first)

    with gr.Blocks(title="dragnuwa") as demo:
        gr.Markdown("# dragnuwa — drag to animate\nText (what) + image (where) + trajectories (how it moves). "
                    + HELP)
        state = gr.State(first)
        with gr.Row():
            with gr.Column():
                upload = gr.Image(label="Upload image", type="numpy", sources=["upload"], height=220)
                examples = gr.Dropdown(choices=list_examples(), label="or pick an example", value=None)
                canvas = gr.Image(value=_render(first), label="Click to draw tracks", type="numpy",
                                  interactive=False, elem_id="canvas")
                status = gr.Markdown(_summary(first))
                fit = gr.Radio(list(FITS), value="crop",
                               label=f"Fit to the model's {backend.width}x{backend.height} frame",
                               info="crop: the unshaded centre; pad: the whole image, with black bars; "
                                    "stretch: the whole image, squeezed")
                with gr.Row():
                    new_track = gr.Button("New track")
                    undo = gr.Button("Undo point")
                    delete = gr.Button("Delete track")
                    reset = gr.Button("Reset")
                with gr.Row():
                    tracks_file = gr.File(label="Upload tracks JSON", file_types=[".json"], height=140)
                    video_file = gr.File(label="or a video: its first frame, moved as it moves",
                                         file_types=["video"], height=140, elem_id="video_file")
                with gr.Accordion("Motion brush (optional)", open=False, visible="brush" in supports):
                    gr.Markdown("Paint what moves: each painted region moves along the track that starts "
                                "in it, as a whole (one stroke over two objects is split between their "
                                "drags). Unpainted parts stay. Leave it empty for plain drags.")
                    brush = gr.ImageEditor(value=brush_canvas(first), type="numpy", image_mode="RGBA",
                                           sources=(), transforms=(), layers=False, label="Motion brush",
                                           brush=gr.Brush(colors=["#%02x%02x%02x" % BRUSH_RGB], color_mode="fixed"),
                                           elem_id="brush")
            with gr.Column():
                text = gr.Textbox(value=first_prompt, label="Prompt",
                                  placeholder="a red circle moves to the right on a brick wall")
                with gr.Row():
                    frames = gr.Slider(2, backend.max_frames, value=backend.frames, step=1, label="Frames")
                    steps = gr.Slider(1, 100, value=backend.steps, step=1, label="Steps")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                    variants = gr.Slider(1, 4, value=1, step=1, label="Variants (seeds from Seed on, side by side)")
                with gr.Row():
                    guidance = gr.Slider(0, 10, value=backend.guidance, step=0.1,
                                         label="Text guidance" if "text" in backend.conditions else "Guidance")
                    traj_guidance = gr.Slider(0, 10, value=defaults.get("traj_guidance", 0.0), step=0.1,
                                              label="Trajectory guidance", visible="traj_guidance" in supports)
                motion_init = gr.Slider(0, 4, value=defaults.get("motion_init", 0.0), step=0.1,
                                        label="Motion init (0 = off)", visible="motion_init" in supports,
                                        info="start from the image cut and pasted along the tracks, noised "
                                             "to this level: lower follows the drags more closely")
                motion_region = gr.Radio(list(MOTION_REGIONS), value="disc", label="Motion init moves",
                                         visible="motion_region" in supports,
                                         info="the disc around each track's start, or the object under it")
                detail = gr.Checkbox(bool(defaults.get("detail")), label="Restore the image's detail",
                                     visible="detail" in supports,
                                     info="carry the image's fine texture onto the frames along the video's "
                                          "own motion (the model's frames are softer than the image)")
                go = gr.Button("Generate", variant="primary", elem_id="generate")
                video = gr.Video(label="Video", autoplay=True, loop=True)
                overlay = gr.Video(label="Video with tracks", autoplay=True, loop=True)
                downloads = gr.File(label="Downloads (mp4, GIF, tracks JSON)", file_count="multiple")
        editing = [state, canvas, status]
        upload.change(with_fresh_brush(on_upload), [upload, state], editing + [brush], api_name=False)
        canvas.select(click, [state], editing, api_name=False)
        new_track.click(on_new_track, [state], editing, api_name=False)
        undo.click(on_undo_point, [state], editing, api_name=False)
        delete.click(on_delete_track, [state], editing, api_name=False)
        reset.click(on_reset, [state], editing, api_name=False)
        fit.change(guarded(on_fit), [fit, state], editing, api_name=False)
        tracks_file.upload(guarded(on_tracks_upload), [tracks_file, state], editing, api_name=False)
        video_file.upload(guarded(with_fresh_brush(lambda file, st: on_video_upload(file, st, backend.max_frames))),
                          [video_file, state], editing + [brush], api_name=False)
        examples.change(guarded(with_fresh_brush(pick_example)), [examples, state], editing + [text, brush],
                        api_name=False)
        go.click(guarded(generate),
                 [state, text, frames, steps, seed, variants, guidance, traj_guidance, motion_init, motion_region,
                  detail, brush],
                 [video, overlay, downloads], api_name=False, concurrency_id="generate")
        # Hidden API for scripts and tests (gradio_client): image file + tracks JSON text.
        api_in = [gr.File(visible=False), gr.Textbox(visible=False), gr.Textbox(visible=False),
                  gr.Number(visible=False), gr.Number(visible=False), gr.Number(visible=False),
                  gr.Number(visible=False), gr.Number(visible=False), gr.Textbox("crop", visible=False),
                  gr.Number(None, visible=False), gr.Textbox("disc", visible=False),
                  gr.Checkbox(bool(defaults.get("detail")), visible=False)]
        api_out = [gr.File(visible=False), gr.File(visible=False)]
        api_btn = gr.Button(visible=False)
        # The last four are optional for clients: gradio takes defaults from the components' values
        # (None: from the function's default); wraps gives it the parameter names, for keywords.
        api_btn.click(functools.wraps(generate_api)(guarded(generate_api)), api_in, api_out, api_name="generate",
                      concurrency_id="generate")  # one generation at a time, from the page or the API
    demo.queue(default_concurrency_limit=1)
    close = demo.close

    def close_and_clean(*args, **kwargs):  # the request folders go with the server
        try:
            return close(*args, **kwargs)
        finally:
            folders.close()
    demo.close = close_and_clean
    return demo


def launch(host: str = "127.0.0.1", port: int = 7860, model="bundled", share: bool = False, block: bool = True,
           svd=None, model_options: dict | None = None):
    """Start the app. With ``block=False`` returns the running Blocks (call ``.close()``)."""
    check_address(host, port)  # before the model loads
    demo = build_app(model, svd, model_options)
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block)
    return demo


def check_address(host: str, port: int) -> None:
    """Refuse (``UserError``) a host and port the server could not listen on: a port out of range,
    an unknown host, a port in use."""
    import socket

    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise UserError(f"--port must be between 1 and 65535, got {port}")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, port))
    except (OSError, OverflowError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise UserError(f"cannot listen on {host}:{port}: {reason} (pick another --port or --host)") from None
