"""Eyes at any angle (issue "Eyes at any angle"): a driver asleep in a dashcam's view is seen
asleep, unreadable eyes are always said, a yawn is neither a closure nor a distraction.

Every face below is a real face read by the daemon's pipeline with config.yaml (YuNet, FaceMesh,
the eye model on the eye_corners crop, Iris). Where the scenario needs a camera the clips were
not filmed with, the frames are seen through ``converter/views.py``'s dashcam (the face shrunk
to ~50 px, turned 35 degrees by a perspective warp, 15 frames/s; at night also grey, dim and
noisy); where it needs a head movement the clip does not have, the frames' own head pose is
moved by a known angle (as tests/test_real_drivers.py does).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import REPO, read_frames
from daemon.config import load_config
from daemon.model.eye_crop import corners_from_centres, corners_from_mesh, cut_eyes, eye_widths_px
from daemon.rules.eyes import EyeJudge
from daemon.types import FaceState, Frame, Observation
from daemon.vision.pipeline import Pipeline
from test_real_drivers import EYES_SHUT, FPS, TALKING, Drive, at, shut_obs, with_mouth, with_pose, yawn_obs  # noqa: F401 (fixtures)

EYE_MODEL = REPO / "models" / "eye_state.tflite"


def observe_view(relpath: str, fps: float, night: bool = False, keep_fps: float | None = None) -> list[Observation]:
    """The clip through config.yaml's pipeline as the dashcam sees it (frame times: the clip's)."""
    from converter.views import apply_view, dashcam

    frames = read_frames(relpath)
    return observe_frames(frames, frames[0], fps, night, keep_fps)


def observe_frames(frames: list[np.ndarray], first: np.ndarray, fps: float, night: bool = False,
                   keep_fps: float | None = None, face_px: float = 50.0) -> list[Observation]:
    """``frames`` through config.yaml's pipeline as the dashcam sees them, the face placed where
    YuNet finds it in ``first`` (frame times: i / fps)."""
    from converter.views import apply_view, dashcam

    det = cv2.FaceDetectorYN.create(str(REPO / "models/face_detection_yunet_2023mar.onnx"), "", first.shape[1::-1])
    _, found = det.detect(first)
    x, y, w, h = found[0][:4]
    view, face = dashcam(face_px=face_px, night=night), (x + w / 2, y + h / 2, w)
    pipe = Pipeline.from_config(load_config(REPO / "config.yaml"))
    step = 1 if keep_fps is None else fps / keep_fps
    out, k = [], 0.0
    for i, f in enumerate(frames):
        if i < k:
            continue
        k += step
        out.append(pipe.process(Frame(apply_view(f, view, face), i, i / fps, 1e9 + i / fps)))
    return out


@pytest.fixture(scope="module")
def dashcam_shut() -> list[Observation]:
    return observe_view(EYES_SHUT, 20.0)


@pytest.fixture(scope="module")
def night_shut() -> list[Observation]:
    return observe_view(EYES_SHUT, 20.0, night=True)


@pytest.fixture(scope="module")
def night_asleep() -> list[Observation]:
    """Asleep from the first frame: the desk clip's shut stretch (5.2-8.8 s) played forwards,
    backwards and forwards again (10.8 s), seen by the night dashcam at 15 frames/s."""
    frames = read_frames(EYES_SHUT)
    shut = frames[round(5.2 * FPS):round(8.8 * FPS)]
    return observe_frames(shut + shut[::-1] + shut, frames[0], FPS, night=True, keep_fps=15.0)


@pytest.fixture(scope="module")
def night_asleep_40() -> list[Observation]:
    """The same sleeper on a 40-px face (bench/asleep_views.py's hardest view)."""
    frames = read_frames(EYES_SHUT)
    shut = frames[round(5.2 * FPS):round(8.8 * FPS)]
    return observe_frames(shut + shut[::-1] + shut, frames[0], FPS, night=True, keep_fps=15.0, face_px=40.0)


def faces_between(obs: list[Observation], t0: float, t1: float) -> list[FaceState]:
    faces = [o.primary for o in obs if t0 <= o.t <= t1]
    assert faces and all(f is not None for f in faces), "the dashcam view lost the face"
    return faces  # type: ignore[return-value]


def test_the_crop_contract_is_in_the_manifest_and_cuts_upright_mirrored_eyes(shut_obs):
    manifest = json.loads(EYE_MODEL.with_suffix(".json").read_text())
    assert manifest["crop"]["align"] == "eye_corners" and manifest["labels"] == ["closed", "open", "unreadable"]
    assert manifest["trust"]["turned_max_yaw_deg"] > manifest["trust"]["max_yaw_deg"]
    face = shut_obs[20].primary
    frame = read_frames(EYES_SHUT)[20]
    eyes = cut_eyes(frame, corners_from_mesh(face.mesh), 24)
    assert eyes.shape == (2, 24, 24) and eyes.dtype == np.uint8
    # the second eye is mirrored: the two patches of a frontal face look alike, not like mirror images
    same = np.abs(eyes[0].astype(int) - eyes[1].astype(int)).mean()
    crossed = np.abs(eyes[0].astype(int) - eyes[1, :, ::-1].astype(int)).mean()
    assert same < crossed
    # rolled 30 degrees, the corners roll with it: the patch stays upright (nearly the same pixels)
    h, w = frame.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 30, 1.0)
    rolled = cv2.warpAffine(frame, m, (w, h))
    corners = corners_from_mesh(face.mesh) @ m[:, :2].T + m[:, 2]
    again = cut_eyes(rolled, corners.astype(np.float32), 24)
    assert np.abs(again.astype(int) - eyes.astype(int)).mean() < 12
    # corners from YuNet's eye centres land within a fifth of an eye width of the mesh's
    est = corners_from_centres(face.landmarks[:2])
    assert np.abs(eye_widths_px(est) - eye_widths_px(corners_from_mesh(face.mesh))).max() < 0.2 * eye_widths_px(est).mean()


