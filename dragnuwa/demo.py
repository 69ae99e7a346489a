"""`dragnuwa demo`: the main job on the bundled model and the bundled example.

The example (first image, tracks JSON, prompt) lives in ``dragnuwa/assets/examples/demo``;
the model in ``dragnuwa/assets/model``. Both ship inside the package, so the demo needs
no download and no GPU.
"""

from __future__ import annotations

from pathlib import Path

from dragnuwa.errors import UserError

EXAMPLES_DIR = Path(__file__).parent / "assets" / "examples"


def example_paths(name: str = "demo") -> dict[str, Path]:
    """Paths of a bundled example: ``image`` (PNG), ``tracks`` (JSON), ``prompt`` (text), and
    ``brush`` (a motion brush mask, PNG) for the examples that have one."""
    folder = EXAMPLES_DIR / name
    paths = {"image": folder / "image.png", "tracks": folder / "tracks.json", "prompt": folder / "prompt.txt"}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise UserError(f"bundled example {name!r} is incomplete: missing {', '.join(missing)}")
    if (folder / "brush.png").is_file():
        paths["brush"] = folder / "brush.png"
    return paths


def list_examples() -> list[str]:
    """Names of the bundled examples (folders holding image.png, tracks.json, prompt.txt)."""
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(p.name for p in EXAMPLES_DIR.iterdir() if (p / "image.png").is_file())


def run_demo(out: str = "dragnuwa_demo.mp4", steps: int | None = None, seed: int = 0, upscale: int = 4,
             fps: float | None = None) -> Path:
    """Generate the bundled example with the bundled model; write ``out`` and its overlay.

    Returns the path of the video (.mp4, or .gif if ``out`` names one). The overlay (tracks drawn on
    the generated video) is written beside it as ``<out>_tracks.<suffix>`` so the drag can be
    compared with the motion. Both are ``upscale`` times the model's size (4: to be watched, not a
    thumbnail), at ``fps`` (None: the model's).
    """
    from dragnuwa import pipeline

    ex = example_paths("demo")
    out_path = Path(out)
    overlay = out_path.with_name(out_path.stem + "_tracks" + out_path.suffix)
    return pipeline.generate_to_file(
        image=str(ex["image"]), tracks=str(ex["tracks"]), flow=None,
        text=ex["prompt"].read_text().strip(), out=str(out_path), frames=None, steps=steps,
        seed=seed, guidance=None, traj_guidance=None, model="bundled", overlay=str(overlay), fit="crop",
        upscale=upscale, fps=fps,
    )
