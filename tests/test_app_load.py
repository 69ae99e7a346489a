"""The web app under load (issue 25): concurrent clients, a client that disconnects, many requests.

A server on 127.0.0.1 (tiny random model: fast, and deterministic per seed) with its temp dir and
gradio's cache in a folder of this module's own. Request counts are bounded; sampler steps are
1-2 except where a long generation is the point. The figures (seconds, MB) are printed: run with
``-s`` to see them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import free_port, tiny_app_server

# Four clients: each its own background colour, its own drag (right, left, down, up) and its own seed.
COLOURS = [(200, 40, 40), (40, 180, 60), (50, 70, 210), (210, 200, 40)]
DRAGS = [[[8, 20], [30, 20]], [[32, 20], [10, 20]], [[20, 8], [20, 32]], [[20, 32], [20, 8]]]
SEEDS = [11, 22, 33, 44]
SIZE = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("load_tmp")
    with tiny_app_server(tmp) as (url, demo):
        yield {"url": url, "tmp": tmp, "demo": demo, "root": next(tmp.glob("dragnuwa_app_*"))}
    assert not any(tmp.glob("dragnuwa_app_*")), "closing the app removes its request folders"


def _image(folder: Path, k: int) -> Path:
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    img[:] = COLOURS[k]
    img[16:24, 16:24] = 255  # a white square, so the image is not flat
    path = folder / f"client{k}.png"
    Image.fromarray(img).save(path)
    return path


def _request(client, image: Path, k: int, steps: int = 2, frames: int = 4):
    from gradio_client import handle_file

    tracks = json.dumps({"width": SIZE, "height": SIZE, "tracks": [DRAGS[k]]})
    return client.predict(handle_file(str(image)), tracks, f"client {k}", frames, steps, SEEDS[k], 1.0, 1.0,
                          motion_init=0.5, api_name="/generate")


def _frames(path) -> np.ndarray:
    from dragnuwa.video import read_video

    return read_video(path)[0].astype(int)


def _at_once(run, n: int, timeout: float) -> float:
    """``run(k)`` for k < n, each in its own thread at the same time -> wall seconds until all returned."""
    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    return time.perf_counter() - t0


def test_four_clients_at_once_each_get_their_own_video(server, tmp_path):
    from gradio_client import Client

    images = [_image(tmp_path, k) for k in range(4)]
    clients = [Client(server["url"], verbose=False) for _ in range(4)]
    results, seconds = [None] * 4, [0.0] * 4
    start = threading.Barrier(4)

    def run(k):
        start.wait()
        t0 = time.perf_counter()
        results[k] = _request(clients[k], images[k], k)
        seconds[k] = time.perf_counter() - t0

    wall = _at_once(run, 4, timeout=300)
    assert all(r is not None for r in results), "every client got an answer"
    videos = [_frames(video) for video, _ in results]
    for k, ((_, tpath), frames) in enumerate(zip(results, videos)):
        # Its own tracks file, and its own image as the first frame (the given image is pasted there).
        assert json.loads(Path(tpath).read_text())["tracks"] == [DRAGS[k]]
        first = frames[0].reshape(-1, 3).mean(axis=0)
        distances = [np.abs(first - np.array(c)).mean() for c in COLOURS]
        assert int(np.argmin(distances)) == k, (k, first)
    # Its own video: the same request alone, afterwards, gives the same frames (same image, tracks
    # and seed), and every other client's video differs.
    alone = [_frames(_request(clients[k], images[k], k)[0]) for k in range(4)]
    for k in range(4):
        assert np.abs(videos[k] - alone[k]).mean() < 0.5, k
        assert all(np.abs(videos[k] - videos[j]).mean() > 5 for j in range(4) if j != k)
    print(f"\nfour clients at once: {wall:.1f} s wall, each {', '.join(f'{s:.1f}' for s in seconds)} s "
          f"(one generation at a time; 4 frames, 2 steps, tiny model, 2-core CPU)")


DISCONNECTING_CLIENT = textwrap.dedent("""
    import json, sys, time
    from gradio_client import Client, handle_file
    url, image = sys.argv[1], sys.argv[2]
    client = Client(url, verbose=False)
    tracks = json.dumps({"width": 40, "height": 40, "tracks": [[[8, 20], [30, 20]]]})
    job = client.submit(handle_file(image), tracks, "", 8, 400, 0, 1.0, 1.0, api_name="/generate")
    while not (job.status().progress_data or []):  # sampling has started on the server
        time.sleep(0.05)
    print("sampling", flush=True)
    time.sleep(600)
