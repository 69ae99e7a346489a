"""Screenshot of the web UI after a generation (docs/screenshot_app.png).

    # playwright comes with the test extras (pip install -e ".[test]"); it drives Debian's /usr/bin/chromium
    python scripts/screenshot_app.py [--model bundled] [--out docs/screenshot_app.png]

Starts the app on 127.0.0.1, opens it in headless Chromium, presses Generate on the bundled
example, waits for the video, and saves a full-page screenshot.
"""

from __future__ import annotations

import argparse
import socket


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--out", default="docs/screenshot_app.png")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from dragnuwa.app import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(host="127.0.0.1", port=port, model=args.model, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("button", name="Generate").click()
            page.wait_for_selector("video", timeout=300_000)
            page.wait_for_timeout(2500)  # let the players load a frame
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        demo.close()
    print(args.out)


if __name__ == "__main__":
    main()
