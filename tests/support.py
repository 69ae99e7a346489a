"""Helpers several test modules share: a free loopback port, a two-process torchrun, and the web app
on a tiny model with its temp dirs kept in a folder of the test's own."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script: str | Path, timeout: float) -> subprocess.CompletedProcess:
    """``script`` in two processes on this machine (torchrun: gloo on CPU), one thread each."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                           "127.0.0.1", "--master_port", str(free_port()), str(script)],
                          capture_output=True, text=True, env=env, timeout=timeout)


@contextlib.contextmanager
def tiny_app_server(tmp: Path):
    """The app on 127.0.0.1 with a tiny random model, its temp dir and gradio's cache under ``tmp``
    -> yields (url, the launched app); closed on exit."""
    import pytest
    import torch

    from dragnuwa import app as app_mod
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(tmp))
        mp.setenv("GRADIO_TEMP_DIR", str(tmp / "gradio"))
        mp.setattr(tempfile, "tempdir", str(tmp))
        torch.manual_seed(0)
        port = free_port()
        demo = app_mod.launch(host="127.0.0.1", port=port, model=DragNUWA(get_preset("tiny")), block=False)
        try:
            yield f"http://127.0.0.1:{port}/", demo
        finally:
            demo.close()
