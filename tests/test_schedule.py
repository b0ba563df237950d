"""``classifier.max_rate_hz``: each face's emotion at most that often, round-robin over frames,
while the state stays continuous and the primary face's eye state is measured every frame."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from conftest import REPO
from daemon.config import parse_config
from daemon.types import Detection, Frame
from daemon.vision.pipeline import Pipeline
from daemon.vision.schedule import ClassifySchedule
from daemon.vision.tracking import Track

FPS, SECONDS, RATE = 30.0, 3.0, 10.0


def _run_schedule(tracks: list[Track], rate: float, frames: int, fps: float) -> list[list[int]]:
    sched = ClassifySchedule(rate)
    chosen = []
    for i in range(frames):
        due = sched.due(tracks, i / fps)
        for tr in due:
            tr.probs = np.ones(7, np.float32) / 7
        chosen.append([tr.id for tr in due])
    return chosen


def test_each_track_is_classified_at_most_max_rate_hz_spread_over_frames():
    tracks = [Track(i, (10 * i, 0, 10, 10), 0.0, 0.0) for i in range(8)]
    chosen = _run_schedule(tracks, RATE, int(SECONDS * FPS), FPS)
    assert sorted(chosen[0]) == list(range(8))  # new faces: classified at once (no state yet)
    per_track = Counter(i for frame in chosen for i in frame)
    for i in range(8):
        # at most RATE a second (+1 for the first frame), and none starved
        assert 0.8 * RATE * SECONDS <= per_track[i] <= RATE * SECONDS + 1, per_track
    budget = math.ceil(8 * RATE / FPS)
    assert max(len(f) for f in chosen[1:]) <= budget  # no frame pays for every face at once
    assert sum(len(f) for f in chosen[1:]) / (len(chosen) - 1) <= 8 * RATE / FPS + 0.1


def test_zero_rate_classifies_every_face_on_every_frame_and_a_new_track_at_once():
    tracks = [Track(i, (0, 0, 10, 10), 0.0, 0.0) for i in range(3)]
    assert all(len(f) == 3 for f in _run_schedule(tracks, 0.0, 10, FPS))
    sched = ClassifySchedule(RATE)
    for tr in tracks:
        tr.probs = None
    sched.due(tracks, 0.0)
    for tr in tracks:
        tr.probs = np.ones(7, np.float32)
    newcomer = Track(9, (50, 50, 10, 10), 0.03, 0.03)
    assert [tr.id for tr in sched.due([*tracks, newcomer], 1 / FPS)] == [9]


class _EightFaces:
    """A detector that always finds the same eight faces."""

    def __init__(self) -> None:
        self.faces = [Detection((20 + 150 * (i % 4), 40 + 200 * (i // 4), 100, 100), 0.9) for i in range(8)]

    def detect(self, image):
        return list(self.faces)

    def detect_near(self, image, boxes):
        return list(self.faces)

    def detect_search(self, image):
        return list(self.faces)

    def detect_part(self, image, part, parts):
        return []


def test_pipeline_with_eight_tracked_faces_bounds_classify_calls_per_second(tmp_path, tiny_emotion_model):
    cfg = parse_config({"classifier": {"model": str(tiny_emotion_model), "max_rate_hz": RATE},
                        "tracker": {"confirm_hits": 1},  # published from the first frame
                        "eyes": {"model": str(REPO / "models/eye_state.tflite")}}, base_dir=tmp_path)
    pipe = Pipeline.from_config(cfg)
    pipe.detector = _EightFaces()
    classified: list[int] = []
    real = pipe.model.classify

    def counting(frame, boxes, rolls=None, points=None):
        classified.append(len(boxes))
        return real(frame, boxes, rolls, points)

    pipe.model.classify = counting
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    n = int(SECONDS * FPS)
    observations = [pipe.process(Frame(image, i, i / FPS, 1e9 + i / FPS)) for i in range(n)]

    assert all(len(o.faces) == 8 for o in observations)
    assert all(o.faces[k].probs is not None and np.isclose(o.faces[k].probs.sum(), 1.0, atol=0.05)  # int8 output steps
               for o in observations for k in range(8))
    faces_per_second = sum(classified) / SECONDS
    assert faces_per_second <= 8 * RATE + 8 / SECONDS  # the first frame classifies all eight
    assert faces_per_second >= 0.8 * 8 * RATE
    # instead of 8 on every frame: the round-robin's share, carried by the 2 of 3 frames that do
    # not detect (detection runs every 3rd frame and keeps classification off it)
    assert max(classified[1:]) <= math.ceil(8 * RATE / FPS * 3 / 2)
    # the primary face's eye state is measured on every frame, classified or not
    primaries = [next(f for f in o.faces if f.primary) for o in observations]
    assert all("eye_closed" in f.signals for f in primaries)


def test_a_busy_frame_takes_only_new_faces_and_the_rate_still_holds():
    """Detection frames (every 3rd) pass ``busy``: a waiting face moves to the next frame, a new
    face does not wait, and each face still gets about max_rate_hz classifications."""
    tracks = [Track(i, (10 * i, 0, 10, 10), 0.0, 0.0) for i in range(2)]
    sched = ClassifySchedule(RATE)
    per_frame = []
    for i in range(int(SECONDS * FPS)):
        due = sched.due(tracks, i / FPS, busy=i % 3 == 0)
        for tr in due:
            tr.probs = np.ones(7, np.float32) / 7
        per_frame.append([tr.id for tr in due])
    assert sorted(per_frame[0]) == [0, 1]  # new faces on a busy frame: classified at once
    assert all(not ids for i, ids in enumerate(per_frame) if i % 3 == 0 and i > 0)
    counts = Counter(i for ids in per_frame for i in ids)
    assert all(0.8 * RATE * SECONDS <= counts[i] <= RATE * SECONDS + 1 for i in range(2)), counts
    newcomer = Track(7, (90, 0, 10, 10), 0.0, 0.0)
    assert [tr.id for tr in sched.due([*tracks, newcomer], SECONDS + 1.0, busy=True)] == [7]
