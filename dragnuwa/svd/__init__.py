"""DragNUWA 1.5 (the published checkpoint, on Stable Video Diffusion) through diffusers.

Exports, imported lazily so that ``import dragnuwa.svd`` stays cheap:

- ``DragNUWASVDUNet`` (``unet.py``): diffusers' SVD UNet plus the flow encoder and modulation;
- ``convert_checkpoint`` (``convert.py``): official ``drag_nuwa_svd.pth`` -> diffusers folder;
- ``DragNUWASVDPipeline`` (``pipeline.py``) and ``official_flow`` (``flow.py``).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DragNUWASVDUNet": "dragnuwa.svd.unet",
    "convert_checkpoint": "dragnuwa.svd.convert",
    "DragNUWASVDPipeline": "dragnuwa.svd.pipeline",
    "official_flow": "dragnuwa.svd.flow",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
