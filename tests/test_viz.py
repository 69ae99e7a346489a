"""Drawing helpers: tiled variants."""

import numpy as np

from dragnuwa.viz import tile_videos


def test_tile_videos_places_each_video_and_labels_it():
    videos = [np.full((2, 40, 50, 3), 20 * (k + 1), np.uint8) for k in range(5)]
    grid = tile_videos(videos, [f"seed {k}" for k in range(5)], cols=3, gap=2)
    assert grid.shape == (2, 2 * 40 + 2, 3 * 50 + 2 * 2, 3)
    for k in range(5):
        y, x = (k // 3) * 42, (k % 3) * 52
        tile = grid[:, y:y + 40, x:x + 50]
        assert np.all(tile[:, 20:] == 20 * (k + 1))  # below the label: the video itself
        label = tile[:, :12, :40]
        assert label.max() > 200 and np.median(label) < 20 * (k + 1)  # white text on a darkened box
    assert np.all(grid[:, :, 50:52] == 0) and np.all(grid[:, 40:42] == 0)  # the gaps
    assert np.all(grid[:, 42:, 104:] == 0)  # the empty sixth place
    plain = tile_videos(videos[:2])
    assert np.array_equal(plain[:, :, :50], videos[0]) and np.array_equal(plain[:, :, 52:], videos[1])
