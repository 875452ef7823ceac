"""Predicted vs real (motus_ros/viz/prediction_check.py), the camera lookup at a past time
(ObservationSync.cameras_at) and the snapshot panel that shows the comparison. No ROS."""
from __future__ import annotations

import math

import numpy as np
import pytest

from motus_ros.layout import CAMERAS
from motus_ros.policy.sync import STATE, ObservationSync
from motus_ros.training.evaluation import psnr
from motus_ros.viz.prediction_check import (SEPARATOR_PX, PredictionCheck, comparison_image,
                                            model_frame, psnr_summary)

H, W = 16, 24
PERIOD = 0.2


def frame_for(t: float) -> np.ndarray:
    """A real frame that says which time it belongs to (value = 10 * t, t in s)."""
    return np.full((H, W, 3), int(round(10 * t)) % 256, np.uint8)


def prediction(n=4, value=None, start=1.0):
    """Frames that equal the real ones at start + k * PERIOD (or all `value`)."""
    if value is None:
        return np.stack([frame_for(start + k * PERIOD) for k in range(1, n + 1)])
    return np.full((n, H, W, 3), value, np.uint8)


class Cameras:
    """A lookup over the times whose real frames have 'arrived'; records what it was asked."""

    def __init__(self, available=()):
        self.available = set(np.round(list(available), 6))
        self.asked: list[float] = []

    def __call__(self, t, height, width):
        assert (height, width) == (H, W)
        self.asked.append(t)
        return frame_for(t) if round(t, 6) in self.available else None


def times(start, n=4):
    return [start + k * PERIOD for k in range(1, n + 1)]


def test_exact_prediction_scores_inf_and_uses_the_frames_at_its_times():
    check = PredictionCheck(max_wait_s=1.0)
    condition = frame_for(1.0)
    assert check.add(1.0, prediction(), PERIOD, condition, chunk_id=5)
    done = check.update(now=2.0, lookup=Cameras(times(1.0)))
    assert len(done) == 1 and check.pending == 0
    c = done[0]
    assert c.chunk_id == 5 and c.stamp == 1.0
    np.testing.assert_allclose(c.times, [1.2, 1.4, 1.6, 1.8])
    np.testing.assert_array_equal(c.real, np.stack([frame_for(t) for t in times(1.0)]))
    assert all(math.isinf(v) for v in c.psnr_db) and math.isinf(c.mean_psnr_db)
    # Copy baseline: the condition frame against each real frame, the evaluation's psnr.
    np.testing.assert_allclose(c.copy_psnr_db, [psnr(condition, frame_for(t)) for t in times(1.0)])
    stats = check.stats()
    assert stats["compared_predictions"] == 1 and stats["dropped_predictions"] == 0
    assert math.isinf(stats["psnr_last_db"])
    assert stats["copy_psnr_last_db"] == pytest.approx(np.mean(c.copy_psnr_db))


def test_psnr_matches_the_evaluation_definition_and_runs_over_the_window():
    check = PredictionCheck(window=2)
    lookup = Cameras(times(1.0) + times(2.0) + times(3.0))
    for stamp, value in ((1.0, 0), (2.0, 40), (3.0, 90)):
        check.add(stamp, prediction(value=value, start=stamp), PERIOD)
    done = check.update(4.0, lookup)
    assert [c.stamp for c in done] == [1.0, 2.0, 3.0]
    expected = [[psnr(np.full((H, W, 3), v, np.uint8), frame_for(t)) for t in times(s)]
                for s, v in ((1.0, 0), (2.0, 40), (3.0, 90))]
    np.testing.assert_allclose(done[1].psnr_db, expected[1])
    stats = check.stats()
    assert stats["psnr_last_db"] == pytest.approx(np.mean(expected[2]))
    assert stats["psnr_mean_db"] == pytest.approx(np.mean(expected[1] + expected[2]))  # window 2
    assert stats["psnr_window"] == 2 and "copy_psnr_mean_db" not in stats   # no condition frames
    per_frame = [float(p.split(":")[1]) for p in stats["psnr_by_frame_db"].split()]
    np.testing.assert_allclose(per_frame, np.mean([expected[1], expected[2]], axis=0), atol=0.05)
    check.set_limits(window=1)
    assert check.stats()["psnr_mean_db"] == pytest.approx(np.mean(expected[2]))


