"""Video and image I/O: decode with PyAV, resize/crop with OpenCV, write H.264 mp4.

Numpy frames are ``uint8 [T, H, W, 3]`` RGB; model frames are float ``[T, 3, H, W]`` in
[-1, 1] (DESIGN.md). Everything a user can get wrong (missing, empty, corrupt, zero-frame
file) raises ``UserError`` with one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from dragnuwa.errors import UserError, atomic_path, check_output


@dataclass(frozen=True)
class PointTransform:
    """Maps pixel coordinates of the source image to the fitted image: ``p' = p * scale + offset``."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64)
        out = pts.copy()
        out[..., 0] = pts[..., 0] * self.scale_x + self.offset_x
        out[..., 1] = pts[..., 1] * self.scale_y + self.offset_y
        return out

    def describe(self) -> str:
        return (f"points scaled by ({self.scale_x:.4g}, {self.scale_y:.4g}) "
                f"then shifted by ({self.offset_x:.4g}, {self.offset_y:.4g}) px")

    def visible(self, src_size: tuple[int, int], out_size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The part of a ``src_size=(W, H)`` image that the fitted ``out_size=(W, H)`` frame shows, as
        ``(x0, y0, x1, y1)`` in the source's pixels: all of it with pad and stretch, the centre with crop."""
        (w, h), (out_w, out_h) = src_size, out_size
        x0, x1 = -self.offset_x / self.scale_x, (out_w - self.offset_x) / self.scale_x
        y0, y1 = -self.offset_y / self.scale_y, (out_h - self.offset_y) / self.scale_y
        return max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)


MAX_FIT_PIXELS = 64_000_000  # what fit_image may scale an image to before cropping it


def fit_transform(src_size: tuple[int, int], size: tuple[int, int], fit: str = "crop") -> PointTransform:
    """How :func:`fit_image` maps a ``src_size=(W, H)`` image onto ``size=(W, H)``, without touching
    pixels: per-axis scale (exact after rounding the resized size) and the integer paste offset."""
    (w, h), (out_w, out_h) = src_size, (int(size[0]), int(size[1]))
    if fit == "stretch":
        sx, sy = out_w / w, out_h / h
    elif fit in ("crop", "pad"):
        s = max(out_w / w, out_h / h) if fit == "crop" else min(out_w / w, out_h / h)
        sx = sy = s
    else:
        raise UserError(f"unknown fit {fit!r}: use crop, pad or stretch")
    new_w, new_h = max(1, round(w * sx)), max(1, round(h * sy))
    # Exact per-axis scale after rounding, so points land where the pixels did; the resized image
    # is pasted at the integer offset (floor of the centred one).
    return PointTransform(new_w / w, new_h / h, float(np.floor((out_w - new_w) / 2)),
                          float(np.floor((out_h - new_h) / 2)))


def fit_image(img: np.ndarray, size: tuple[int, int], fit: str = "crop") -> tuple[np.ndarray, PointTransform]:
    """Resize ``img`` (``[H, W, C]``) to ``size=(W, H)``.

    ``crop``: scale to cover, centre-crop; ``pad``: scale to fit, pad with black;
    ``stretch``: scale each axis. Returns the image and the transform that maps points
    the same way (pixel centres: a point at pixel centre ``i + 0.5`` stays a pixel centre).
    """
    out_w, out_h = int(size[0]), int(size[1])
    h, w = img.shape[:2]
    tr = fit_transform((w, h), (out_w, out_h), fit)
    new_w, new_h = round(w * tr.scale_x), round(h * tr.scale_y)
    if new_w * new_h > MAX_FIT_PIXELS:  # only a crop of a sliver-thin image gets here (1 x 10^6: 12 GB)
        raise UserError(f"an image of {w}x{h} is too elongated to {fit} to {out_w}x{out_h} (it would first be "
                        f"scaled to {new_w}x{new_h}): use pad or stretch")
    interp = cv2.INTER_AREA if new_w < w else cv2.INTER_LINEAR
    resized = cv2.resize(img, (new_w, new_h), interpolation=interp)
    ix, iy = int(tr.offset_x), int(tr.offset_y)
    canvas = np.zeros((out_h, out_w) + img.shape[2:], dtype=img.dtype)
    # Paste the resized image at integer offset (ix, iy), clipping both sides.
    src_x0, src_y0 = max(0, -ix), max(0, -iy)
    dst_x0, dst_y0 = max(0, ix), max(0, iy)
    cw, ch = min(new_w - src_x0, out_w - dst_x0), min(new_h - src_y0, out_h - dst_y0)
    canvas[dst_y0:dst_y0 + ch, dst_x0:dst_x0 + cw] = resized[src_y0:src_y0 + ch, src_x0:src_x0 + cw]
    return canvas, tr