def test_eyes_shut_on_a_dashcam_face_50_px_turned_35_degrees_are_a_closure(dashcam_shut):
    shut = faces_between(dashcam_shut, 5.3, 8.7)
    assert 38 <= np.median([f.box[2] for f in shut]) <= 65  # the face as small as the dashcam's
    judge = EyeJudge(look_down_deg=20.0)
    readings = [judge.update(f, f.signal("head_pose"), 0.0, i / FPS) for i, f in enumerate(shut)]
    closed = sum(bool(r.closed) for r in readings)
    assert closed >= 0.8 * len(readings) and sum(r.state == "open" for r in readings) == 0
    d = Drive().play([o.primary for o in dashcam_shut])
    assert [lv for _, lv in d.levels("driver_fatigue")][-1] in ("sleep", "unresponsive")
    assert d.starts("driver_distraction") == []


def test_open_eyes_in_the_dashcam_view_are_not_a_closure(dashcam_shut):
    awake = faces_between(dashcam_shut, 0.2, 1.8) + faces_between(dashcam_shut, 2.5, 4.3)
    judge = EyeJudge(look_down_deg=20.0)
    readings = [judge.update(f, f.signal("head_pose"), 0.0, i / FPS) for i, f in enumerate(awake)]
    # measured: 8 of 70 frames (11 %), scattered single frames where the contour reads a 50-px
    # face's lids barely open and the model is sure of a closure; none lasts a microsleep
    assert sum(bool(r.closed) for r in readings) <= 0.15 * len(readings)


