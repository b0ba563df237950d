"""Retail and driver profiles: many small faces at 1080p with stable ids, zones, visitor figures,
YuNet shipped in models/, and the driver's seat zone picking the primary face."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest
import yaml
from conftest import REPO, STREET, TALKING_HEAD, read_frames, shared_file
from daemon_helpers import run_cli

from daemon import schemas
from daemon.config import ConfigError, load_config
from daemon.publish.payloads import event_payload
from daemon.rules import RulesEngine
from daemon.rules.visitors import VisitorsConfig
from daemon.stats import rss_mb
from daemon.types import Detection, FaceState, Frame, Observation
from daemon.vision.annotate import ZONE_BGR, Overlay, draw
from daemon.vision.detectors import DetectorError, YunetConfig, make_detector
from daemon.vision.pipeline import Pipeline, sharpness
from daemon.vision.tracking import Tracker
from daemon.vision.zones import ZoneConfig

RETAIL = REPO / "profiles" / "retail.yaml"
DRIVER = REPO / "profiles" / "driver.yaml"
YUNET_SHIPPED = REPO / "models" / "face_detection_yunet_2023mar.onnx"
# People who show a face in the street clip at some point, counted by eye on frames 0, 26, 52,
# 78 and 104 at full size (docs/benchmarks/history.md says how): track ids must stay within 1.5x this.
STREET_PEOPLE = 12
LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


@pytest.fixture(scope="module")
def street_run():
    """The retail profile over the whole street clip: (observations, pipeline)."""
    frames = read_frames(STREET)
    pipe = Pipeline.from_config(load_config(RETAIL))
    observations = [pipe.process(Frame(f, i, i / 25.0, 1e9 + i / 25.0)) for i, f in enumerate(frames)]
    return observations, pipe


def test_profiles_validate_and_are_documented():
    page = (REPO / "docs" / "configure" / "profiles.md").read_text()
    for path in (RETAIL, DRIVER):
        cfg = load_config(path)
        assert f"profiles/{path.name}" in page
        assert cfg.classifier.model.is_file() and cfg.classifier.model.is_relative_to(REPO / "models")
    retail = load_config(RETAIL)
    assert retail.detector.type == "yunet" and retail.detector.model == YUNET_SHIPPED
    assert retail.tracker.primary is False and {r.type for r in retail.rules} >= {"visitors", "emotion_summary"}
    driver = load_config(DRIVER)
    assert driver.tracker.primary_zone == "seat" and "seat" in driver.zones


def test_retail_profile_finds_the_street_faces_with_few_ids(street_run):
    observations, pipe = street_run
    per_frame = [len(o.faces) for o in observations]
    assert np.mean(per_frame) >= 6.0, per_frame
    ids = {f.track_id for o in observations for f in o.faces}
    assert len(ids) <= 1.5 * STREET_PEOPLE, sorted(ids)
    assert all(o.primary is None for o in observations)  # no face is special in a shop
    classified = [f for o in observations[30:] for f in o.faces if f.probs is not None]
    assert len(classified) >= 0.8 * sum(per_frame[30:])  # rate-limited, yet nearly every face has an emotion
    assert all(f.label in pipe.labels and 0.0 < f.confidence <= 1.0 for f in classified)


def test_classification_is_rate_limited_and_spread_over_frames():
    cfg = load_config(RETAIL)
    pipe = Pipeline.from_config(cfg)
    calls: list[int] = []
    real = pipe.model.classify
    pipe.model.classify = lambda image, boxes, rolls=None, points=None: (calls.append(len(boxes)), real(image, boxes, rolls, points))[1]
    frames = read_frames(STREET)
    per_track: dict[int, list[float]] = {}
    faces = 0
    for i, f in enumerate(frames):
        t = i / 25.0
        faces += len(pipe.process(Frame(f, i, t, 0.0)).faces)
        for tid, last in pipe.schedule._last.items():
            if last == t:
                per_track.setdefault(tid, []).append(t)
    assert max(calls) <= cfg.pipeline.classify_per_frame  # never a frame that pays for every face
    assert sum(calls) < 0.2 * faces  # far fewer classifications than faces x frames
    gaps = [b - a for times in per_track.values() for a, b in zip(times, times[1:])]
    assert len(gaps) >= 20 and min(gaps) >= 1.0 / cfg.classifier.max_rate_hz - 1e-3  # each face at most max_rate_hz


def test_small_and_blurred_faces_are_counted_not_classified():
    frame = read_frames(TALKING_HEAD, limit=1)[0]
    cfg = load_config(REPO / "config.yaml")
    for opts, reason in (({"min_face_px": 1000}, "small"), ({"min_sharpness": 1e6}, "blurry")):
        c = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update=opts),
                                   "tracker": cfg.tracker.model_copy(update={"confirm_hits": 1})})
        pipe = Pipeline.from_config(c)
        obs = [pipe.process(Frame(frame, i, i / 25.0, 0.0)) for i in range(3)]
        assert obs[-1].faces and all(f.probs is None and f.label is None for o in obs for f in o.faces)
        assert pipe.stats.faces_skipped[reason] >= 1
    # The retail profile's threshold passes a sharp face and stops the same face blurred.
    x, y, w, h = next(f.box for o in obs for f in o.faces)
    grey = cv2.cvtColor(frame[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY)
    limit = load_config(RETAIL).pipeline.min_sharpness
    assert sharpness(grey) > 10 * limit and sharpness(cv2.GaussianBlur(grey, (0, 0), 8)) < limit


def test_yunet_ships_and_is_the_default_yunet_model(tmp_path):
    tracked = subprocess.run(["git", "ls-files", "models"], cwd=REPO, capture_output=True, text=True).stdout.split()
    if tracked:  # a git checkout: the model, its license and card are committed, not fetched
        assert {"models/face_detection_yunet_2023mar.onnx", "models/LICENSE.yunet-libfacedetection.train.txt",
                "models/YUNET_CARD.md"} <= set(tracked)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"detector": {"type": "yunet"}}))
    cfg = load_config(config)
    assert cfg.detector.model.name == YUNET_SHIPPED.name
    detector = make_detector(YunetConfig(model=YUNET_SHIPPED))
    faces = detector.detect(read_frames(TALKING_HEAD, limit=1)[0])
    assert len(faces) == 1 and faces[0].score > 0.8 and faces[0].landmarks.shape == (5, 2)


def test_a_missing_or_non_onnx_detector_model_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(DetectorError, match=f"not found: {missing}"):
        make_detector(YunetConfig(model=missing))
    not_onnx = REPO / "models" / "eye_state.tflite"
    with pytest.raises(DetectorError, match=f"not an ONNX file: {not_onnx}"):
        make_detector(YunetConfig(model=not_onnx))
    garbage = tmp_path / "broken.onnx"
    garbage.write_bytes(b"\x08" + b"\x00" * 100)
    with pytest.raises(DetectorError, match=str(garbage)):
        make_detector(YunetConfig(model=garbage))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"detector": {"type": "yunet", "model": str(not_onnx)},
                                      "source": {"uri": str(shared_file(TALKING_HEAD))},
                                      "classifier": {"model": str(REPO / "models" / "emotion_wild.tflite")},
                                      "eyes": {"enabled": False}, "head_pose": {"enabled": False}}))
    res = run_cli("run", "--config", str(config), timeout=60)
    assert res.returncode == 78 and "not an ONNX file" in res.stderr


@pytest.mark.parametrize("polygon, where, message", [
    ([[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]], "zones.entrance.polygon", "intersects itself"),
    ([[0.1, 0.1], [1.2, 0.1], [0.5, 0.8]], "zones.entrance.polygon[1][0]", "less than or equal to 1"),
    ([[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]], "zones.entrance.polygon", "no area"),
])
def test_bad_zones_stop_with_exit_78_and_the_key_path(tmp_path, polygon, where, message):
    config = tmp_path / "retail.yaml"
    raw = yaml.safe_load(RETAIL.read_text())
    raw["zones"]["entrance"]["polygon"] = polygon
    raw["detector"]["model"] = str(YUNET_SHIPPED)
    raw["classifier"]["model"] = str(REPO / "models" / "emotion_wild.tflite")
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert where in str(err.value) and message in str(err.value)
    res = run_cli("run", "--config", str(config), timeout=30)
    assert res.returncode == 78 and where in res.stderr


def test_a_zone_name_that_is_not_defined_is_a_config_error(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"tracker": {"primary_zone": "seat"}, "rules": [{"type": "visitors", "zones": ["door"]}]}))
    with pytest.raises(ConfigError, match="tracker.primary_zone: zone 'seat' is not defined"):
        load_config(config)


def test_zone_geometry():
    square = ZoneConfig(polygon=[(0.2, 0.2), (0.6, 0.2), (0.6, 0.6), (0.2, 0.6)])
    assert square.contains(0.4, 0.4) and not square.contains(0.7, 0.4) and square.contains(0.2, 0.4)
    concave = ZoneConfig(polygon=[(0, 0), (1, 0), (1, 1), (0.5, 0.3), (0, 1)])
    assert concave.contains(0.5, 0.1) and not concave.contains(0.5, 0.8)


def face(tid: int, box, probs=None) -> FaceState:
    p = None if probs is None else np.asarray(probs, np.float32)
    label = None if p is None else LABELS[int(np.argmax(p))]
    return FaceState(tid, box, p, label, 0.0 if p is None else float(p.max()))


def onehot(label: str, weight: float = 0.9) -> list[float]:
    p = [(1 - weight) / 6] * 7
    p[LABELS.index(label)] = weight
    return p


def test_visitor_figures_from_a_synthetic_track_stream():
    """Three visitors over 25 s (one of them in the entrance zone, one never classified), at
    10 observations a second; one summary per 20-s period, each visitor counted once."""
    zones = {"entrance": ZoneConfig(polygon=[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)])}
    rule = VisitorsConfig(period_s=20.0, gone_s=1.0, dwell_buckets_s=[5.0, 10.0])
    engine = RulesEngine([rule], LABELS, zones)
    events = []
    for step in range(250):
        t = step / 10.0
        faces = []
        if t < 4.0:  # visitor 1: 4 s, happy most of the time (one sad moment), in the entrance
            faces.append(face(1, (100, 100, 40, 40), onehot("sad" if 1.0 <= t < 1.5 else "happy")))
        if 2.0 <= t < 14.0:  # visitor 2: 12 s on the right, angry
            faces.append(face(2, (1500, 100, 40, 40), onehot("angry")))
        if 15.0 <= t < 18.0:  # visitor 3: too small to classify, walks from the right into the entrance
            faces.append(face(3, (1500 - int(400 * (t - 15.0)), 300, 20, 20)))
        events += engine.step(Observation(t, 1.8e9 + t, faces, LABELS, (1080, 1920)))
    events += engine.close(25.0, 1.8e9 + 25.0)
    assert [e.type for e in events] == ["visitors", "visitors"]
    first, last = events[0].details, events[1].details
    assert first["visitors"] == 3 and first["present"] == 0 and not first["partial"]
    assert first["emotions"]["happy"] == 1 and first["emotions"]["angry"] == 1 and first["emotions"]["unknown"] == 1
    assert sum(first["emotions"].values()) == 3  # one vote per visitor, not per frame
    assert first["dwell_s"]["max"] == pytest.approx(11.9, abs=0.11)
    assert [b["count"] for b in first["dwell_histogram"]] == [2, 0, 1] and first["dwell_histogram"][-1]["le"] is None
    entrance = first["zones"]["entrance"]
    assert entrance["visitors"] == 2 and entrance["emotions"]["happy"] == 1 and entrance["emotions"]["unknown"] == 1
    assert entrance["dwell_s"]["max"] == pytest.approx(3.9, abs=0.11)
    assert last["visitors"] == 0 and last["partial"] and last["period_s"] == pytest.approx(5.0)
    validate = schemas.validator("event")
    for e in events:
        validate.validate(event_payload(e, "shop-1"))
    bad = event_payload(events[0], "shop-1")
    bad["details"]["visitors"] = -1
    assert not validate.is_valid(bad)


def test_the_preview_overlay_draws_zones_and_figures():
    image = np.full((360, 640, 3), 40, np.uint8)
    zones = {"door": ZoneConfig(polygon=[(0.5, 0.5), (0.9, 0.5), (0.9, 0.9), (0.5, 0.9)])}
    out = draw(image, Observation(0.0, 0.0, [], LABELS, (360, 640)), overlay=Overlay(zones, ["visitors 3 left, 1 here"]))
    edge = out[int(0.7 * 359), int(0.9 * 639) - 1 : int(0.9 * 639) + 2]
    assert any((px == ZONE_BGR).all() for px in edge)
    assert (out[:20, :100] == 255).any()  # the figures' panel, top left
    assert (out[200:300, 200:300] == 40).all()  # nothing else drawn


def test_driver_profile_primary_face_is_in_the_seat_zone():
    cfg = load_config(DRIVER)
    tracker = Tracker(cfg.tracker.model_copy(update={"confirm_hits": 1}), cfg.zones)
    driver = Detection((300, 100, 110, 110))  # centre x 0.55: the seat zone of a left-hand-drive car
    passenger = Detection((20, 80, 160, 160))  # nearer the camera (larger), in the left third
    tracker.update([driver, passenger], 0.0, (360, 640))
    assert tracker.primary.box == driver.box
    rhd = cfg.zones["seat"].model_copy(update={"polygon": [(1 - x, y) for x, y in cfg.zones["seat"].polygon]})
    mirrored = Tracker(cfg.tracker.model_copy(update={"confirm_hits": 1}), {"seat": rhd})
    mirrored.update([Detection((640 - 410, 100, 110, 110)), Detection((640 - 180, 80, 160, 160))], 0.0, (360, 640))
    assert mirrored.primary.box == (640 - 410, 100, 110, 110)


def test_driver_profile_runs_the_talking_head_as_before():
    frames = read_frames(TALKING_HEAD, limit=60)
    pipe = Pipeline.from_config(load_config(DRIVER))
    obs = [pipe.process(Frame(f, i, i / 25.0, 0.0)) for i, f in enumerate(frames)]
    assert sum(o.primary is not None for o in obs) >= 0.9 * len(obs)
    assert {f.track_id for o in obs for f in o.faces} == {1}


def test_a_4k_frame_is_downscaled_with_no_memory_growth():
    frame = cv2.resize(read_frames(STREET, limit=1)[0], (3840, 2160), interpolation=cv2.INTER_LINEAR)
    pipe = Pipeline.from_config(load_config(RETAIL))
    for i in range(10):
        pipe.process(Frame(frame, i, i / 25.0, 0.0))
    before = rss_mb()[0]
    faces = [len(pipe.process(Frame(frame, i, i / 25.0, 0.0)).faces) for i in range(10, 40)]
    assert max(faces) >= 4
    assert rss_mb()[0] - before < 15.0  # steady state: buffers reused, nothing kept per frame


def test_retail_visitors_on_the_street_clip(street_run):
    observations, pipe = street_run
    engine = RulesEngine(load_config(RETAIL).rules, pipe.labels, load_config(RETAIL).zones)
    for o in observations:
        engine.step(o)
    events = engine.close(observations[-1].t + 5.0, observations[-1].t_wall + 5.0)
    visitors = next(e for e in events if e.type == "visitors").details
    assert 6 <= visitors["visitors"] <= 1.5 * STREET_PEOPLE
    assert sum(visitors["emotions"].values()) == visitors["visitors"]
    assert visitors["zones"]["floor"]["visitors"] >= 6


def test_missing_profile_path_is_named(tmp_path):
    res = run_cli("run", "--config", str(tmp_path / "nope.yaml"), timeout=30)
    assert res.returncode == 78 and str(tmp_path / "nope.yaml") in res.stderr

