"""Face detectors on real video: one face per talking-head frame, several in the street clip,
boxes where the face is, and clear errors for missing model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import STREET, TALKING_HEAD, YUNET, read_frames, shared_file
from pydantic import TypeAdapter, ValidationError

from daemon.vision.detectors import DetectorConfig, DetectorError, HaarConfig, YunetConfig, make_detector
from daemon.vision.tracking import iou_matrix


@pytest.fixture(scope="module")
def talking_head() -> list[np.ndarray]:
    return read_frames(TALKING_HEAD, step=5)  # 45 frames across the clip


@pytest.fixture(scope="module")
def yunet_path() -> Path:
    return shared_file(YUNET)


def iou(a, b) -> float:
    return float(iou_matrix(np.array([a], float), np.array([b], float))[0, 0])


def assert_plausible_face(box, frame_shape):
    """The speaker's face: upper-middle of a 640x360 frame, a fifth to a half of its height."""
    fh, fw = frame_shape[:2]
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    assert 0.3 * fw < cx < 0.7 * fw and cy < 0.6 * fh, box
    assert 0.2 * fh < h < 0.6 * fh and 0.6 < w / h < 1.4, box


def test_config_type_selects_the_plugin(yunet_path):
    adapter = TypeAdapter(DetectorConfig)
    assert isinstance(adapter.validate_python({"type": "haar"}), HaarConfig)
    cfg = adapter.validate_python({"type": "yunet", "model": str(yunet_path), "every_n": 2})
    assert isinstance(cfg, YunetConfig) and cfg.every_n == 2 and cfg.model == yunet_path
    with pytest.raises(ValidationError, match="scale_factr"):
        adapter.validate_python({"type": "haar", "scale_factr": 1.2})
    with pytest.raises(ValidationError, match="mtcnn"):
        adapter.validate_python({"type": "mtcnn"})


def test_haar_finds_the_one_face_in_the_talking_head(talking_head):
    detector = make_detector(HaarConfig())
    results = [detector.detect(frame) for frame in talking_head]
    single = [dets[0] for dets in results if len(dets) == 1]
    assert len(single) >= 0.9 * len(talking_head)
    for det in single:
        assert_plausible_face(det.box, talking_head[0].shape)
        assert det.landmarks is None


def test_haar_downscaled_box_matches_the_full_frame_box(talking_head):
    small, full = make_detector(HaarConfig()), make_detector(HaarConfig(downscale_width=0))
    for frame in talking_head[::9]:
        a, b = small.detect(frame), full.detect(frame)
        assert len(a) == len(b) == 1
        assert iou(a[0].box, b[0].box) > 0.7


def test_yunet_finds_the_face_with_landmarks_inside_it(talking_head, yunet_path):
    detector = make_detector(YunetConfig(model=yunet_path))
    results = [detector.detect(frame) for frame in talking_head]
    single = [dets[0] for dets in results if len(dets) == 1]
    assert len(single) >= 0.9 * len(talking_head)
    haar = make_detector(HaarConfig())
    for frame, dets in zip(talking_head, results):
        if len(dets) != 1:
            continue
        det = dets[0]
        assert_plausible_face(det.box, frame.shape)
        assert det.score > 0.6
        pts = det.landmarks
        assert pts.shape == (5, 2) and pts.dtype == np.float32
        x, y, w, h = det.box
        assert np.all((pts[:, 0] >= x) & (pts[:, 0] <= x + w) & (pts[:, 1] >= y) & (pts[:, 1] <= y + h))
        right_eye, left_eye, nose, mouth_r, mouth_l = pts
        assert right_eye[0] < left_eye[0] and mouth_r[0] < mouth_l[0]
        assert max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_r[1], mouth_l[1])
    both = [(d[0].box, haar.detect(f)) for f, d in zip(talking_head[::9], results[::9]) if len(d) == 1]
    assert all(len(h) == 1 and iou(box, h[0].box) > 0.4 for box, h in both)


def test_street_clip_has_several_faces(yunet_path):
    frames = read_frames(STREET, step=25)
    yunet = make_detector(YunetConfig(model=yunet_path, downscale_width=960))
    counts = [len(yunet.detect(frame)) for frame in frames]
    assert min(counts) >= 4, counts  # the clip shows 4-8 faces per frame
    haar = make_detector(HaarConfig(downscale_width=960, min_size=0.02))
    haar_counts = [len(haar.detect(frame)) for frame in frames]
    assert max(haar_counts) >= 2, haar_counts  # Haar finds fewer small faces (reported, not a goal)


def test_missing_model_files_are_named(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(DetectorError, match=str(missing)):
        make_detector(YunetConfig(model=missing))
    with pytest.raises(DetectorError, match="cascade file not found.*nope.xml"):
        make_detector(HaarConfig(cascade=tmp_path / "nope.xml"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="broken.onnx"):
        make_detector(YunetConfig(model=broken))


@pytest.mark.parametrize("kind", ["haar", "yunet"])
def test_search_near_a_tracked_box_finds_the_face_the_full_scan_finds(talking_head, yunet_path, kind):
    """Detection frames between full scans search only around tracked faces (daemon.vision.pipeline)."""
    cfg = HaarConfig() if kind == "haar" else YunetConfig(model=yunet_path)
    detector = make_detector(cfg)
    full = [detector.detect(frame) for frame in talking_head]
    pairs = [(prev[0].box, frame, now[0]) for prev, frame, now in zip(full, talking_head[1:], full[1:])
             if len(prev) == 1 and len(now) == 1]
    assert len(pairs) >= 0.8 * len(talking_head)
    for prev_box, frame, truth in pairs:  # the previous sampled frame's box, 5 frames earlier
        near = detector.detect_near(frame, [prev_box])
        assert len(near) == 1 and iou(near[0].box, truth.box) > 0.6, (near, truth)
        assert (near[0].landmarks is None) == (kind == "haar")
        if kind == "yunet":
            x, y, w, h = near[0].box
            pts = near[0].landmarks
            assert np.all((pts[:, 0] >= x) & (pts[:, 0] <= x + w) & (pts[:, 1] >= y) & (pts[:, 1] <= y + h))
    # A box over the background finds nothing; two boxes on one face give it once.
    assert detector.detect_near(talking_head[0], [(10, 200, 60, 60)]) == []
    box = pairs[0][2].box
    assert len(detector.detect_near(pairs[0][1], [box, (box[0] + 5, box[1] + 5, box[2], box[3])])) == 1


def test_a_whole_frame_scan_split_in_parts_finds_what_the_whole_scan_finds(talking_head, yunet_path):
    """The pipeline spreads the scan for new faces over several frames (by face size for Haar)."""
    haar = make_detector(HaarConfig())
    for frame in talking_head[::9]:
        whole = haar.detect(frame)
        assert len(whole) == 1
        parts = [haar.detect_part(frame, k, 5) for k in range(5)]
        found = [d for part in parts for d in part]
        assert found and all(iou(d.box, whole[0].box) > 0.6 for d in found), (found, whole)
        assert sum(1 for part in parts if part) < 5  # small-face parts do not see a large face
        assert haar.detect_part(frame, 0, 1) == whole
    yunet = make_detector(YunetConfig(model=yunet_path))
    assert len(yunet.detect_part(talking_head[0], 0, 3)) == 1 and yunet.detect_part(talking_head[0], 1, 3) == []
