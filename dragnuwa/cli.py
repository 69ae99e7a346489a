"""The ``dragnuwa`` command line: parses arguments and calls the modules.

Thin on purpose: no model or data logic lives here. Each ``cmd_*`` function
imports what it needs lazily so ``dragnuwa --help`` stays fast. A ``UserError``
anywhere ends the program with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from dragnuwa.errors import UserError


# dragnuwa.motion_init.MOTION_REGIONS, spelled out so `dragnuwa --help` need not import torch and OpenCV
# (tests/test_motion_init.py keeps the two in step).
MOTION_REGIONS = ("disc", "object")


MAX_SEED = 2**63 - 1  # what both torch's and numpy's generators accept


def _whole_number(low: int, high: int | None, noun: str, out_of_range: str):
    """An argparse type: a whole number from ``low`` to ``high`` (None: no bound). A word that is not
    a number reads "expected <noun>"; one out of range, ``out_of_range`` with ``{value}`` filled in."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(out_of_range.format(value=value))
        return value
    return parse


_positive_int = _whole_number(1, None, "a positive integer", "expected a positive integer, got {value}")
_non_negative_int = _whole_number(0, None, "a whole number", "expected 0 or more, got {value}")
_seed = _whole_number(0, MAX_SEED, "a whole number", "a seed must be between 0 and 2^63 - 1, got {value}")