def test_a_doze_in_a_night_cabin_whose_head_sinks_and_is_lost_for_a_moment_is_one_closure(night_shut):
    """The night view's shut eyes (the contour reads a dim 50-px face's lids lowered at best), the
    head sinking 30 degrees over 1.5 s after the first second, the face lost for 1.2 s on the way
    down, then hanging: one closure from the first shut frame, sleep, never a look down."""
    awake = faces_between(night_shut, 0.2, 4.3)
    shut = faces_between(night_shut, 5.0, 9.0)
    sinking = [with_pose(f, pitch=-30.0 * min(1.0, max(0.0, i / FPS - 1.0) / 1.5)) for i, f in enumerate(shut)]
    lost = round(1.2 * FPS)
    d = Drive().play(awake).play(sinking[:30]).play([None] * lost).play(sinking[30:])
    start = len(awake) / FPS
    levels = d.levels("driver_fatigue")
    # measured: microsleep 1.0 s, sleep 3.0 s after the shut stretch began: the closure (0.95 s
    # old when the face was lost) goes on through the gap; before, it started again after it and
    # reached only a microsleep. (Until the frames the night contour reads barely open with the
    # model 0.6-0.85 sure of a closure were an ambiguous closure, not open eyes: microsleep 2.7 s,
    # sleep 3.5 s.)
    assert [lv for _, lv in levels] == ["microsleep", "sleep"]
    assert levels[1][0] - start <= 4.0
    assert d.starts("driver_distraction") == []


def test_a_driver_asleep_from_the_first_frame_in_a_night_dashcam_is_asleep(night_asleep):
    """The issue's sleeper, at night: eyes shut from the first frame on a 50-px face turned 35
    degrees, grey, dim and noisy. The eye model reads the lids 0.6-0.99 closed while the contour
    reads some of them barely open (0.14-0.18 eye widths, against the 0.22 prior: the driver's
    eyes were never seen open); those frames are an ambiguous closure, not open eyes. Measured:
    3 of 159 frames open, one closure of 7 s; microsleep 1.2 s, sleep 6.2 s, unresponsive 9.3 s.
    Before: 10 open frames, closures of at most 3.3 s, never unresponsive."""
    faces = [o.primary for o in night_asleep if o.primary is not None]
    assert len(faces) >= 0.9 * len(night_asleep)
    assert 38 <= np.median([f.box[2] for f in faces]) <= 65
    judge = EyeJudge(look_down_deg=20.0)
    readings = [judge.update(f, f.signal("head_pose"), 0.0, i / 15.0) for i, f in enumerate(faces)]
    assert sum(r.state == "open" for r in readings) <= 0.03 * len(readings)
    d = Drive(15.0).play([o.primary for o in night_asleep])
    levels = d.levels("driver_fatigue")
    assert [lv for _, lv in levels] == ["microsleep", "sleep", "unresponsive"] and levels[1][0] <= 8.0
    assert d.starts("driver_distraction") == []


def test_a_sleeper_whose_small_dim_eyes_are_misread_open_for_a_few_frames_is_asleep(night_asleep_40):
    """A 40-px night dashcam face: the cues misread the shut lids open on runs of 1-4 frames every
    second or two (the model 0.5-0.9 closed, the contour 0.15-0.18 open), and each run restarted
    the closure: a microsleep at 2.0 s, never sleep. Inside a doze a reopening shorter than
    FLUTTER_S is a flutter. Measured: microsleep 2.0 s, sleep 3.9 s, unresponsive 6.9 s."""
    faces = [o.primary for o in night_asleep_40 if o.primary is not None]
    assert len(faces) >= 0.9 * len(night_asleep_40) and np.median([f.box[2] for f in faces]) <= 48
    judge = EyeJudge(look_down_deg=20.0)
    states = [judge.update(f, f.signal("head_pose"), 0.0, i / 15.0).state for i, f in enumerate(faces)]
    assert 0.04 <= states.count("open") / len(states) <= 0.2  # the misreads this is about
    d = Drive(15.0).play([o.primary for o in night_asleep_40])
    levels = d.levels("driver_fatigue")
    assert [lv for _, lv in levels] == ["microsleep", "sleep", "unresponsive"] and levels[1][0] <= 5.0
    assert d.starts("driver_distraction") == []


