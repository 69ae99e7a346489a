import json

import numpy as np
import pytest

from dragnuwa.errors import UserError
from dragnuwa.tracks_io import TrackSet, load_tracks, parse_tracks, save_tracks

GOOD = {"width": 256, "height": 128, "tracks": [[[10, 20], [30, 40.5]], [[100, 100]]]}


def test_parse_and_round_trip(tmp_path):
    ts = parse_tracks(GOOD)
    assert (ts.width, ts.height, len(ts.tracks)) == (256, 128, 2)
    save_tracks(tmp_path / "t.json", ts)
    back = load_tracks(tmp_path / "t.json")
    assert np.allclose(back.tracks[0], [[10, 20], [30, 40.5]]) and back.tracks[1].shape == (1, 2)


def test_rescale_and_resample():
    ts = parse_tracks(GOOD).rescaled(128, 64)
    assert np.allclose(ts.tracks[0][1], [15, 20.25])
    arr = ts.resampled(5)
    assert arr.shape == (2, 5, 2) and np.allclose(arr[1], arr[1][0])  # anchor stays still


@pytest.mark.parametrize("obj, message", [
    ([1, 2], "must be an object"),
    ({"width": 10, "tracks": [[[1, 1]]]}, "missing the key 'height'"),
    ({"width": -5, "height": 10, "tracks": [[[1, 1]]]}, "positive integers"),
    ({"width": 10, "height": 10, "tracks": []}, "no tracks"),
    ({"width": 10, "height": 10, "tracks": [[[1, 1]], [[1, "a"]]]}, "track 1, point 0, y: expected a number"),
    ({"width": 10, "height": 10, "tracks": [[[1, 1], [float("nan"), 2]]]}, "track 0, point 1, x: nan"),
    ({"width": 10, "height": 10, "tracks": [[[1, 1], [2, 2], [11, 2]]]}, "track 0, point 2: x=11 is outside"),
    ({"width": 10, "height": 10, "tracks": [[[1, 1, 1]]]}, r"track 0, point 0: expected \[x, y\]"),
])
def test_bad_tracks_name_the_problem(obj, message):
    with pytest.raises(UserError, match=message):
        parse_tracks(obj)


def test_clamp_on_request():
    ts = parse_tracks({"width": 10, "height": 10, "tracks": [[[-3, 4], [12, 20]]]}, clamp=True)
    assert np.allclose(ts.tracks[0], [[0, 4], [10, 10]])


def test_bad_files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_tracks(tmp_path / "bad.json")
    with pytest.raises(UserError, match="not found"):
        load_tracks(tmp_path / "missing.json")


def test_from_array_json_has_one_point_per_frame():
    ts = TrackSet.from_array(np.zeros((3, 7, 2)) + 5, 64, 64)
    obj = json.loads(json.dumps(ts.to_json()))
    assert len(obj["tracks"]) == 3 and all(len(t) == 7 for t in obj["tracks"])
