"""The tracker: one stable id for the talking head, several for the street, EMA smoothing,
confirmation before an id, Kalman prediction, two-stage association, lost faces dropped after
max_missed rounds that could have seen them, primary = the largest face in the seat zone."""

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
    assert per_frame[0] == [] and per_frame[3]  # published from the second detection round on
    assert sum(len(tracks) == 1 for tracks in per_frame) >= 0.95 * len(frames)
    assert tracker.primary is not None and tracker.primary.id == 1 and tracker.primary.hits > 20


def test_street_clip_tracks_several_faces_with_lasting_ids():
    frames = read_frames(STREET)  # 105 frames, 4-8 small faces walking
    detector = make_detector(YunetConfig(model=shared_file(YUNET), downscale_width=960))
    per_frame = run_clip(frames, detector, every_n=3, tracker=Tracker())
    assert min(len(tracks) for tracks in per_frame[3:]) >= 4
    lifetimes = Counter(tid for tracks in per_frame for tid, _ in tracks)
    frames_n = len(frames)
    # The same id follows a face: several faces keep theirs for most of the clip.
    assert sum(n >= 0.9 * frames_n for n in lifetimes.values()) >= 3, lifetimes
    assert sum(n >= 0.4 * frames_n for n in lifetimes.values()) >= 5, lifetimes


def test_ids_are_given_at_confirmation_and_follow_moving_faces():
    tracker = Tracker(TrackerConfig(iou_threshold=0.3, max_missed=2, confirm_hits=2))
    assert tracker.update([Detection((0, 0, 100, 100)), Detection((300, 0, 50, 50))], 0.0) == []  # tentative
    tracks = tracker.update([Detection((310, 5, 50, 50)), Detection((10, 5, 100, 100))], 0.1)
    assert {tr.id: tr.box for tr in tracks} == {2: (310, 5, 50, 50), 1: (10, 5, 100, 100)}
    assert len(tracker.update(None, 0.2)) == 2 and tracks[0].hits == 2  # no detection: nothing matched or missed
    tracks = tracker.update([Detection((12, 5, 100, 100)), Detection((600, 300, 40, 40))], 0.3)
    assert sorted(tr.id for tr in tracks) == [1, 2]  # the new face is tentative, the missed one held
    assert next(tr for tr in tracks if tr.id == 2).missed == 1
    assert [tr.id for tr in tracker.tracks if not tr.confirmed] == [0]
    tracks = tracker.update([Detection((14, 5, 100, 100)), Detection((602, 301, 40, 40))], 0.4)
    assert sorted(tr.id for tr in tracks) == [1, 2, 3]
    assert tracker.primary.id == 1  # the largest face


def test_a_flicker_never_gets_an_id():
    tracker = Tracker(TrackerConfig(confirm_hits=3))
    for t in range(10):  # a false face on every other round, never on three in a row
        tracker.update([Detection((50, 50, 30, 30))] if t % 2 == 0 else [], float(t))
    assert tracker.confirmed == [] and tracker._next_id == 1


def test_prediction_carries_a_walking_face_between_sparse_detections():
    """A 24-px face walking 60 px/s, detected every 5th frame: the Kalman filter keeps its box
    moving between detections, so it stays one id where a box held still would lose it."""
    tracker = Tracker(TrackerConfig(confirm_hits=2))
    for i in range(60):
        t = i / 25.0
        x = 100 + 60 * t
        dets = [Detection((int(x), 200, 24, 24), 0.9)] if i % 5 == 0 else None
        tracks = tracker.update(dets, t)
    assert [tr.id for tr in tracks] == [1]
    assert abs(tracks[0].box[0] - (100 + 60 * 59 / 25.0)) < 6  # predicted on the frames between


def test_weak_detections_continue_tracks_but_never_start_them():
    tracker = Tracker(TrackerConfig(high_score=0.6, confirm_hits=1))
    assert tracker.update([Detection((0, 0, 50, 50), 0.4)], 0.0) == []  # weak: no new track
    (tr,) = tracker.update([Detection((0, 0, 50, 50), 0.9)], 0.1)
    for t in (0.2, 0.3, 0.4):  # the face turns away: weak detections keep the id
        assert [x.id for x in tracker.update([Detection((2, 0, 50, 50), 0.4)], t)] == [tr.id]
    assert tr.missed == 0


def test_only_rounds_that_could_see_a_face_count_its_misses():
    tracker = Tracker(TrackerConfig(max_missed=1, confirm_hits=1))
    tracker.update([Detection((0, 0, 40, 40)), Detection((0, 500, 40, 40))], 0.0)
    top_band = lambda box: box[1] < 300  # noqa: E731 - this round scanned the top of the frame only
    for t in (0.1, 0.2, 0.3):
        tracks = tracker.update([Detection((1, 0, 40, 40))], t, covered=top_band)
    assert sorted(tr.box[1] for tr in tracks) == [0, 500]  # the bottom face was never looked for
    tracker.update([], 0.4)
    tracker.update([], 0.5)
    assert tracker.update([], 0.6) == []


def test_lost_face_is_dropped_after_max_missed_rounds():
    tracker = Tracker(TrackerConfig(max_missed=2, confirm_hits=1))
    tracker.update([Detection((0, 0, 80, 80))], 0.0)
    for t in (1.0, 2.0):
        assert [tr.id for tr in tracker.update([], t)] == [1]
        assert tracker.update(None, t + 0.5)  # frames without detection do not count as misses
    assert tracker.update([], 3.0) == [] and tracker.primary is None
    assert [tr.id for tr in tracker.update([Detection((0, 0, 80, 80))], 4.0)] == [2]


def test_hold_missed_keeps_a_lost_face_for_its_id_without_publishing_it():
    tracker = Tracker(TrackerConfig(max_missed=4, hold_missed=1, confirm_hits=1))
    tracker.update([Detection((0, 0, 80, 80))], 0.0)
    assert [tr.id for tr in tracker.update([], 0.1)] == [1]
    assert tracker.update([], 0.2) == [] and len(tracker.tracks) == 1  # kept, not published
    assert [tr.id for tr in tracker.update([Detection((0, 0, 80, 80))], 0.3)] == [1]  # the same id back


def test_smoothing_is_an_ema_over_probabilities():
    tracker = Tracker(TrackerConfig(smoothing=0.25, confirm_hits=1))
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
    anywhere = Tracker(TrackerConfig(confirm_hits=1))
    anywhere.update([driver, passenger], 0.0, (360, 640))
    assert anywhere.primary.box == passenger.box
    seat = Tracker(TrackerConfig(primary_zone=(0.5, 0.0, 1.0, 1.0), confirm_hits=1))  # left-hand drive seen from the dash: right half
    seat.update([driver, passenger], 0.0, (360, 640))
    assert seat.primary.box == driver.box
    seat.update([passenger], 0.1)  # the driver's face lost for a round: no primary, not the passenger
    seat.tracks = [t for t in seat.tracks if t.box == passenger.box]
    assert seat.primary is None
    with pytest.raises(ValueError):
        TrackerConfig(primary_zone=(0.6, 0.0, 0.4, 1.0))
    nobody = Tracker(TrackerConfig(primary=False, confirm_hits=1))
    nobody.update([driver, passenger], 0.0, (360, 640))
    assert nobody.primary is None  # retail: no face is special
