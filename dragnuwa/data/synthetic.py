"""Procedural scenes with exact ground truth: frames, dense forward flow, object tracks, captions.

Every layer moves rigidly, so the flow is exact: the background follows the camera (pan / zoom
of a larger canvas), each object follows a smooth curved path (quadratic Bezier with a random
speed profile) on top of the camera, some also spinning or growing. Shapes are drawn from
analytic signed distances (anti-aliased, exact geometry) and textured in their own coordinates,
so a point on a surface moves exactly as the flow says. Occlusion follows depth order (later
objects on top); ``Clip.layers`` records which layer shows at each pixel.

Deterministic by seed: ``render_clip(seed)`` is the same clip on every machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dragnuwa.errors import atomic_path, atomic_write_text

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (240, 220, 30),
    "orange": (245, 140, 20), "purple": (140, 40, 190), "white": (245, 245, 245), "black": (20, 20, 20),
    "cyan": (30, 210, 220), "pink": (245, 120, 190),
}
SHAPES = ("circle", "square", "triangle", "star", "ring", "diamond")
PATTERNS = ("plain", "plain", "stripes", "dots")
# skimage.data photos used as backgrounds, with the words a caption uses for them.
PHOTOS = {"brick.png": "a brick wall", "grass.png": "grass", "gravel.png": "gravel", "coffee.png": "a coffee table",
          "chelsea.png": "a photo of a cat", "astronaut.png": "a photo of an astronaut", "rocket.jpg": "a rocket launch"}
PROCEDURAL = ("gradient", "checkerboard", "stripes", "noise")


@dataclass
class Clip:
    """One procedural clip. ``flow[t]`` maps frame t to t+1 at pixel centres."""

    frames: np.ndarray          # uint8 [T, H, W, 3]
    flow: np.ndarray            # float32 [T-1, H, W, 2]
    tracks: np.ndarray          # float32 [K, T, 2], object centres in image coordinates
    visible: np.ndarray         # bool [K, T], centre pixel shows the object
    caption: str
    objects: list[dict] = field(default_factory=list)
    camera: dict = field(default_factory=dict)
    background: str = ""
    seed: int = 0
    layers: np.ndarray | None = None  # int8 [T, H, W]: object index on top of each pixel, -1 = background


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    import skimage.data  # noqa: F401 - locates the package folder

    path = Path(skimage.data.__file__).parent / name
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:  # fall back to a procedural texture if a photo is missing from this install
        return np.full((256, 256, 3), 128, np.uint8)
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    """A square canvas texture and the words describing it."""
    if rng.random() < 0.5:
        name = list(PHOTOS)[rng.integers(len(PHOTOS))]
        img = _photo(name)
        h, w = img.shape[:2]
        c = int(min(h, w) * rng.uniform(0.5, 1.0))
        y0, x0 = rng.integers(0, h - c + 1), rng.integers(0, w - c + 1)
        img = cv2.resize(img[y0:y0 + c, x0:x0 + c], (size, size), interpolation=cv2.INTER_AREA)
        return img, PHOTOS[name]
    kind = PROCEDURAL[rng.integers(len(PROCEDURAL))]
    c1, c2 = (rng.uniform(40, 215, 3) for _ in range(2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        m = (np.cos(a) * xx + np.sin(a) * yy)
        m = (m - m.min()) / (np.ptp(m) + 1e-6)
        # Faint noise so the flow is observable everywhere.
        grain = np.random.default_rng(int(rng.integers(2 ** 32))).normal(0, 0.04, m.shape).astype(np.float32)
        m = np.clip(m + grain, 0, 1)
        words = "a smooth gradient"
    elif kind == "checkerboard":
        n = rng.integers(6, 14)
        m = ((np.floor(xx * n) + np.floor(yy * n)) % 2).astype(np.float32)
        words = "a checkerboard"
    elif kind == "stripes":
        n, a = rng.integers(5, 12), rng.uniform(0, np.pi)
        m = (np.sin((np.cos(a) * xx + np.sin(a) * yy) * n * 2 * np.pi) > 0).astype(np.float32)
        words = "a striped background"
    else:
        # A child generator: the parent's draws stay the same at every size, so a seed is the
        # same scene at any resolution.
        noise = np.random.default_rng(int(rng.integers(2 ** 32))).random((size, size)).astype(np.float32)
        m = cv2.GaussianBlur(noise, (0, 0), size / 64)
        m = (m - m.min()) / (np.ptp(m) + 1e-6)
        words = "a noise texture"
    img = c1[None, None] * (1 - m[..., None]) + c2[None, None] * m[..., None]
    return np.clip(img, 0, 255).astype(np.uint8), words


def _sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (positive inside) of a unit-radius shape at local coords (u, v)."""
    if shape == "circle":
        return 1.0 - np.hypot(u, v)
    if shape == "square":
        return 0.85 - np.maximum(np.abs(u), np.abs(v))
    if shape == "diamond":
        return (1.0 - (np.abs(u) + np.abs(v))) / np.sqrt(2)
    if shape == "ring":
        return 0.3 - np.abs(np.hypot(u, v) - 0.7)
    if shape == "triangle":  # pointing up, centroid at the origin: three half-planes
        d2 = 0.5 - (np.sqrt(3) / 2 * u - 0.5 * v)
        d3 = 0.5 - (-np.sqrt(3) / 2 * u - 0.5 * v)
        return np.minimum(np.minimum(0.5 - v, d2), d3)
    if shape == "star":
        r, a = np.hypot(u, v), np.arctan2(v, u) + np.pi / 2
        edge = 0.55 + 0.45 * np.abs(np.cos(2.5 * a))  # five points
        return (edge - r) * 0.6
    raise ValueError(shape)


