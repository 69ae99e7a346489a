import json

import cv2
import numpy as np

from dragnuwa.data.synthetic import COLORS, SHAPES, render_clip, write_dataset
from dragnuwa.trajectory import lookup_flow


def test_deterministic_by_seed():
    a, b, c = render_clip(7, 6, (64, 64)), render_clip(7, 6, (64, 64)), render_clip(8, 6, (64, 64))
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.flow, b.flow) and a.caption == b.caption
    assert not np.array_equal(a.frames, c.frames)


def test_exact_flow_warps_next_frame_onto_current():
    errs = []
    for seed in range(8):
        clip = render_clip(seed, 6, (96, 96))
        H, W = 96, 96
        gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
        for t in range(5):
            f = clip.flow[t]
            warped = cv2.remap(clip.frames[t + 1].astype(np.float32), gx + f[..., 0], gy + f[..., 1],
                               cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            errs.append(np.median(np.abs(warped - clip.frames[t]).mean(-1)))
    assert np.mean(errs) < 2.0  # grey levels


def test_tracks_agree_with_flow_and_scene_is_rich():
    moving = cams = 0
    errs = []
    for seed in range(20):
        clip = render_clip(seed, 8, (128, 128))
        assert 1 <= len(clip.objects) <= 4
        for k, obj in enumerate(clip.objects):
            assert obj["color"] in clip.caption and obj["shape"] in clip.caption
            assert obj["color"] in COLORS and obj["shape"] in SHAPES
            moving += obj["moving"]
            for t in range(7):
                if clip.visible[k, t] and clip.visible[k, t + 1]:
                    step = lookup_flow(clip.flow[t], clip.tracks[k, t][None])[0]
                    errs.append(np.abs(clip.tracks[k, t] + step - clip.tracks[k, t + 1]).max())
        cams += clip.camera["kind"] != "static"
        assert clip.background in clip.caption
    assert moving >= 20 and cams >= 3  # most clips move, several with camera motion
    # Exact up to float32, except where the bilinear lookup straddles an occluding object's edge.
    assert np.percentile(errs, 95) < 0.01 and max(errs) < 0.5


def test_write_dataset_files(tmp_path):
    paths = write_dataset(tmp_path, count=2, frames=5, size=(48, 32), seed=3)
    assert len(paths) == 2
    name = paths[0].stem
    for suffix in (".mp4", ".flow.npz", ".tracks.json", ".txt", ".json"):
        assert (tmp_path / f"{name}{suffix}").is_file()
    flow = np.load(tmp_path / f"{name}.flow.npz")["flow"]
    assert flow.shape == (4, 32, 48, 2)
    tracks = json.loads((tmp_path / f"{name}.tracks.json").read_text())
    assert tracks["width"] == 48 and all(len(t) == 5 for t in tracks["tracks"])