def test_missing_real_frames_drop_the_prediction_after_max_wait():
    check = PredictionCheck(max_wait_s=0.5)
    check.add(1.0, prediction(), PERIOD)
    lookup = Cameras(times(1.0)[:3])          # the last frame's time never arrives
    assert check.update(now=2.0, lookup=lookup) == [] and check.pending == 1
    assert check.update(now=1.8 + 0.5, lookup=lookup) == [] and check.pending == 1   # not yet
    assert check.update(now=1.8 + 0.51, lookup=lookup) == [] and check.pending == 0
    stats = check.stats()
    assert stats["dropped_predictions"] == 1 and stats["compared_predictions"] == 0
    assert "psnr_last_db" not in stats and psnr_summary(stats) == ""
    # Found frames are not asked for again.
    assert lookup.asked.count(pytest.approx(1.2)) == 1


def test_clock_going_back_drops_the_waiting_prediction():
    check = PredictionCheck(max_wait_s=5.0)
    check.add(10.0, prediction(start=10.0), PERIOD)
    assert check.update(now=1.0, lookup=Cameras()) == [] and check.dropped == 1


def test_out_of_order_arrival_completes_each_prediction_once():
    check = PredictionCheck(max_wait_s=10.0)
    check.add(2.0, prediction(start=2.0), PERIOD)      # the newer prediction comes first
    check.add(1.0, prediction(start=1.0), PERIOD)
    lookup = Cameras(times(2.0)[2:] + times(1.0)[1:])   # later frames before earlier ones
    assert check.update(3.0, lookup) == [] and check.pending == 2
    lookup.available |= set(np.round(times(1.0)[:1], 6))
    first = check.update(3.1, lookup)
    assert [c.stamp for c in first] == [1.0] and check.pending == 1
    lookup.available |= set(np.round(times(2.0)[:2], 6))
    second = check.update(3.2, lookup)
    assert [c.stamp for c in second] == [2.0] and check.pending == 0
    np.testing.assert_array_equal(second[0].real, np.stack([frame_for(t) for t in times(2.0)]))
    assert check.compared == 2 and math.isinf(second[0].mean_psnr_db)


def test_full_check_leaves_new_predictions_unchecked():
    check = PredictionCheck(max_pending=2)
    assert check.add(1.0, prediction(), PERIOD) and check.add(2.0, prediction(), PERIOD)
    assert not check.add(3.0, prediction(), PERIOD)
    assert check.stats()["unchecked_predictions"] == 1 and check.pending == 2
    check.clear()
    assert check.pending == 0 and check.dropped == 0


def test_bad_inputs_name_the_field():
    check = PredictionCheck()
    with pytest.raises(ValueError, match="predicted frames: got shape"):
        check.add(1.0, np.zeros((4, H, W), np.uint8), PERIOD)
    with pytest.raises(ValueError, match="condition frame: got shape"):
        check.add(1.0, prediction(), PERIOD, condition=np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="period_s"):
        check.add(1.0, prediction(), 0.0)
    with pytest.raises(ValueError, match="comparison_window: got 0"):
        PredictionCheck(window=0)
    check.add(1.0, prediction(), PERIOD)
    with pytest.raises(ValueError, match=r"real frame at 1.200 s: shape \(2, 2, 3\)"):
        check.update(2.0, lambda t, h, w: np.zeros((2, 2, 3), np.uint8))


def test_comparison_image_puts_real_above_predicted():
    real = np.stack([np.full((H, W, 3), 10 * (k + 1), np.uint8) for k in range(4)])
    predicted = np.full((4, H, W, 3), 200, np.uint8)
    image = comparison_image(real, predicted)
    assert image.shape == (2 * H + SEPARATOR_PX, 4 * W, 3) and image.dtype == np.uint8
    assert image[0, 0, 0] == 10 and image[0, 3 * W, 0] == 40           # real row, in time order
    assert (image[H + SEPARATOR_PX:] == 200).all()                      # predicted row below
    # Downsampled by an integer factor to fit the width: 16 frames of 384x320 -> step 4.
    big = np.zeros((16, 384, 320, 3), np.uint8)
    assert comparison_image(big, big, max_width=1600).shape == (2 * 96 + SEPARATOR_PX, 16 * 80, 3)
    with pytest.raises(ValueError, match="expected equal"):
        comparison_image(real, predicted[:3])


