"""What the web app checks and cleans around each generation request (``dragnuwa.app``).

- Numbers from the page or the API (gradio gives floats, and None for an empty box) are checked
  as the CLI checks its options: one ``UserError`` line, not a ``TypeError`` traceback.
- Each request writes its files into a folder of its own, made only once its video exists (a
  refused request leaves nothing), under one root folder per app. Gradio copies what it serves into
  its own cache, so the request folders are removed when the next request starts (requests run one
  at a time) and the root when the app closes.
- A client that disconnects mid-generation stops its generation at the next sampler step, so it
  writes nothing and frees the queue (``stop_when_client_leaves``).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Callable

import numpy as np

from dragnuwa.errors import UserError


class ClientGone(UserError):
    """The client that asked for this generation has disconnected: nobody will receive it."""


def whole_number(value, name: str) -> int:
    """A whole number from a gradio box (an int, or a float such as 5.0) -> int; None, NaN, 2.5,
    True or text -> ``UserError`` naming ``name``."""
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not np.isfinite(value) or value != int(value)):
        raise UserError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def finite_number(value, name: str) -> float:
    """A number from a gradio box -> float; None, NaN, infinity, True or text -> ``UserError``."""
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not np.isfinite(value)):
        raise UserError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class RequestFolders:
    """One root folder per app (``dragnuwa_app_*`` in the temp dir), a fresh folder in it per request.

    ``new()`` is called once a request's video exists; ``sweep()`` at the start of each request
    removes the earlier requests' folders (gradio has copied their files into its cache by then, as
    requests run one at a time); the root goes when the app is closed or the process exits."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="dragnuwa_app_"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.root), True)

    def new(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)  # in case something outside removed it
        return Path(tempfile.mkdtemp(prefix="request_", dir=self.root))

    def sweep(self) -> None:
        if self.root.is_dir():
            for folder in self.root.iterdir():
                shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        self._finalizer()


def client_left() -> bool:
    """Whether the gradio event running in this thread belongs to a client that has disconnected
    (gradio marks its queued job not alive). False outside a gradio event, or where this gradio
    version keeps its queue otherwise: then the generation simply runs to the end."""
    try:
        from gradio.context import LocalContext

        blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
        if blocks is None or event_id is None:
            return False
        for job in blocks._queue.active_jobs:
            for event in job or ():
                if event._id == event_id:
                    return not event.alive
    except Exception:  # gradio's internals moved: never stop a generation by mistake
        return False
    return False


def stop_when_client_leaves(progress: Callable[[int, int], None] | None = None) -> Callable[[int, int], None]:
    """A sampler progress callback that passes each step on to ``progress`` and raises ``ClientGone``
    once the client has disconnected, so an abandoned generation stops within one step."""
    def step(i: int, n: int) -> None:
        if client_left():
            raise ClientGone("the client disconnected; the generation was stopped")
        if progress is not None:
            progress(i, n)
    return step
