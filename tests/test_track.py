"""The tracker: one stable id for the talking head, several for the street, EMA smoothing,
lost faces dropped after max_missed detection rounds, primary = the largest face."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import STREET, TALKING_HEAD, YUNET, read_frames, shared_file

from daemon.vision.detectors import HaarConfig, YunetConfig, make_detector
from daemon.vision.tracking import Tracker, TrackerConfig, iou_matrix
from daemon.types import Detection


def run_clip(frames, detector, every_n: int, tracker: Tracker) -> list[list]:
    """Detection every Nth frame, tracker carrying boxes between: what the pipeline does."""
    per_frame = []
    for i, frame in enumerate(frames):
        dets = detector.detect(frame) if i % every_n == 0 else None
        per_frame.append([(tr.id, tr.box) for tr in tracker.update(dets, t=i / 25.0)])
    return per_frame


def test_talking_head_keeps_one_stable_id():
    frames = read_frames(TALKING_HEAD, step=2)
    tracker = Tracker(TrackerConfig())
    per_frame = run_clip(frames, make_detector(HaarConfig()), every_n=3, tracker=tracker)
    ids = {tid for tracks in per_frame for tid, _ in tracks}
    assert ids == {1}
    assert sum(len(tracks) == 1 for tracks in per_frame) >= 0.95 * len(frames)
    assert tracker.primary is not None and tracker.primary.id == 1 and tracker.primary.hits > 20


def test_street_clip_tracks_several_faces_with_lasting_ids():
    frames = read_frames(STREET)  # 105 frames, 4-8 small faces walking
    detector = make_detector(YunetConfig(model=shared_file(YUNET), downscale_width=960))
    per_frame = run_clip(frames, detector, every_n=3, tracker=Tracker())
    assert min(len(tracks) for tracks in per_frame) >= 4
    lifetimes = Counter(tid for tracks in per_frame for tid, _ in tracks)
    frames_n = len(frames)
    # The same id follows a face: several faces keep theirs for most of the clip.
    assert sum(n >= 0.9 * frames_n for n in lifetimes.values()) >= 3, lifetimes
    assert sum(n >= 0.4 * frames_n for n in lifetimes.values()) >= 5, lifetimes


def test_ids_follow_moving_faces_and_new_faces_get_new_ids():
    tracker = Tracker(TrackerConfig(iou_threshold=0.3, max_missed=2))
    a, b = tracker.update([Detection((0, 0, 100, 100)), Detection((300, 0, 50, 50))], 0.0)
    assert (a.id, b.id) == (1, 2)
    tracks = tracker.update([Detection((310, 5, 50, 50)), Detection((10, 5, 100, 100))], 0.1)
    assert {tr.id: tr.box for tr in tracks} == {1: (10, 5, 100, 100), 2: (310, 5, 50, 50)}
    assert tracker.update(None, 0.2) is tracks and tracks[0].hits == 2  # no detection: unchanged
    tracks = tracker.update([Detection((12, 5, 100, 100)), Detection((600, 300, 40, 40))], 0.3)
    assert sorted(tr.id for tr in tracks) == [1, 2, 3]
    assert next(tr for tr in tracks if tr.id == 2).missed == 1
    assert tracker.primary.id == 1  # the largest face


def test_lost_face_is_dropped_after_max_missed_rounds():
    tracker = Tracker(TrackerConfig(max_missed=2))
    tracker.update([Detection((0, 0, 80, 80))], 0.0)
    for t in (1.0, 2.0):
        assert [tr.id for tr in tracker.update([], t)] == [1]
        assert tracker.update(None, t + 0.5)  # frames without detection do not count as misses
    assert tracker.update([], 3.0) == [] and tracker.primary is None
    assert [tr.id for tr in tracker.update([Detection((0, 0, 80, 80))], 4.0)] == [2]


def test_smoothing_is_an_ema_over_probabilities():
    tracker = Tracker(TrackerConfig(smoothing=0.25))
    (track,) = tracker.update([Detection((0, 0, 50, 50))], 0.0)
    p1 = np.array([1.0, 0.0, 0.0], np.float32)
    p2 = np.array([0.0, 1.0, 0.0], np.float32)
    np.testing.assert_allclose(tracker.smooth(track, p1), p1)
    np.testing.assert_allclose(tracker.smooth(track, p2), [0.75, 0.25, 0.0])
    np.testing.assert_allclose(track.probs.sum(), 1.0, rtol=1e-6)
    assert track.probs is not p1  # the caller's array is not aliased


def test_iou_matrix():
    ious = iou_matrix(np.array([[0, 0, 10, 10]], float), np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]], float))
    np.testing.assert_allclose(ious, [[1.0, 50 / 150, 0.0]])
    assert pytest.approx(0.0) == iou_matrix(np.zeros((1, 4)), np.zeros((1, 4)))[0, 0]


def test_the_primary_face_is_the_largest_in_the_drivers_seat_zone():
    from daemon.types import Detection
    from daemon.vision.tracking import Tracker, TrackerConfig

    driver, passenger = Detection((420, 120, 100, 100)), Detection((80, 100, 140, 140))  # passenger leans in, nearer
    anywhere = Tracker(TrackerConfig())
    anywhere.update([driver, passenger], 0.0, (360, 640))
    assert anywhere.primary.box == passenger.box
    seat = Tracker(TrackerConfig(primary_zone=(0.5, 0.0, 1.0, 1.0)))  # left-hand drive seen from the dash: right half
    seat.update([driver, passenger], 0.0, (360, 640))
    assert seat.primary.box == driver.box
    seat.update([passenger], 0.1)  # the driver's face lost for a round: no primary, not the passenger
    seat.tracks = [t for t in seat.tracks if t.box == passenger.box]
    assert seat.primary is None
    with pytest.raises(ValueError):
        TrackerConfig(primary_zone=(0.6, 0.0, 0.4, 1.0))