""")


def test_a_client_that_disconnects_mid_generation_leaves_no_temp_files(server, tmp_path):
    from gradio_client import Client

    image = _image(tmp_path, 0)
    queue = server["demo"]._queue
    before = {str(p.relative_to(server["tmp"])) for p in server["tmp"].rglob("*")}
    proc = subprocess.Popen([sys.executable, "-c", DISCONNECTING_CLIENT, server["url"], str(image)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "sampling"
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the client vanishes: no cancel, no goodbye
        proc.wait()
    t0 = time.perf_counter()
    # 400 steps would take minutes; the server stops at the step after it sees the client gone.
    while any(job for job in queue.active_jobs) and time.perf_counter() - t0 < 120:
        time.sleep(0.1)
    stopped = time.perf_counter() - t0
    assert not any(job for job in queue.active_jobs), "the abandoned generation was stopped"
    # Had it run to the end, its videos would be in a request folder (swept only when the next
    # request starts) and in gradio's cache: neither is there.
    assert list(server["root"].iterdir()) == [], "no request folder left"
    new = {str(p.relative_to(server["tmp"])) for p in server["tmp"].rglob("*")} - before
    # Only gradio's copy of the uploaded image (and its parser's empty spool file) in its upload cache.
    assert all(e.startswith("gradio" + os.sep) and not e.endswith((".mp4", ".gif", ".json")) for e in new), new
    # And the server serves the next client at once.
    t1 = time.perf_counter()
    video, _ = _request(Client(server["url"], verbose=False), image, 0, steps=1)
    assert _frames(video).shape == (4, 32, 32, 3)
    print(f"\ndisconnect: generation stopped {stopped:.1f} s after the client was killed; "
          f"next request served in {time.perf_counter() - t1:.1f} s")


def test_twenty_requests_in_a_row_do_not_grow_the_servers_memory(server, tmp_path):
    import psutil
    from gradio_client import Client

    proc = psutil.Process()  # the server runs in this process
    client = Client(server["url"], verbose=False)
    images = [_image(tmp_path, k % 4) for k in range(4)]
    rss, seconds = [], []
    for i in range(20):
        t0 = time.perf_counter()
        video, _ = _request(client, images[i % 4], i % 4, steps=1)
        seconds.append(time.perf_counter() - t0)
        rss.append(proc.memory_info().rss / 2**20)
        # Each request's folder is removed when the next starts: one at most is ever left.
        assert len(list(server["root"].iterdir())) <= 1
    growth = rss[-1] - rss[0]
    print(f"\n20 requests in a row: RSS {rss[0]:.0f} MB after the first, {rss[-1]:.0f} MB after the 20th "
          f"(+{growth:.0f} MB; max {max(rss):.0f} MB); {np.mean(seconds):.2f} s per request "
          f"(4 frames, 1 step, tiny model, 2-core CPU)")
    assert growth <= 100


@pytest.mark.slow  # the bundled model on a 2-core CPU; the tiny-model test above covers the same code
def test_four_clients_at_once_see_their_own_drags_in_their_videos(tmp_path):
    """With the bundled model (which follows drags), four clients at once each drag a white disc
    their own way (right, left, down, up) on their own background: in each returned video the disc
    ends where that client dragged it, not where any other did."""
    from gradio_client import Client, handle_file

    from dragnuwa import app as app_mod

    ends = [(48, 32), (16, 32), (32, 48), (32, 16)]
    starts = [(24, 32), (40, 32), (32, 24), (32, 40)]
    yy, xx = np.mgrid[0:64, 0:64] + 0.5
    images = []
    for k, (sx, sy) in enumerate(starts):
        img = np.zeros((64, 64, 3), np.uint8)
        img[:] = np.array(COLOURS[k]) // 2
        img[(xx - sx) ** 2 + (yy - sy) ** 2 <= 49] = 255
        images.append(tmp_path / f"disc{k}.png")
        Image.fromarray(img).save(images[-1])
    port = free_port()
    demo = app_mod.launch(host="127.0.0.1", port=port, model="bundled", block=False)
    try:
        results = [None] * 4

        def run(k):
            tracks = json.dumps({"width": 64, "height": 64, "tracks": [[list(starts[k]), list(ends[k])]]})
            results[k] = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
                handle_file(str(images[k])), tracks, "", 4, 1, SEEDS[k], 1.0, 2.0, motion_init=0.3,
                api_name="/generate")

        wall = _at_once(run, 4, timeout=600)
    finally:
        demo.close()
    misses = []
    for k, (video, _) in enumerate(results):
        last = _frames(video)[-1]
        ys, xs = np.nonzero(last.min(axis=-1) > 200)  # the white disc
        centre = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
        distances = [np.hypot(*(centre - np.array(e))) for e in ends]
        assert int(np.argmin(distances)) == k and distances[k] < 6, (k, centre)
        misses.append(distances[k])
    print(f"\nfour clients at once, bundled model: {wall:.1f} s wall (4 frames, 1 step, 2-core CPU); each disc "
          f"ends {', '.join(f'{m:.1f}' for m in misses)} px from its own drag's end (the others' are 22-32 px away)")
