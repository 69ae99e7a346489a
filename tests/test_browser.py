"""The web UI in a real browser: headless Chromium renders the page (image and controls)."""

import shutil
import socket
import subprocess

import numpy as np
import pytest
import torch

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (see .ci/run)")
def test_page_renders_image_and_controls(tmp_path):
    from dragnuwa import app as app_mod
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA

    torch.manual_seed(0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app_mod.launch(host="127.0.0.1", port=port, model=DragNUWA(get_preset("tiny")), block=False)
    try:
        flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1400",
                 "--virtual-time-budget=15000"]
        url = f"http://127.0.0.1:{port}/"
        dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        shot = tmp_path / "page.png"
        subprocess.run(flags + [f"--screenshot={shot}", url], capture_output=True, timeout=120)
    finally:
        demo.close()
    # The page was rendered by its JavaScript: the controls exist in the DOM, not just the HTML shell.
    for text in ("Generate", "New track", "Undo point", "Reset", "Prompt", "Click to draw tracks", "Motion init moves",
                 "Motion brush"):
        assert text in dom, text
    # The canvas shows the bundled example image (an <img> inside the canvas component).
    canvas = dom[dom.index('id="canvas"'):]
    assert "<img" in canvas[:5000]
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[0] > 500 and img.std() > 10  # not a blank page