def _size(text: str) -> tuple[int, int]:
    """'256' -> (256, 256); '320x576' -> (W=320, H=576)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or WxH, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"expected SIZE or WxH with positive numbers, got {text!r}")
    return parts[0], parts[1]


# --------------------------------------------------------------------------- commands


def cmd_demo(args: argparse.Namespace) -> None:
    from dragnuwa import demo

    out = demo.run_demo(out=args.out, steps=args.steps, seed=args.seed, upscale=args.upscale, fps=args.fps)
    print(out)


def cmd_generate(args: argparse.Namespace) -> None:
    from dragnuwa import pipeline

    out = pipeline.generate_to_file(
        image=args.image, tracks=args.tracks, flow=args.flow, brush=args.brush, text=args.text, out=args.out,
        frames=args.frames, steps=args.steps, seed=args.seed, guidance=args.guidance,
        traj_guidance=args.traj_guidance, model=args.model, overlay=args.overlay, fit=args.fit,
        motion_init=args.motion_init, motion_region=args.motion_region, upscale=args.upscale, fps=args.fps,
        variants=args.variants, detail=args.detail, svd=args.svd, model_options=_model_options(args),
    )
    print(out)


def cmd_tracks(args: argparse.Namespace) -> None:
    from dragnuwa import trajectory

    trajectory.run_tracks_command(
        video=args.video, out=args.out, max_tracks=args.max_tracks, flow=args.flow,
        viz=args.viz, seed=args.seed, size=args.size, max_frames=args.max_frames, max_side=args.max_side,
        start=args.start, tracker=args.tracker,
    )
    print(args.out)


def cmd_synth(args: argparse.Namespace) -> None:
    from dragnuwa.data import synthetic

    paths = synthetic.write_dataset(args.out_dir, count=args.count, frames=args.frames,
                                    size=args.size, seed=args.seed)
    print(f"wrote {len(paths)} clips to {args.out_dir}")


def cmd_prepare(args: argparse.Namespace) -> None:
    from dragnuwa.data import prepare

    cfg = prepare.PrepareConfig(frames=args.frames, stride=args.stride, clips_per_video=args.clips_per_video,
                                size=args.size, flow=args.flow, flow_factor=args.flow_factor,
                                videos_per_shard=args.videos_per_shard, crf=args.crf, seed=args.seed)
    manifest = prepare.run_prepare(args.source, args.out, cfg, workers=args.workers, address=args.address,
                                   captions=args.captions, video_column=args.video_column,
                                   caption_column=args.caption_column)
    print(prepare.summary(manifest))
    print(f"{args.out}/manifest.json")


def cmd_train(args: argparse.Namespace) -> None:
    from dragnuwa.training import loop

    loop.train_from_config(args.config, stage=args.stage, init=args.init, resume=args.resume,
                           max_steps=args.max_steps, out_dir=args.out_dir, batch_size=args.batch_size,
                           workers=args.workers, max_minutes=args.max_minutes)


def cmd_train_autoencoder(args: argparse.Namespace) -> None:
    from dragnuwa.training import autoencoder

    autoencoder.train_autoencoder_from_config(args.config, resume=args.resume,
                                              max_steps=args.max_steps, out_dir=args.out_dir,
                                              init=args.init, decoder_only=args.decoder_only)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from dragnuwa import evaluate

    report = evaluate.run_evaluation(model=args.model, out_dir=args.out_dir, count=args.count,
                                     seed=args.seed, steps=args.steps, ablations=args.ablations,
                                     motion_init=args.motion_init, motion_region=args.motion_region,
                                     detail=args.detail, svd=args.svd, model_options=_model_options(args))
    print(report)


def cmd_app(args: argparse.Namespace) -> None:
    from dragnuwa import app

    app.launch(host=args.host, port=args.port, model=args.model, share=False, svd=args.svd,
               model_options=_model_options(args))


def cmd_convert(args: argparse.Namespace) -> None:
    from dragnuwa.svd.convert import convert_checkpoint

    print(convert_checkpoint(args.checkpoint, args.out, config=args.config, fp16=args.fp16))


# --------------------------------------------------------------------------- parser


MODEL_HELP = ("'bundled' (the small model), a small model .safetensors file, or a DragNUWA 1.5 folder written "
              "by `dragnuwa convert` (or a hub id) with --svd")
# The DragNUWA 1.5 backend's options (dragnuwa.svd.backend); the small model refuses each one.
MODEL_OPTIONS = ("dtype", "offload", "decode_chunk_size", "motion_bucket_id", "size", "anchors")


def _add_model_args(s: argparse.ArgumentParser) -> None:
    """--model and the options that choose and load a backend (``dragnuwa.backends.load_backend``)."""
    s.add_argument("--model", default="bundled", help=MODEL_HELP)
    g = s.add_argument_group("DragNUWA 1.5 (--model DIR with --svd)")
    g.add_argument("--svd", default=None, metavar="PATH_OR_ID",
                   help="Stable Video Diffusion folder or hub id: its VAE, CLIP image encoder and scheduler")
    g.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default=None,
                   help="weights' precision (default: fp16 on a GPU, fp32 on the CPU)")
    g.add_argument("--offload", action="store_true", default=None,
                   help="model CPU offload: each part on the GPU only while it runs (less memory, slower)")
    g.add_argument("--decode-chunk-size", type=_positive_int, default=None, metavar="N",
                   help="frames the VAE decodes at once (default 1, the official; more is faster, uses more memory)")
    g.add_argument("--motion-bucket-id", type=_non_negative_int, default=None, metavar="N",
                   help="SVD's motion conditioning (default 4, the official demo's)")
    g.add_argument("--size", type=_size, default=None, metavar="WxH",
                   help="the model's frame size, multiples of 64 (default 576x320, the official)")
    g.add_argument("--anchors", choices=["official", "still"], default=None,
                   help="a one-click track: 'official' drifts it 1 px as the published model was run; "
                        "'still' keeps it put (this project's anchor)")


def _model_options(args: argparse.Namespace) -> dict:
    """The backend options given on the command line (None: not given)."""
    return {k: getattr(args, k) for k in MODEL_OPTIONS if getattr(args, k, None) is not None}



class OneLineErrors(argparse.ArgumentParser):
    """argparse, but a bad argument gets one line (not the whole usage) and exit code 2, like every
    other bad input; subcommand parsers inherit it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrors(prog="dragnuwa", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("demo", help="generate a video with the bundled model and example")
    s.add_argument("--out", default="dragnuwa_demo.mp4", help="output video, .mp4 or .gif (default: %(default)s)")
    s.add_argument("--steps", type=_positive_int, default=None, help="sampling steps (model default)")
    s.add_argument("--seed", type=_seed, default=0)
    # 4x: the bundled model's 64 px is a thumbnail in most players; the demo is there to be watched.
    s.add_argument("--upscale", type=_positive_int, default=4, metavar="N",
                   help="write the video N times the model's size (bicubic, plus the image's own detail), "
                        "for viewing; 1 = the model's own size (default: %(default)s)")
    s.add_argument("--fps", type=float, default=None,
                   help="frames per second the video plays at (default: the model's, 8 for the bundled one)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("generate", help="one video from an image, tracks and a prompt")
    s.add_argument("--image", required=True, help="first frame: an image (PNG/JPEG/...; any size), or a video "
                                                "(.mp4/.mov/...) whose first frame is taken")
    motion = s.add_mutually_exclusive_group()
    motion.add_argument("--tracks", help="tracks JSON (see docs/tracks.md), or a video: its own motion, read off "
                                         "it by the Trajectory Sampler (as `dragnuwa tracks` does)")
    motion.add_argument("--flow", help="dense motion file (.npy/.npz [T,2,H,W] or [T-1,H,W,2]) over the image")
    s.add_argument("--brush", metavar="MASK", help="motion brush: an image of the painted regions (white on black, "
                                                   "or a layer with transparency) that move along the --tracks "
                                                   "starting in them")
    s.add_argument("--text", default="", help="text prompt")
    s.add_argument("--out", required=True, help="output video, .mp4 or .gif")
    s.add_argument("--frames", type=_positive_int, default=None, help="frames (model default)")
    s.add_argument("--steps", type=_positive_int, default=None, help="sampling steps (model default)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--guidance", type=float, default=None, help="text guidance scale (model default)")
    s.add_argument("--traj-guidance", type=float, default=None,
                   help="trajectory guidance scale (model default; for DragNUWA 1.5, 1 = the official "
                        "guidance, other values add a pass without the trajectory)")
    s.add_argument("--motion-init", type=float, default=None, metavar="SIGMA",
                   help="start sampling at this noise level from the image cut and pasted along the "
                        "tracks; 0 = from pure noise, as in the paper (model default)")
    s.add_argument("--motion-region", choices=MOTION_REGIONS, default="disc",
                   help="what motion init moves along each track: the disc around its start, or the "
                        "object under it (found by GrabCut); with --brush, the painted regions instead")
    _add_model_args(s)
    s.add_argument("--overlay", default=None, help="also write the video with the tracks drawn (.mp4 or .gif)")
    s.add_argument("--variants", type=_positive_int, default=1, metavar="N",
                   help="sample N seeds from --seed on: each video as OUT_seed<S>, and OUT shows them side by side")
    s.add_argument("--fit", choices=["crop", "pad", "stretch"], default="crop",
                   help="how an image of another aspect ratio is fitted (default: %(default)s)")
    s.add_argument("--no-detail", dest="detail", action="store_false", default=None,
                   help="keep the decoded frames as they are, without the image's fine detail carried "
                        "along the video's motion (dragnuwa.detail; the small model's)")
    s.add_argument("--upscale", type=_positive_int, default=1, metavar="N",
                   help="write the video N times the model's size (bicubic, plus the image's own detail "
                        "unless --no-detail), for viewing (default: 1)")
    s.add_argument("--fps", type=float, default=None,
                   help="frames per second the video plays at (default: the model's, 8 for the bundled one)")
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("tracks", help="Trajectory Sampler on a real video")
    s.add_argument("video")
    s.add_argument("--out", required=True, help="tracks JSON to write")
    s.add_argument("--max-tracks", type=_positive_int, default=8,
                   help="tracks to draw, preferring moving points (fewer only when fewer can be tracked; "
                        "default: %(default)s)")
    s.add_argument("--tracker", default="lk", choices=["lk", "dis", "dis_strict", "rlof"],
                   help="how points are followed: lk (sparse Lucas-Kanade), dis (the paper's chain through dense "
                        "flow), dis_strict (ends a track at its first failed step), rlof (needs opencv-contrib); "
                        "each but dis_strict bridges a point briefly lost or hidden (docs/tracks.md; "
                        "default: %(default)s)")
    s.add_argument("--flow", default="dis", help="optical-flow backend of the dis trackers (default: %(default)s)")
    s.add_argument("--viz", default=None, help="also write an overlay video with the tracks drawn (.mp4 or .gif)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--size", type=_size, default=None, help="resize/crop frames to SIZE or WxH first")
    s.add_argument("--start", type=_non_negative_int, default=0, metavar="FRAME",
                   help="first frame of the window to track (0-based; default: %(default)s)")
    s.add_argument("--max-frames", type=_positive_int, default=56, metavar="N",
                   help="frames to track from --start: every track spans them all; the window also ends at a "
                        "shot cut (default: %(default)s, the most the bundled model generates, as "
                        "`generate --tracks VIDEO` reads)")
    s.add_argument("--max-side", type=_non_negative_int, default=512, metavar="PX",
                   help="run optical flow on frames scaled down to at most PX a side (faster; the JSON keeps "
                        "the video's size); 0 = full resolution (default: %(default)s)")
    s.set_defaults(func=cmd_tracks)

    s = sub.add_parser("synth", help="procedural clips with exact flow, tracks and captions")
    s.add_argument("out_dir")
    s.add_argument("--count", type=_positive_int, default=16)
    s.add_argument("--frames", type=_positive_int, default=16)
    s.add_argument("--size", type=_size, default=(256, 256), help="SIZE or WxH (default 256)")
    s.add_argument("--seed", type=_seed, default=0)
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("prepare", help="a video corpus -> WebDataset shards of training clips (Ray Data)")
    s.add_argument("source", help="a folder of videos (captions in NAME.txt beside each, or --captions) or a "
                                  ".csv/.parquet table of video paths and captions (WebVid layout)")
    s.add_argument("--out", required=True, help="folder for the shards and manifest.json (a rerun resumes it)")
    s.add_argument("--captions", default=None, help="for a folder SOURCE: a .csv/.parquet table of captions")
    s.add_argument("--video-column", default="path", help="the table's video path column (default: %(default)s)")
    s.add_argument("--caption-column", default="caption", help="the table's caption column (default: %(default)s)")
    s.add_argument("--frames", type=_positive_int, default=16, help="frames per clip (default: %(default)s)")
    s.add_argument("--stride", type=_positive_int, default=2, help="source frames per clip frame (default: %(default)s)")
    s.add_argument("--clips-per-video", type=_positive_int, default=1, help="clips spread over each video (default: 1)")
    s.add_argument("--size", type=_size, default=(256, 256), help="clip size, SIZE or WxH, centre crop (default 256)")
    s.add_argument("--no-flow", dest="flow", action="store_false", help="do not store the stage-1 dense flow")
    s.add_argument("--flow-factor", type=_positive_int, default=8,
                   help="store the flow on a grid this many times smaller than --size (default: %(default)s)")
    s.add_argument("--videos-per-shard", type=_positive_int, default=100, help="(default: %(default)s)")
    s.add_argument("--crf", type=_whole_number(0, 51, "a whole number", "--crf must be 0..51, got {value}"),
                   default=15, help="H.264 quality of the stored clips, lower is better (default: %(default)s)")
    s.add_argument("--seed", type=_seed, default=0, help="the Trajectory Sampler's anchor jitter")
    s.add_argument("--workers", type=_non_negative_int, default=None,
                   help="Ray tasks at a time (default: one per CPU); 0 = no Ray, this process alone")
    s.add_argument("--address", default=None, help="join this Ray cluster (e.g. auto) instead of a local Ray")
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("train", help="train the video model (stage 1: dense flow, stage 2: sparse tracks)")
    s.add_argument("--config", required=True, help="training config YAML (see configs/)")
    s.add_argument("--stage", type=int, choices=[1, 2], default=None, help="overrides the config's stage")
    s.add_argument("--init", default=None, help="checkpoint to start from (stage 2 from stage 1)")
    s.add_argument("--resume", action="store_true", help="continue the run in the output folder exactly")
    s.add_argument("--max-steps", type=_positive_int, default=None, help="override total steps")
    s.add_argument("--out-dir", default=None, help="override the config's output folder")
    s.add_argument("--batch-size", type=_positive_int, default=None, help="override the batch size")
    s.add_argument("--workers", type=int, default=None,
                   help="processes rendering batches ahead (a GPU needs ~1 per CPU core; default: config's)")
    s.add_argument("--max-minutes", type=float, default=None,
                   help="wall-clock budget: stop, checkpoint and export when spent")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("train-autoencoder", help="train the frame autoencoder")
    s.add_argument("--config", required=True)
    s.add_argument("--resume", action="store_true")
    s.add_argument("--max-steps", type=_positive_int, default=None)
    s.add_argument("--out-dir", default=None)
    s.add_argument("--init", default=None, help="model file whose autoencoder to start from")
    s.add_argument("--decoder-only", action="store_true",
                   help="train the decoder only (needs --init): the latent space stays valid")
    s.set_defaults(func=cmd_train_autoencoder)

    s = sub.add_parser("evaluate", help="trajectory/fidelity/text metrics and ablations on held-out clips")
    _add_model_args(s)
    s.add_argument("--out-dir", default="eval_report")
    s.add_argument("--count", type=_positive_int, default=100)
    s.add_argument("--seed", type=_seed, default=1_000_000, help="first held-out seed")
    s.add_argument("--steps", type=_positive_int, default=None)
    s.add_argument("--no-ablations", dest="ablations", action="store_false")
    s.add_argument("--motion-init", type=float, default=None, metavar="SIGMA",
                   help="sampler start (model default); when on, a no_motion_init row shows the model alone")
    s.add_argument("--motion-region", choices=MOTION_REGIONS + ("brush",), default="disc",
                   help="what motion init moves along each track (as in generate); brush: each tracked "
                        "object's true pixels painted as a motion brush (generate --brush)")
    s.add_argument("--no-detail", dest="detail", action="store_false", default=None,
                   help="score the decoded videos without the image's detail restored (as generate --no-detail)")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("app", help="web UI: drag trajectories on an image, get the video")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=7860)
    _add_model_args(s)
    s.set_defaults(func=cmd_app)

    s = sub.add_parser("convert", help="official DragNUWA 1.5 checkpoint (drag_nuwa_svd.pth) -> diffusers UNet folder")
    s.add_argument("checkpoint", help="the official checkpoint, .pth (read with weights_only) or .safetensors")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder; the UNet goes to DIR/unet")
    s.add_argument("--config", default=None, metavar="JSON",
                   help="the official VideoUNet_flow arguments (default: the full-size DragNUWA 1.5 UNet)")
    s.add_argument("--fp16", action="store_true", help="store float16 weights (half the size)")
    s.set_defaults(func=cmd_convert)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dragnuwa`` console script."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"dragnuwa {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