def test_model_frame_is_the_runtime_tiling_at_the_prediction_size():
    from motus_ros.policy.transforms import TILE_HEIGHT, TILE_WIDTH, resize_image, tile_cameras

    cams = {c: np.full((48, 64, 3), 60 * i, np.uint8) for i, c in enumerate(CAMERAS)}
    frame = model_frame(cams, 32, 48)
    assert frame.shape == (32, 48, 3)
    np.testing.assert_array_equal(
        frame, resize_image(tile_cameras(cams, TILE_HEIGHT, TILE_WIDTH), 32, 48))


def test_psnr_summary_reads_diagnostics_strings():
    values = {"psnr_mean_db": "24.25", "psnr_last_db": "25", "copy_psnr_mean_db": "21.5",
              "psnr_window": "20", "compared_predictions": "31", "dropped_predictions": "2"}
    assert psnr_summary(values) == ("PSNR 24.2 dB (mean of last 20) vs copy baseline 21.5 dB, "
                                    "last 25.0 dB; 31 compared, 2 dropped")


# ObservationSync.cameras_at ------------------------------------------------------------------------
def test_cameras_at_waits_for_every_camera_then_takes_the_nearest_frames():
    sync = ObservationSync(CAMERAS, tolerance_s=0.02, max_age_s=0.1)
    assert not sync.cameras_at(1.0).ok and sync.cameras_at(1.0).stale          # nothing yet
    for t in (0.96, 0.99, 1.03):
        for cam in CAMERAS:
            if not (cam == "right_wrist" and t == 1.03):
                sync.add(cam, t, f"{cam}@{t}")
    waiting = sync.cameras_at(1.0)
    assert not waiting.ok and "right_wrist" in waiting.reason    # a nearer frame may still come
    sync.add("right_wrist", 1.03, "right_wrist@1.03")
    got = sync.cameras_at(1.0)   # joint states not needed, and no age limit: 1.0 is in the past
    assert got.ok and got.samples == {c: f"{c}@0.99" for c in CAMERAS}
    assert STATE not in got.samples
    # A frame stamped at the time asked for, read back from a ROS stamp, may be ~0.2 us below it.
    t = 1796207818.4626062 + 0.02 * 8
    sync.add("high", 1796207818.622606, "high@t")
    sync.add("left_wrist", 1796207818.622606, "left@t")
    sync.add("right_wrist", 1796207818.622606, "right@t")
    assert t > 1796207818.622606 and sync.cameras_at(t).ok
    far = sync.cameras_at(0.5)
    assert not far.ok and "sync_tolerance_s 0.02" in far.reason


# Snapshot ------------------------------------------------------------------------------------------
def test_snapshot_shows_the_comparison_with_its_psnr(tmp_path):
    import matplotlib.image

    from motus_ros.commands.snapshot import compose_snapshot

    cams = {"high": np.full((48, 64, 3), 200, np.uint8)}
    real = np.full((8, 32, 40, 3), 30, np.uint8)
    image = comparison_image(real, np.full_like(real, 220))
    title = psnr_summary({"psnr_mean_db": 24.0, "psnr_window": 3, "copy_psnr_mean_db": 20.0})
    t = np.arange(10) * 0.1
    joints = ((t, np.ones((10, 14))), (t - 1.0, np.zeros((10, 14))))
    out = compose_snapshot(tmp_path / "s.png", cams, None, "", *joints,
                           comparison=image, comparison_title=title)
    png = matplotlib.image.imread(out)
    plain = matplotlib.image.imread(compose_snapshot(tmp_path / "p.png", cams, None, "", *joints))
    assert png.shape[1] == plain.shape[1] and png.shape[0] > plain.shape[0]   # one more row
    # The panel's bright predicted row and dark real row are both drawn.
    rows = png[..., :3].reshape(-1, 3)
    assert (np.abs(rows - 220 / 255).max(axis=1) < 0.02).sum() > 500
    assert (np.abs(rows - 30 / 255).max(axis=1) < 0.02).sum() > 500
