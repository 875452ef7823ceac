"""Pure observation/action transforms: tiling, normalization, validation, statistics files."""
from __future__ import annotations

import math

import numpy as np
import pytest

from motus_ros.paths import models_dir
from motus_ros.policy.transforms import (MinMax, ObservationError, denormalize, from_model_pixels, letterbox,
                                         load_stats, normalize, tile_cameras, to_model_pixels, validate_images,
                                         validate_vector)


def solid(h, w, rgb):
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = rgb
    return img


def cams(h=480, w=640):
    return {"high": solid(h, w, (255, 0, 0)), "left_wrist": solid(h, w, (0, 255, 0)),
            "right_wrist": solid(h, w, (0, 0, 255))}


def test_t_tiling_layout_and_padding():
    out = tile_cameras(cams())
    assert out.shape == (384, 320, 3) and out.dtype == np.uint8
    # 640x480 (4:3) into 320x192: scaled to 256x192 -> 32 px black bars left and right.
    assert (out[96, 160] == (255, 0, 0)).all()
    assert (out[96, 10] == 0).all() and (out[96, 310] == 0).all()
    # Wrists: 640x480 into 160x192 -> 160x120, black bars above and below.
    assert (out[288, 80] == (0, 255, 0)).all() and (out[288, 240] == (0, 0, 255)).all()
    assert (out[200, 80] == 0).all() and (out[380, 240] == 0).all()


def test_letterbox_keeps_aspect_any_size():
    out = letterbox(solid(100, 50, (9, 9, 9)), 40, 40)  # tall image -> 20x40 centred
    cols = np.where(out[20, :, 0] == 9)[0]
    assert out.shape == (40, 40, 3) and cols.min() == 10 and cols.max() == 29


def test_missing_camera_and_bad_images_rejected():
    images = cams()
    del images["left_wrist"]
    with pytest.raises(ObservationError, match=r"missing cameras \['left_wrist'\]"):
        tile_cameras(images)
    with pytest.raises(ObservationError, match=r"images\['high'\]: shape \(4, 4\), expected \(H, W, 3\)"):
        validate_images({**cams(), "high": np.zeros((4, 4), np.uint8)})
    with pytest.raises(ObservationError, match="dtype float32, expected uint8"):
        validate_images({**cams(), "high": np.zeros((4, 4, 3), np.float32)})


def test_validate_vector_rejects_shape_and_non_finite():
    with pytest.raises(ObservationError, match=r"state: shape \(13,\), expected \(14,\)"):
        validate_vector("state", np.zeros(13), (14,))
    bad = np.zeros(14)
    bad[3] = np.nan
    with pytest.raises(ObservationError, match=r"state: non-finite value nan at index \(3,\)"):
        validate_vector("state", bad, (14,))
    bad[3] = np.inf
    with pytest.raises(ObservationError, match="non-finite value inf"):
        validate_vector("state", bad, (14,))


def test_normalize_roundtrip_and_constant_dimension():
    stats = MinMax(np.array([-1.0, 0.0, 2.0]), np.array([1.0, 0.07, 2.0]))
    x = np.array([[0.0, 0.035, 2.0], [1.0, 0.07, 2.0]])
    y = normalize(x, stats)
    np.testing.assert_allclose(y, [[0.5, 0.5, 0.0], [1.0, 1.0, 0.0]])
    np.testing.assert_allclose(denormalize(y, stats), x)
    assert denormalize(y, stats).dtype == np.float64


def test_pixel_conversions_roundtrip():
    img = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    x = to_model_pixels(img)
    assert x.shape == (3, 8, 6) and x.min() >= -1 and x.max() <= 1
    np.testing.assert_array_equal(from_model_pixels(x), img)


@pytest.mark.parametrize("robot", ["sim", "agilex_aloha2", "ac_one"])
def test_stats_files(robot):
    stats = load_stats(models_dir() / "stats" / f"{robot}.json")
    assert stats.action.min.shape == (14,) and stats.source
    assert (stats.action.max > stats.action.min).all() and (stats.state.max > stats.state.min).all()


def test_agilex_stats_are_piper_limits():
    s = load_stats(models_dir() / "stats" / "agilex_aloha2.json").action
    assert s.min[6] == 0.0 and s.max[6] == pytest.approx(0.07) and s.max[13] == pytest.approx(0.07)
    assert s.max[0] == pytest.approx(math.radians(150), abs=1e-5) and s.min[2] == pytest.approx(math.radians(-170), abs=1e-5)


def test_bad_stats_file_errors(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"action": {"min": [0, 1], "max": [1, 2]}, "state": {"min": [0], "max": [1]}}')
    with pytest.raises(Exception, match=r"action.min: shape \(2,\), expected \(14,\)"):
        load_stats(p)
    p.write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_stats(p)