def test_a_flutter_inside_a_doze_does_not_end_it_but_a_reopening_does_and_a_long_blink_stays_one(shut_obs):
    """Real open and shut faces (the desk clip as filmed, 20 frames/s) in three orders."""
    open_ = faces_between(shut_obs, 0.2, 1.8)
    shut = faces_between(shut_obs, 5.3, 8.7)
    # shut 2 s, open 3 frames (0.15 s), shut 2 s: one closure, sleep 3 s after it began
    d = Drive().play(open_).hold(2.0, shut).play(open_[:3]).hold(2.0, shut).play(open_)
    levels = d.levels("driver_fatigue")
    start = len(open_) / FPS
    assert [lv for _, lv in levels] == ["microsleep", "sleep"] and abs(levels[1][0] - start - 3.0) <= 0.15
    # shut 2 s, open 0.5 s, shut 2 s: the driver woke; two closures of 2 s, microsleeps, no sleep
    d = Drive().play(open_).hold(2.0, shut).hold(0.5, open_).hold(2.0, shut).play(open_)
    assert [lv for _, lv in d.levels("driver_fatigue")] == ["microsleep"]
    # a long blink (0.8 s) then open eyes: the flutter wait adds nothing to it (no microsleep)
    d = Drive().play(open_).hold(0.8, shut).play(open_).play(open_)
    assert d.levels("driver_fatigue") == []


def dark_glasses(frame: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """The frame with dark lenses over both eyes (each 1.9 eye widths wide, a grey highlight as
    a lens reflects the window, a bridge between them), placed by the face's own mesh corners."""
    out = frame.copy()
    corners = corners_from_mesh(mesh).astype(np.float64)
    for a, b in corners:
        mid, w = (a + b) / 2, float(np.linalg.norm(b - a))
        angle = float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))
        cv2.ellipse(out, (int(mid[0]), int(mid[1])), (int(0.95 * w), int(0.7 * w)), angle, 0, 360, (25, 22, 20), -1, cv2.LINE_AA)
        cv2.ellipse(out, (int(mid[0] - 0.3 * w), int(mid[1] - 0.25 * w)), (int(0.25 * w), int(0.1 * w)), angle - 20, 0, 360,
                    (120, 120, 120), -1, cv2.LINE_AA)
    left, right = corners[0].mean(axis=0), corners[1].mean(axis=0)
    cv2.line(out, tuple(int(v) for v in left), tuple(int(v) for v in right), (25, 22, 20),
             max(2, int(0.1 * np.linalg.norm(right - left))))
    return out


@pytest.fixture(scope="module")
def glasses_obs(shut_obs) -> list[Observation]:
    """eyes_shut_desk (open 0-4.5 s, shut 5.0-9.0 s) with dark glasses on every frame, through
    config.yaml's pipeline."""
    frames = read_frames(EYES_SHUT)
    pipe = Pipeline.from_config(load_config(REPO / "config.yaml"))
    out = []
    for i, (f, seen) in enumerate(zip(frames, shut_obs)):
        face = seen.primary
        image = f if face is None or face.mesh is None else dark_glasses(f, face.mesh)
        out.append(pipe.process(Frame(image, i, i / FPS, 1e9 + i / FPS)))
    return out


def test_eyes_behind_dark_glasses_for_6_s_start_degraded_monitoring_and_never_a_closure(glasses_obs, shut_obs):
    """Real frames whose eyes cannot be read: the eye model calls them unreadable, and the eyelid
    contour, which would draw an open eye on a dark lens (MediaPipe Iris reads 0.18-0.20 of an
    eye width there, the bare eyes' open aperture), is not believed. Measured: degraded at 5.15 s."""
    faces = [o.primary for o in glasses_obs if o.primary is not None]
    assert len(faces) >= 0.95 * len(glasses_obs)  # the face is there all along
    assert all(f.signal("eye_closed") is None and f.signal("gaze") is None for f in faces[5:])
    assert all(f.signal("head_pose") is not None for f in faces[5:])
    d = Drive().play([o.primary for o in glasses_obs])
    ((t, level),) = d.starts("driver_monitoring_degraded")
    assert 5.0 <= t <= 5.6 and level == "degraded"
    assert d.starts("driver_fatigue") == [] and d.starts("driver_distraction") == []
    # the bare clip's eyes are read: shut from 5.0 s, not degraded
    bare = Drive().play([o.primary for o in shut_obs])
    assert bare.starts("driver_monitoring_degraded") == [] and bare.starts("driver_fatigue")