def read_video(path: str | Path, size: tuple[int, int] | None = None, max_frames: int | None = None,
               fit: str = "crop") -> tuple[np.ndarray, float]:
    """Decode a video file (any container FFmpeg reads) to ``uint8 [T, H, W, 3]`` RGB and its fps.

    ``size=(W, H)`` resizes every frame with :func:`fit_image`.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"video not found: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"video is empty (0 bytes): {path}")
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"no video stream in {path}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 8.0)
            for frame in container.decode(stream):
                if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
                    # OpenCV's I420 -> RGB is ~5x faster than PyAV's rgb24 reformat here.
                    arr = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
                else:
                    arr = frame.to_ndarray(format="rgb24")
                if size is not None:
                    arr = fit_image(arr, size, fit)[0]
                frames.append(arr)
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except UserError:
        raise
    except av.error.EOFError:
        pass  # a stream that ends before its first packet: reported below as "no frames"
    except (av.error.FFmpegError, ValueError, OSError) as e:
        # FFmpeg's message already names the file; keep only its reason, on one line.
        reason = getattr(e, "strerror", None) or (str(e).splitlines()[0] if str(e) else "")
        raise UserError(f"cannot decode video {path}: {e.__class__.__name__}: {reason}") from None
    if not frames:
        raise UserError(f"video has no frames: {path}")
    return np.stack(frames), fps


def to_uint8(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float frames in [-1, 1] (``[T, 3, H, W]`` or ``[3, H, W]``) -> ``uint8 [T, H, W, 3]`` / ``[H, W, 3]``."""
    if isinstance(frames, np.ndarray) and frames.dtype == np.uint8:
        return frames
    t = torch.as_tensor(frames).detach().float().cpu()
    t = ((t.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return t.movedim(-3, -1).numpy()


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """``uint8 [T, H, W, 3]`` or ``[H, W, 3]`` -> float ``[T, 3, H, W]`` / ``[3, H, W]`` in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1.0
    return t.movedim(-1, -3).contiguous()


VIDEO_SUFFIXES = (".mp4", ".gif")  # what write_video writes, picked by the file name


def check_video_path(path: str | Path, what: str = "output video") -> None:
    """Refuse an output path ``write_video`` cannot write (``UserError``), before any work is done:
    a suffix it has no writer for, or a place no file can be created (``errors.check_output``)."""
    if Path(path).suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"{what} must end in {' or '.join(VIDEO_SUFFIXES)}, got {path}")
    check_output(path, what=what)


def write_video(path: str | Path, frames: np.ndarray | torch.Tensor, fps: float = 8.0) -> Path:
    """Write frames atomically as an H.264 mp4 (yuv420p; odd sizes padded to even) or, for a
    ``.gif`` path, a looping GIF (for pages and chats that show GIFs inline)."""
    check_video_path(path)
    frames = to_uint8(frames) if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8) else frames
    if not np.isfinite(fps) or fps <= 0:
        raise UserError(f"fps must be a positive number, got {fps}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected uint8 frames [T, H, W, 3] with T > 0, got {frames.shape}")
    path = Path(path)
    if path.suffix.lower() == ".gif":
        with atomic_path(path) as tmp:
            _write_gif(tmp, frames, fps)
        return path
    h, w = frames.shape[1:3]
    pad_h, pad_w = h % 2, w % 2  # yuv420p needs even sizes
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            # A rational rate keeps NTSC-style rates (29.97) and fractional ones (7.5) exact.
            stream = container.add_stream("libx264", rate=Fraction(float(fps)).limit_denominator(1001))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "18", "preset": "veryfast"}
            for arr in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    """Pillow GIF with one 256-colour palette for the whole clip and no dithering: a palette per
    frame, or dither noise, makes still areas flicker from frame to frame."""
    from PIL import Image

    sample = frames[:: max(1, len(frames) // 16)]  # the palette from up to 16 frames stacked
    palette = Image.fromarray(np.concatenate(list(sample), axis=0)).quantize(256, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(np.ascontiguousarray(f)).quantize(palette=palette, dither=Image.Dither.NONE)
              for f in frames]
    # GIF delays are in 1/100 s; at least 2, as browsers slow shorter delays to 10.
    delay = max(20, int(round(100.0 / fps)) * 10)
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=delay, loop=0)


MAX_UPSCALE = 16


def check_upscale(factor) -> None:
    """Refuse an upscale factor that is not a whole number in 1..MAX_UPSCALE (``UserError``)."""
    if not isinstance(factor, int) or not 1 <= factor <= MAX_UPSCALE:
        raise UserError(f"upscale must be a whole number from 1 to {MAX_UPSCALE}, got {factor}")


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """``uint8 [T, H, W, 3]`` frames enlarged ``factor`` times (bicubic), for viewing: a 64x64 video
    is a thumbnail in most players. A point p of the frames is at ``factor * p`` in the result."""
    check_upscale(factor)
    if factor == 1:
        return frames
    h, w = frames.shape[1:3]
    return np.stack([cv2.resize(f, (w * factor, h * factor), interpolation=cv2.INTER_CUBIC) for f in frames])


def read_image(path: str | Path, what: str = "image") -> np.ndarray:
    """Decode an image file as it is: ``uint8 [H, W]`` greyscale (16-bit scaled to 8-bit),
    ``[H, W, 4]`` when it has transparency (palette images expanded) or ``[H, W, 3]`` RGB. A missing
    file or a non-image raises ``UserError`` naming ``what`` it was meant to be."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                top = 65535.0 if arr.max() > 255 else 255.0
                return np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8)
            if im.mode in ("P", "RGBA", "LA", "PA"):
                return np.asarray(im.convert("RGBA"), dtype=np.uint8).copy()
            return np.asarray(im.convert("L" if im.mode in ("L", "1") else "RGB"), dtype=np.uint8).copy()
    except Image.DecompressionBombError:
        # Pillow's guard against files that decode to gigabytes; nothing here needs that many pixels.
        raise UserError(f"{what} is too large: {path} has more than {Image.MAX_IMAGE_PIXELS * 2:,} pixels "
                        f"(scale it down first)") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"not a readable {what}: {path} ({e.__class__.__name__})") from None


# Containers whose first frame `load_image` takes as the image (FFmpeg reads more; these are the
# names people give videos). A GIF is read by Pillow as its first frame already.
VIDEO_INPUTS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as ``uint8 [H, W, 3]`` RGB; of a video file (``VIDEO_INPUTS``), its first frame.

    RGBA / LA are composited on white, greyscale becomes RGB, 16-bit is scaled to 8-bit,
    palette images are expanded. A missing file or a non-image raises ``UserError``.
    A video's first frame is the image its own tracks (``dragnuwa tracks``) start on.
    """
    if Path(path).suffix.lower() in VIDEO_INPUTS:
        return read_video(path, max_frames=1)[0][0]
    arr = read_image(path)
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 4:
        alpha = arr[..., 3:].astype(np.float64) / 255.0
        return np.clip(arr[..., :3] * alpha + 255.0 * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)
    return arr
