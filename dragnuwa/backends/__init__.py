"""Backends behind the one request path: ``load_backend(model, svd=None, **options)``.

- **small**: the project's own model: ``"bundled"``, a model ``.safetensors`` file, or a ``DragNUWA``.
- **svd**: DragNUWA 1.5 on Stable Video Diffusion: a folder ``dragnuwa convert`` wrote (``unet/config.json``)
  or a hub id, with ``svd`` naming the Stable Video Diffusion parts (VAE, CLIP image encoder, scheduler).
"""

from __future__ import annotations

import re
from pathlib import Path

from dragnuwa.backends.base import Backend, Request, Sample  # noqa: F401
from dragnuwa.errors import UserError

BUNDLED_MODEL = Path(__file__).parent.parent / "assets" / "model" / "dragnuwa_small.safetensors"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
OFFICIAL_CHECKPOINTS = (".pth", ".pt", ".ckpt", ".bin")


def backend_kind(model) -> str:
    """Which backend ``model`` names: "small" or "svd" (``UserError`` for what names neither)."""
    from dragnuwa.models.dragnuwa import DragNUWA

    if isinstance(model, Backend):
        return model.name
    if model is None or isinstance(model, DragNUWA) or model == "bundled":
        return "small"
    path = Path(model)
    if path.is_dir():
        if (path / "unet" / "config.json").is_file():
            return "svd"
        raise UserError(f"{path} is a folder without unet/config.json: not a converted DragNUWA 1.5 model "
                        "(`dragnuwa convert` writes one); a small model is a .safetensors file")
    if path.suffix.lower() in OFFICIAL_CHECKPOINTS:
        raise UserError(f"{path} is a checkpoint to convert first: dragnuwa convert {path} --out DIR, "
                        "then --model DIR")
    if not path.exists() and path.suffix.lower() != ".safetensors" and HUB_ID.match(str(model)):
        return "svd"  # a hub id: resolved offline from the local cache by the SVD loader
    return "small"


def backend_class(model) -> type[Backend]:
    """The class of the backend ``model`` names, without loading anything: what it declares
    (``supports``, ``conditions``) can refuse a request before minutes of loading."""
    if isinstance(model, Backend):
        return type(model)
    if backend_kind(model) == "svd":
        from dragnuwa.svd.backend import SVDBackend

        return SVDBackend
    from dragnuwa.backends.small import SmallBackend

    return SmallBackend


def load_backend(model="bundled", svd=None, **options) -> Backend:
    """The backend ``model`` names (see ``backend_kind``), loaded. ``svd`` and ``options`` are the
    SVD backend's (``dtype``, ``offload``, ``decode_chunk_size``, ``motion_bucket_id``, ``size``);
    None means not given. Given to the small model, each is refused with one line."""
    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(model, Backend):
        if svd is not None or options:
            raise UserError("a loaded backend takes no --svd or model options")
        return model
    kind = backend_kind(model)
    if kind == "svd":
        from dragnuwa.svd.backend import SVDBackend

        return SVDBackend.load(model, svd=svd, **options)
    from dragnuwa.backends.small import SmallBackend
    from dragnuwa.models.dragnuwa import DragNUWA, load_model

    given = (["--svd"] if svd is not None else []) + [f"--{k.replace('_', '-')}" for k in options]
    if given:
        raise UserError(f"{given[0]} is not supported by the small backend (it is for a DragNUWA 1.5 --model)")
    if isinstance(model, DragNUWA):
        return SmallBackend(model)
    path = BUNDLED_MODEL if model in (None, "bundled") else Path(model)
    if model in (None, "bundled") and not path.is_file():
        raise UserError(f"bundled model not found at {path}; reinstall the package or pass --model FILE")
    return SmallBackend(load_model(path))
