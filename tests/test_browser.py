"""The web UI in a real browser: Chromium renders the page; playwright paints a brush, uploads a video."""

import shutil
import socket
import subprocess

import numpy as np
import pytest
import torch

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _launch_tiny():
    """The app on a free local port with a tiny random model -> (running Blocks, port)."""
    from dragnuwa import app as app_mod
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA

    torch.manual_seed(0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return app_mod.launch(host="127.0.0.1", port=port, model=DragNUWA(get_preset("tiny")), block=False), port


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (see .ci/run)")
def test_page_renders_image_and_controls(tmp_path):
    demo, port = _launch_tiny()
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
                 "Motion brush", "Variants", "Fit to the model", "or a video"):
        assert text in dom, text
    # The canvas shows the bundled example image (an <img> inside the canvas component).
    canvas = dom[dom.index('id="canvas"'):]
    assert "<img" in canvas[:5000]
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[0] > 500 and img.std() > 10  # not a blank page


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the test extras install it
        return None
    return sync_playwright


@pytest.mark.skipif(CHROMIUM is None or _playwright() is None, reason="needs Debian's chromium and playwright")
def test_painting_the_motion_brush_in_the_page_moves_what_was_painted():
    """Drive the page as a user: open the motion brush, paint a stroke over the dragged square of the
    demo example, press Generate. The server must receive the stroke where it was painted, in the
    image's pixels (brush.png comes back with the downloads)."""
    from PIL import Image

    demo, port = _launch_tiny()
    start = (187.4, 170.3)  # the demo's drag starts on the green square (256 x 256 image)
    try:
        with _playwright()() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 2000})  # the editor within the view
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text("Motion brush (optional)").click()
            editor = page.locator("#brush")
            editor.get_by_role("button", name="Brush", exact=True).click()
            # The image is drawn centred in the editor's canvas; read its on-screen scale from the zoom label.
            box = editor.locator("canvas").first.bounding_box()
            zoom = float(editor.get_by_text("%").first.inner_text().strip("% ")) / 100
            x = box["x"] + box["width"] / 2 + (start[0] - 128) * zoom
            y = box["y"] + box["height"] / 2 + (start[1] - 128) * zoom
            page.mouse.move(x - 8, y - 8)
            page.mouse.down()
            for dx, dy in ((8, -8), (8, 8), (-8, 8), (0, 0)):
                page.mouse.move(x + dx, y + dy, steps=5)
            page.mouse.up()
            page.get_by_role("button", name="Generate").click()
            page.wait_for_selector("video", timeout=120_000)
            link = page.locator("a[href*='brush.png']").first
            link.wait_for(state="attached", timeout=60_000)
            href = link.get_attribute("href")
            browser.close()
    finally:
        demo.close()
    path = href.split("/file=")[-1]
    mask = np.asarray(Image.open(path)) > 0
    ys, xs = np.nonzero(mask)
    assert mask.shape == (256, 256)
    # The stroke (16 px of mouse path plus the brush's width) lies around the drag's start.
    assert abs(xs.mean() - start[0]) < 8 and abs(ys.mean() - start[1]) < 8, (xs.mean(), ys.mean())
    assert 100 < mask.sum() < 12_000


@pytest.mark.skipif(CHROMIUM is None or _playwright() is None, reason="needs Debian's chromium and playwright")
def test_uploading_a_video_in_the_page_gives_its_frame_and_tracks_and_fit_changes_the_view(sliding_video):
    """Upload a wide video: the page reports the tracks read off it and that the crop hides the sides;
    choosing pad says the model now sees all of it."""
    demo, port = _launch_tiny()
    try:
        with _playwright()() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 2000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#video_file input[type=file]").set_input_files(str(sliding_video))
            status = page.get_by_text("Tracks read off the video's first 6 frames")
            status.wait_for(timeout=60_000)
            before = status.inner_text()
            page.get_by_label("pad").check()
            page.get_by_text("Image 160x96").filter(has_not_text="unshaded").wait_for(timeout=30_000)
            browser.close()
    finally:
        demo.close()
    assert "Image 160x96." in before and "The model sees the unshaded part (crop)." in before