def _pattern(kind: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Brightness multiplier of an object's surface in its own coordinates (``r`` px per unit).

    Even "plain" objects carry a faint texture: a flat interior has no visible motion (the
    aperture problem), which no flow estimator or tracker can follow, and real objects are
    rarely flat. The colour stays clearly nameable. Stripe and dot edges are anti-aliased
    over one pixel like the shape outlines, so they move with the flow instead of flickering.
    """
    grain = 1.0 + 0.12 * np.sin(7.3 * u + 2.1 * v) * np.sin(5.7 * v - 3.1 * u) + 0.06 * np.sin(13.0 * (u + v))
    if kind == "stripes":
        # sin(9u) / (9 / r) is the distance to the nearest stripe edge in px, to first order.
        dark = np.clip(0.5 - np.sin(u * 9.0) * r / 9.0, 0.0, 1.0)
        return grain * (1.0 - 0.45 * dark)
    if kind == "dots":
        d = np.hypot((u * 3) % 1 - 0.5, (v * 3) % 1 - 0.5)  # in cell units; a cell is r / 3 px
        dark = np.clip((0.25 - d) * r / 3.0 + 0.5, 0.0, 1.0)
        return grain * (1.0 - 0.5 * dark)
    return grain


def _direction_words(dx: float, dy: float) -> str:
    horiz = "right" if dx > 0 else "left"
    vert = "down" if dy > 0 else "up"
    if abs(dx) > 2.2 * abs(dy):
        return f"to the {horiz}"
    if abs(dy) > 2.2 * abs(dx):
        return "up" if dy < 0 else "down"
    return f"to the {'upper' if dy < 0 else 'lower'} {horiz}"


def _rigid_extras(seed: int, n_obj: int) -> list[dict]:
    """Optional rotation and scaling of each object (rigid motion beyond translation).

    Drawn from their own stream so the rest of a seed's scene (background, paths, colours)
    does not depend on them.
    """
    rng = np.random.default_rng([seed, 20230816, 1])
    out = []
    for _ in range(n_obj):
        spin = rng.choice([-1.0, 1.0]) * rng.uniform(3.0, 9.0) if rng.random() < 0.3 else 0.0  # deg / frame
        grow = float(rng.choice([0.7, 1.4])) if rng.random() < 0.15 else 1.0  # size ratio last / first frame
        out.append({"spin": float(spin), "grow": grow, "angle0": float(rng.uniform(0, 360)) if spin else 0.0})
    return out


def _motion_words(obj: dict, d: np.ndarray, unit: float) -> str:
    """What an object does, in words: "spins and moves to the left", "grows", "stays still"."""
    verbs = []
    if obj["spin"]:
        verbs.append("spins " + ("clockwise" if obj["spin"] > 0 else "counterclockwise"))  # y points down
    if obj["grow"] != 1.0:
        verbs.append("grows" if obj["grow"] > 1 else "shrinks")
    if obj["moving"] and np.hypot(*d) > 2 * unit:
        verbs.append("moves " + _direction_words(*d))
    else:
        obj["moving"] = False
        if not verbs:
            verbs.append("stays still")
    return " and ".join(verbs) if len(verbs) < 3 else ", ".join(verbs[:-1]) + " and " + verbs[-1]


def render_clip(seed: int, frames: int = 16, size: tuple[int, int] = (256, 256)) -> Clip:
    """Render one deterministic clip of ``frames`` frames at ``size=(W, H)`` with exact flow and tracks.

    Each layer is a rigid (similarity) motion in image space, so the ground-truth forward flow
    of a pixel p on layer k is ``A_k(t+1) A_k(t)^-1 (p - c_k(t)) + c_k(t+1) - p`` with ``c`` the
    layer's centre and ``A`` its rotation x scale (the camera zoom folded in).
    """
    rng = np.random.default_rng([seed, 20230816])
    W, H = int(size[0]), int(size[1])
    T = int(frames)
    unit = min(W, H) / 256.0  # speeds and sizes are specified at 256 px
    ramp = np.linspace(0.0, 1.0, T)

    # Camera: world -> image is  x_img = s_t * (x_world - c_t) + centre.
    canvas_size = int(2 * max(W, H))
    canvas, bg_words = _background(rng, canvas_size)
    # Band-limit the texture: frames resample it at sub-pixel offsets, and detail finer than a
    # pixel would shimmer from frame to frame instead of moving with the flow.
    canvas = cv2.GaussianBlur(canvas, (0, 0), 0.6)
    cam_kind = rng.choice(["static", "pan", "zoom"], p=[0.55, 0.3, 0.15])
    centre = np.array([W / 2, H / 2])
    c_t = np.zeros((T, 2))
    s_t = np.ones(T)
    camera = {"kind": str(cam_kind)}
    if cam_kind == "pan":
        vel = rng.uniform(-2.5, 2.5, 2) * unit
        c_t = ramp[:, None] * vel * (T - 1)
        camera["words"] = "the camera pans " + _direction_words(*vel).replace("to the ", "")
        camera["velocity"] = vel.tolist()
    elif cam_kind == "zoom":
        z = rng.choice([0.8, 1.25])
        s_t = z ** ramp
        camera["words"] = "the camera zooms " + ("in" if z > 1 else "out")
        camera["zoom"] = float(z)

    def to_img(p_world: np.ndarray, t: int) -> np.ndarray:
        return s_t[t] * (p_world - c_t[t]) + centre

    def to_world(p_img: np.ndarray, t: int) -> np.ndarray:
        return (p_img - centre) / s_t[t] + c_t[t]

    # Objects: world-space Bezier paths (camera motion comes on top).
    n_obj = int(rng.integers(1, 5))
    objs, paths = [], []
    palette = list(COLORS)
    for k in range(n_obj):
        radius = rng.uniform(14, 34) * unit
        p0 = to_world(rng.uniform([0.2 * W, 0.2 * H], [0.8 * W, 0.8 * H]), 0)
        moving = k == 0 or rng.random() < 0.7
        if moving:
            speed = rng.uniform(1.0, 7.0) * unit  # px per frame at 256 px
            ang = rng.uniform(0, 2 * np.pi)
            p2 = p0 + speed * (T - 1) * np.array([np.cos(ang), np.sin(ang)])
            bend = rng.uniform(-0.5, 0.5) * speed * (T - 1)
            p1 = (p0 + p2) / 2 + bend * np.array([-np.sin(ang), np.cos(ang)])
            tau = ramp ** rng.uniform(0.7, 1.4)  # varied speed along the path
            path = ((1 - tau) ** 2)[:, None] * p0 + (2 * tau * (1 - tau))[:, None] * p1 + (tau ** 2)[:, None] * p2
        else:
            path = np.repeat(p0[None], T, axis=0)
        color = palette[rng.integers(len(palette))]
        objs.append({"shape": SHAPES[rng.integers(len(SHAPES))], "color": color,
                     "pattern": PATTERNS[rng.integers(len(PATTERNS))], "radius": float(radius),
                     "moving": bool(moving)})
        paths.append(path)
    for obj, extra in zip(objs, _rigid_extras(seed, n_obj)):
        obj.update(extra)

    # Words for each object's own (world) motion.
    parts = []
    for obj, path in zip(objs, paths):
        obj["motion"] = _motion_words(obj, path[-1] - path[0], unit)
        article = "an" if obj["color"][0] in "aeiou" else "a"
        parts.append(f"{article} {obj['color']} {obj['shape']} {obj['motion']}")
    caption = "; ".join(parts) + f" on {bg_words}"
    if "words" in camera:
        caption += f" while {camera['words']}"

    # Per object and frame: image centre, radius in px, rotation (radians).
    centres = np.stack([[to_img(path[t], t) for t in range(T)] for path in paths])          # [K, T, 2]
    radii = np.array([[o["radius"] * s_t[t] * o["grow"] ** ramp[t] for t in range(T)] for o in objs])
    angles = np.array([np.deg2rad(o["angle0"] + o["spin"] * np.arange(T)) for o in objs])  # [K, T]

    # Render layers back to front, remembering which layer is on top of each pixel.
    xs, ys = np.arange(W) + 0.5, np.arange(H) + 0.5  # pixel centres
    out = np.zeros((T, H, W, 3), np.uint8)
    layers = np.full((T, H, W), -1, np.int8)
    for t in range(T):
        # Background: image pixel -> world -> canvas pixel (canvas centre = world origin).
        a = 1.0 / s_t[t]
        off = -centre * a + c_t[t] + canvas_size / 2
        M = np.array([[a, 0, off[0] - 0.5 + 0.5 * a], [0, a, off[1] - 0.5 + 0.5 * a]])
        img = cv2.warpAffine(canvas, M, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        for k, obj in enumerate(objs):
            (cx, cy), r = centres[k, t], radii[k, t]
            # Only the object's bounding box is touched: every shape fits in its unit circle.
            x0, x1 = max(0, int(cx - r - 2)), min(W, int(cx + r + 3))
            y0, y1 = max(0, int(cy - r - 2)), min(H, int(cy + r + 3))
            if x0 >= x1 or y0 >= y1:
                continue
            dx, dy = xs[None, x0:x1] - cx, ys[y0:y1, None] - cy
            cos, sin = np.cos(angles[k, t]), np.sin(angles[k, t])
            u, v = (cos * dx + sin * dy) / r, (-sin * dx + cos * dy) / r  # object coords (rotated back)
            alpha = np.clip(_sdf(obj["shape"], u, v) * r + 0.5, 0.0, 1.0).astype(np.float32)[..., None]
            color = np.clip(np.array(COLORS[obj["color"]], np.float32) * _pattern(obj["pattern"], u, v, r)[..., None],
                            0, 255)
            box = img[y0:y1, x0:x1]
            img[y0:y1, x0:x1] = box + (color - box) * alpha
            layers[t, y0:y1, x0:x1][alpha[..., 0] >= 0.5] = k
        out[t] = np.clip(img + 0.5, 0, 255).astype(np.uint8)

    # A track point is visible when its pixel shows its own object (not a hole, not occluded).
    visible = np.zeros((n_obj, T), bool)
    for k in range(n_obj):
        for t in range(T):
            cx, cy = np.floor(centres[k, t]).astype(int)
            visible[k, t] = 0 <= cx < W and 0 <= cy < H and layers[t, cy, cx] == k

    # Exact forward flow: the surface point under each pixel at t, seen at t+1.
    flow = np.zeros((max(T - 1, 0), H, W, 2), np.float32)
    px, py = np.meshgrid(xs, ys)
    for t in range(T - 1):
        ratio = s_t[t + 1] / s_t[t]
        flow[t, ..., 0] = (ratio - 1) * (px - centre[0]) + s_t[t + 1] * (c_t[t][0] - c_t[t + 1][0])
        flow[t, ..., 1] = (ratio - 1) * (py - centre[1]) + s_t[t + 1] * (c_t[t][1] - c_t[t + 1][1])
        for k in range(n_obj):
            mask = layers[t] == k
            if not mask.any():
                continue
            ang = angles[k, t + 1] - angles[k, t]
            m = radii[k, t + 1] / radii[k, t] * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
            d = np.stack([px[mask], py[mask]], axis=-1) - centres[k, t]
            flow[t][mask] = d @ m.T + centres[k, t + 1] - centres[k, t] - d
    return Clip(frames=out, flow=flow, tracks=centres.astype(np.float32), visible=visible, caption=caption,
                objects=objs, camera=camera, background=bg_words, seed=int(seed), layers=layers)


def write_clip(clip: Clip, out_dir: str | Path, name: str, fps: float = 8.0) -> Path:
    """Write NAME.mp4, NAME.flow.npz, NAME.tracks.json, NAME.txt and NAME.json into ``out_dir``."""
    from dragnuwa.tracks_io import TrackSet, save_tracks
    from dragnuwa.video import write_video

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    H, W = clip.frames.shape[1:3]
    write_video(out_dir / f"{name}.mp4", clip.frames, fps)
    with atomic_path(out_dir / f"{name}.flow.npz") as tmp:
        with open(tmp, "wb") as fh:
            arrays = {"flow": clip.flow.astype(np.float16)}
            if clip.layers is not None:  # lets readers tell occluded points from visible ones
                arrays["layers"] = clip.layers
            np.savez_compressed(fh, **arrays)
    save_tracks(out_dir / f"{name}.tracks.json", TrackSet.from_array(clip.tracks, W, H))
    atomic_write_text(out_dir / f"{name}.txt", clip.caption + "\n")
    meta = {"seed": clip.seed, "caption": clip.caption, "objects": clip.objects, "camera": clip.camera,
            "background": clip.background, "visible": clip.visible.tolist(), "frames": int(len(clip.frames)),
            "width": int(W), "height": int(H)}
    atomic_write_text(out_dir / f"{name}.json", json.dumps(meta, indent=1) + "\n")
    return out_dir / f"{name}.mp4"


def write_dataset(out_dir: str | Path, count: int, frames: int = 16, size: tuple[int, int] = (256, 256),
                  seed: int = 0) -> list[Path]:
    """`dragnuwa synth`: ``count`` clips with seeds ``seed .. seed+count-1`` into ``out_dir``."""
    from dragnuwa.errors import UserError, check_output

    if frames < 2:
        raise UserError(f"--frames must be at least 2, got {frames}")
    if min(size) < 16:
        raise UserError(f"--size must be at least 16 px, got {size[0]}x{size[1]}")
    # Past these a clip (frames, flow, layers in memory at once) needs tens of GB: a typo, not a dataset.
    if max(size) > 4096 or frames > 1024:
        raise UserError(f"--size must be at most 4096 px and --frames at most 1024, got {size[0]}x{size[1]} "
                        f"and {frames}")
    check_output(out_dir, folder=True, what="output folder")
    from dragnuwa.paths import check_run_paths

    names = [f"clip_{seed + i:07d}" for i in range(count)]
    check_run_paths({}, {"OUT_DIR": [Path(out_dir) / f"{n}{ext}" for n in names
                                     for ext in (".mp4", ".flow.npz", ".tracks.json", ".txt", ".json")]})
    paths = []
    for i in tqdm(range(count), desc="procedural clips", unit="clip"):
        paths.append(write_clip(render_clip(seed + i, frames, size), out_dir, f"clip_{seed + i:07d}"))
    return paths