def test_a_blind_monitor_stays_degraded_while_its_unreadable_face_is_lost_for_a_moment(glasses_obs, shut_obs):
    """The dark glasses' real frames until degraded, then the face lost for 3.4 s (as the night
    dashcam car clip loses its unreadable face mid-alert), then the glasses again: one alert, not
    an end ("no face") and a new start 5 s later. Lost for 5 s it ends, "no face" (an empty seat
    is driver_absent's). A readable face lost for 3.4 s starts nothing."""
    faces = [o.primary for o in glasses_obs if o.primary is not None]
    d = Drive().hold(6.0, faces).hold(3.4, [None]).hold(6.0, faces)
    assert [lv for _, lv in d.starts("driver_monitoring_degraded")] == ["degraded"]
    assert not [e for _, e in d.seen if e.type == "driver_monitoring_degraded" and e.phase == "end"]
    d.hold(5.2, [None])
    ((t, end),) = [(t, e) for t, e in d.seen if e.type == "driver_monitoring_degraded" and e.phase == "end"]
    assert end.details["reason"] == "no face" and 15.4 + 4.9 <= t <= 15.4 + 5.1
    readable = at(shut_obs, 0.2, 4.3, FPS)
    assert Drive().hold(4.0, readable).hold(3.4, [None]).hold(4.0, readable).starts("driver_monitoring_degraded") == []


def test_eyes_the_cues_cannot_decide_for_6_s_start_degraded_monitoring(shut_obs):
    """Both signals answer, neither says anything the judge can use: the eye model unsure (0.5)
    and the contour gone (no gaze reading). The first degraded rule counted that as readable."""
    unsure = [FaceState(f.track_id, f.box, f.probs, f.label, f.confidence, True, f.landmarks,
                        {**{k: v for k, v in f.signals.items() if k != "gaze"}, "eye_closed": 0.5, "gaze": None})
              for f in at(shut_obs, 0.2, 4.3, FPS)]
    d = Drive().hold(7.0, unsure)
    ((t, level),) = d.starts("driver_monitoring_degraded")
    assert 5.0 <= t <= 5.3 and level == "degraded"
    # readable again (the same real frames as measured): no alert
    assert Drive().hold(7.0, at(shut_obs, 0.2, 4.3, FPS)).starts("driver_monitoring_degraded") == []


def test_a_yawn_with_the_head_tipped_back_is_neither_a_distraction_nor_a_microsleep(shut_obs):
    """The desk clip's open eyes (calibration), then a 4 s yawn: the mouth held wide (the yawn
    clip's 0.6) with the head tipped 35 degrees back and the eyes squeezed shut after the first
    0.8 s (the desk clip's real shut eyes). The same tipped-back head with the mouth closed is
    read as a look up (the test can fail)."""
    awake = at(shut_obs, 0.2, 4.3, FPS)
    opening = [with_mouth(with_pose(f, pitch=35.0), 0.6) for f in at(shut_obs, 2.5, 3.3, FPS)]
    squeeze = [with_mouth(with_pose(f, pitch=35.0), 0.6) for f in at(shut_obs, 5.0, 8.2, FPS)]
    d = Drive().play(awake).play(opening).play(squeeze).play(awake[:40])
    assert d.starts("driver_distraction") == []
    assert d.starts("driver_fatigue") == []
    from daemon.rules.head import HeadTracker, HeadZoneConfig

    tracker = HeadTracker(HeadZoneConfig())
    up = [with_mouth(with_pose(f, pitch=35.0), 0.05) for f in at(shut_obs, 0.2, 4.3, FPS)]
    zones = []
    for i, f in enumerate(awake + up):
        reading = tracker.update(Observation(i / FPS, 1e9, [f]))
        zones.append(None if reading is None else reading.zone)
    assert zones[len(awake):].count("up") >= 0.7 * len(up)
    tracker = HeadTracker(HeadZoneConfig())
    zones = []
    for i, f in enumerate(awake + opening + squeeze):
        reading = tracker.update(Observation(i / FPS, 1e9, [f]))
        zones.append(None if reading is None else reading.zone)
    assert zones[len(awake):].count("up") == 0


