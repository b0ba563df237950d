"""The shipped eye model on real video: blinks read closed, open eyes read open.

Ground truth is the FaceMesh eye aspect ratio (EAR) measured per frame beside the clip. Her
open eyes sit at EAR 0.27-0.37; the three blinks the data README names (frames 25-29, 97-98,
223-224) are the only frames under 0.16, so **blink = EAR < 0.16** and **open = EAR >= 0.25**.
Frames in between (EAR 0.17-0.23) are long stretches where she looks down with lowered lids;
they are neither, and are reported separately.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import REPO, TALKING_HEAD, YUNET, read_frames, shared_file
from daemon.vision.detectors.haar import HaarConfig, HaarDetector
from daemon.vision.signals.eyes import EyesConfig, EyeStateEstimator, eye_boxes, eye_centres
from daemon.rules import RulesEngine
from daemon.rules.driver_fatigue import DriverFatigueConfig
from daemon.types import FaceState, Observation

BLINK_EAR, OPEN_EAR = 0.16, 0.25
EYE_MODEL = REPO / "models" / "eye_state.tflite"
FPS = 25.0


@pytest.fixture(scope="module")
def clip():
    frames = read_frames(TALKING_HEAD)
    with shared_file(TALKING_HEAD.replace(".mp4", ".ear_mar.csv")).open() as fh:
        ear = np.array([float(row["ear"]) for row in csv.DictReader(fh)])
    assert len(ear) == len(frames)
    return frames, ear


@pytest.fixture(scope="module")
def estimator():
    return EyeStateEstimator(EyesConfig(model=EYE_MODEL))


@pytest.fixture(scope="module")
def haar_probs(clip, estimator):
    """Closed probability per frame, eyes placed from Haar face boxes (the default detector)."""
    frames, _ = clip
    haar = HaarDetector(HaarConfig())
    probs = []
    for frame in frames:
        faces = haar.detect(frame)
        box = max((d.box for d in faces), key=lambda b: b[2] * b[3]) if faces else None
        probs.append(None if box is None else estimator.closed_prob(frame, box))
    return probs


def closed_rates(probs, ear) -> dict[str, float]:
    p = np.array([np.nan if v is None else v for v in probs])
    groups = {"blink": ear < BLINK_EAR, "open": ear >= OPEN_EAR, "lowered": (ear >= BLINK_EAR) & (ear < OPEN_EAR)}
    return {name: float(np.nanmean(p[mask] >= 0.5)) for name, mask in groups.items()}


def check_rates(rates: dict[str, float], source: str) -> None:
    print(f"\n{source}: closed-rate on blink frames {rates['blink']:.2f}, on open-eye frames {rates['open']:.3f}"
          f" (lowered-lid frames {rates['lowered']:.2f})")
    assert rates["blink"] >= 0.8
    assert rates["open"] <= 0.05
    assert rates["blink"] - rates["open"] >= 0.75


def test_blinks_read_closed_and_open_eyes_read_open_from_haar_boxes(clip, haar_probs):
    _, ear = clip
    assert sum(p is None for p in haar_probs) <= 5  # a face in every frame; eyes read in nearly all
    check_rates(closed_rates(haar_probs, ear), "haar boxes")


def test_blinks_read_closed_and_open_eyes_read_open_from_yunet_landmarks(clip, estimator):
    import cv2

    frames, ear = clip
    yunet = cv2.FaceDetectorYN.create(str(shared_file(YUNET)), "", frames[0].shape[1::-1], 0.6)
    probs = []
    for frame in frames:
        _, faces = yunet.detect(frame)
        if faces is None:
            probs.append(None)
            continue
        f = faces[0]
        landmarks = f[4:14].reshape(5, 2)
        probs.append(estimator.closed_prob(frame, tuple(int(v) for v in f[:4]), landmarks))
    check_rates(closed_rates(probs, ear), "yunet landmarks")


def test_eye_geometry_from_a_haar_box_matches_the_landmarks(clip):
    """The box fractions put each eye patch over the eye YuNet finds (within a fifth of a patch; head roll moves one eye up)."""
    import cv2

    frames, _ = clip
    haar = HaarDetector(HaarConfig())
    yunet = cv2.FaceDetectorYN.create(str(shared_file(YUNET)), "", frames[0].shape[1::-1], 0.6)
    for frame in frames[::20]:
        (det,) = haar.detect(frame)
        _, faces = yunet.detect(frame)
        from_box = eye_centres(det.box, None)
        from_landmarks = eye_centres(det.box, faces[0][4:14].reshape(5, 2))
        side = eye_boxes(from_landmarks)[0][2]
        assert np.abs(from_box - from_landmarks).max() <= 0.2 * side


def test_small_faces_give_no_reading(estimator):
    frame = np.full((360, 640, 3), 128, np.uint8)
    assert estimator.closed_prob(frame, (10, 10, 30, 30)) is None  # IOD ~11 px
    assert estimator.closed_prob(frame, (600, 10, 80, 80)) is None  # eye beyond the frame edge


def fatigue_events(probs, **cfg):
    engine = RulesEngine([DriverFatigueConfig(**cfg)], ["closed", "open"])
    events = []
    for i, p in enumerate(probs):
        face = FaceState(1, (0, 0, 1, 1), np.array([0.5, 0.5]), "open", 0.5, primary=True, eye_closed=p)
        events += engine.step(Observation(i / FPS, 1e9 + i / FPS, [face]))
    return events


def test_whole_clip_never_reaches_sleep_or_drowsy(haar_probs):
    events = fatigue_events(haar_probs)
    print("\nfatigue events on the clip:", [(e.phase, e.level, e.details.get("closure_s")) for e in events])
    assert not [e for e in events if e.level in ("drowsy", "sleep", "unresponsive")]


def test_the_downcast_glance_alone_would_be_a_microsleep_at_euro_ncap_timings(haar_probs):
    # Her 2.2 s downward glance with lowered lids (frames 30-79, EAR ~0.2) read as closed to
    # the first (CEW) model; the current one was taught open eyes looking down (converter/eye_data.py)
    # and reads them open: no microsleep even at Euro NCAP's first-microsleep timing.
    assert [e.level for e in fatigue_events(haar_probs, microsleep_repeat=1) if e.phase == "start"] == []


def test_whole_clip_raises_no_fatigue_alert_with_eyes_only_and_two_microsleeps(haar_probs):
    assert fatigue_events(haar_probs, microsleep_repeat=2) == []