def test_the_yawn_clips_real_mouth_is_wide_enough_for_the_gate(yawn_obs):
    mars = [o.primary.signal("head_pose")["mar"] for o in yawn_obs[60:100] if o.primary is not None]
    assert max(mars) >= 0.55 and np.mean(mars) >= 0.5


CAR = "drivers/car_phone_in_lap_1920x1080.mp4"


def _car_config(**detector):
    cfg = load_config(REPO / "config.yaml")
    return cfg.model_copy(update={"detector": cfg.detector.model_copy(update=detector)}) if detector else cfg


def test_a_dim_noisy_driver_the_plain_scan_misses_is_found_by_the_finer_one_while_no_face_is_tracked():
    """The 1080p car clip as a night cabin camera sees it (grey, 35 % bright, noisy: the suite's
    ``--variant night``, a new noise pattern on each frame): the driver's 120-px face is 20 px in
    the 320-wide copy, where YuNet finds it on a few frames only; the finer scan (search_width
    640), which the pipeline runs while no face is tracked, finds it on nearly every one."""
    from converter.views import View, look
    from daemon.vision.detectors import make_detector

    frames = [look(f, View(night=True, seed=k)) for k, f in enumerate(read_frames(CAR, limit=30, step=10))]  # 0-10 s: eyes ahead
    det = make_detector(_car_config().detector)
    plain = sum(bool(det.detect(f)) for f in frames)
    fine = [det.detect_search(f) for f in frames]
    assert plain <= 0.3 * len(frames), plain  # measured: 3-5 of 30 over five noise draws
    assert sum(bool(d) for d in fine) >= 0.9 * len(frames)  # measured: 30 of 30
    x, y, w, h = max(next(d for d in fine if d), key=lambda d: d.score).box
    assert 90 <= w <= 200 and 450 <= x <= 800, (x, y, w, h)  # the driver (as filmed: ~120 px at x ~ 540)
    # The pipeline: the driver is followed within half a second, not after 7.7 s as before.
    pipe = Pipeline.from_config(_car_config())
    firsts = [look(f, View(night=True, seed=100 + i)) for i, f in enumerate(read_frames(CAR, limit=20))]
    obs = [pipe.process(Frame(f, i, i / 30.0, 1e9 + i / 30.0)) for i, f in enumerate(firsts)]
    assert [o.primary is not None for o in obs[15:]] == [True] * 5, [o.primary is not None for o in obs]


def test_the_eye_model_is_not_trusted_where_the_mesh_lost_a_turned_tilted_face():
    """The car's driver, seen at ~45 degrees and the picture tilted 20 degrees (the suite's
    ``--variant tilt``): FaceMesh loses his face for 0.6 s (1.47-2.07 s) and the eye model, cut
    by YuNet's points on a face that far turned, reads his open eyes 0.85-0.99 closed. Trusted
    as if head_pose were off, that made a microsleep at 2.5 s; a pose the mesh could not read is
    unknown, so the eyes are too."""
    frames = read_frames(CAR, limit=84)
    h, w = frames[0].shape[:2]
    tilt = cv2.getRotationMatrix2D((w / 2, h / 2), 20.0, 1.0)
    cfg = _car_config()
    pipe = Pipeline.from_config(cfg)
    from daemon.rules import RulesEngine

    rules = RulesEngine(cfg.rules, pipe.labels, cfg.zones)
    events, lost = [], 0
    for i, f in enumerate(frames):
        obs = pipe.process(Frame(cv2.warpAffine(f, tilt, (w, h), borderMode=cv2.BORDER_REPLICATE), i, i / 30.0, 1e9 + i / 30.0))
        events += rules.step(obs)
        face = obs.primary
        if face is not None and "head_pose" in face.signals and face.signal("head_pose") is None and face.box[2] >= 48:
            lost += 1
            assert face.signal("eye_closed") is None, (i, face.signal("eye_closed"))
    assert lost >= 5  # the frames this test is about happened
    assert not [e for e in events if e.type == "driver_fatigue"], events
