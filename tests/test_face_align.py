"""The face crop contract by five landmarks (issue 42): one function cuts faces for training and
for the daemon, the manifest names it, and the faces FER-2013 has few of (3-D turns,
near-infrared looks) are made from aligned faces."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import REPO, shared_file

YUNET = REPO / "models" / "face_detection_yunet_2023mar.onnx"
TEMPLATE = [[0.3107, 0.3723], [0.674, 0.3753], [0.4886, 0.5838], [0.3511, 0.7489], [0.6386, 0.7495]]


def _fer_face(i: int = 900) -> np.ndarray:
    from converter.datasets import load_split

    return load_split(shared_file("fer2013"), "test").image(i)


def test_the_similarity_is_the_least_squares_turn_scale_and_shift():
    from daemon.model.face_align import similarity

    p = np.array([[10, 12], [30, 11], [21, 20], [13, 31], [28, 30]], np.float64)
    a, s, t = np.radians(23.0), 1.7, np.array([5.0, -3.0])
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    m = similarity(p, p @ rot.T + t)
    assert m[:, :2] == pytest.approx(rot, abs=1e-9) and m[:, 2] == pytest.approx(t, abs=1e-9)
    with pytest.raises(ValueError, match="coincide"):
        similarity(np.ones((5, 2)), p)


def test_a_face_turned_and_scaled_in_the_frame_is_cut_to_the_same_patch():
    """A real face, pasted into a frame rolled by 25 degrees at 3.5x its size, cut by its
    (transformed) points, gives the patch the upright face gives: the crop undoes roll and scale."""
    from converter.align import Landmarker
    from daemon.model.face_align import aligned_face

    face = _fer_face()
    pts = Landmarker(YUNET)(face)
    assert pts is not None
    upright = aligned_face(face, pts, TEMPLATE, 48)
    m = cv2.getRotationMatrix2D((24.0, 24.0), 25.0, 3.5)
    m[:, 2] += (180.0, 120.0)
    frame = cv2.warpAffine(face, m, (520, 400), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    moved = np.hstack([pts, np.ones((5, 1))]) @ m.T
    rolled = aligned_face(frame, moved, TEMPLATE, 48)
    diff = np.abs(rolled.astype(float) - upright.astype(float))
    assert np.median(diff) < 6.0, np.median(diff)
    # the eyes land on the template: YuNet finds them there in the cut patch
    found = Landmarker(YUNET)(rolled)
    assert found is not None
    assert np.abs(found[:2] - np.array(TEMPLATE[:2]) * 48).max() < 3.0
    # a grey model's cut of a colour frame: turned grey before the shrink, the same face (rounding)
    bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    grey_first = aligned_face(bgr, moved, TEMPLATE, 48, gray=True)
    assert grey_first.ndim == 2
    after = cv2.cvtColor(aligned_face(bgr, moved, TEMPLATE, 48), cv2.COLOR_BGR2GRAY)
    assert np.abs(grey_first.astype(int) - after.astype(int)).max() <= 2


def test_a_square_past_the_image_is_filled_by_blur_not_by_a_mirror_image():
    from daemon.model.face_align import similarity, warp_filled

    img = np.zeros((48, 48), np.uint8)
    img[:, 24:] = 200  # a hard edge inside the image
    m = similarity(np.array([[0, 0], [10, 0], [5, 5], [0, 10], [10, 10]], float),
                   np.array([[20, 0], [30, 0], [25, 5], [20, 10], [30, 10]], float))  # shifted 20 px right
    out = warp_filled(img, m, 48)
    # columns 0..19 of the output lie left of the image: a mirror would repeat the dark half
    # then the edge; the fill is the blurred replicate of the dark edge: still dark, no edge
    assert out[:, :16].max() < 40
    assert out[:, 44:].min() > 150  # the inside is untouched
    plain = cv2.warpAffine(img, m, (48, 48), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    assert np.array_equal(out[:, 24:], plain[:, 24:])


def test_the_manifest_names_the_crop_and_refuses_a_five_point_crop_without_a_template(tmp_path):
    from daemon.model.manifest import Crop

    c = Crop(margin=0.1, align="five_points", template=TEMPLATE)
    assert c.template[2] == TEMPLATE[2]
    with pytest.raises(ValueError, match="needs crop.template"):
        Crop(align="five_points")
    with pytest.raises(ValueError, match="second eye"):
        Crop(align="five_points", template=[TEMPLATE[1], TEMPLATE[0], *TEMPLATE[2:]])


def test_the_preprocessor_cuts_by_the_points_and_counts_faces_it_must_cut_by_the_box():
    from daemon.model.face_align import aligned_face
    from daemon.model.manifest import Crop, InputSpec, Manifest, Normalize, Quantization
    from daemon.model.preprocess import Preprocessor

    man = Manifest(labels=list("abcdefg"), input=InputSpec(height=48, width=48, channels=1, color="gray",
                   normalize=Normalize(scale=1.0, offset=0.0)), crop=Crop(margin=0.1, align="five_points", template=TEMPLATE),
                   quantization=Quantization(type="float32"))
    pre = Preprocessor(man, np.float32)
    from converter.align import Landmarker

    face = _fer_face()
    pts = Landmarker(YUNET)(face) * 4.0  # the face's points in the 4x frame
    frame = cv2.cvtColor(cv2.resize(face, (192, 192), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
    batch = pre.prepare(frame, [(0, 0, 192, 192), (0, 0, 192, 192)], points=[pts, None])
    want = aligned_face(frame[:, :, 0], pts, TEMPLATE, 48).astype(np.float32)
    assert np.abs(batch[0, :, :, 0] - want).max() <= 1.0  # BGR -> grey after the cut: within rounding
    assert pre.unaligned == 1  # the face without points was cut by its box, and counted


def test_a_3d_turn_moves_the_nose_off_the_eyes_and_the_cut_keeps_the_eyes_on_the_template():
    from converter.align import Landmarker
    from converter.face_views import turn
    from daemon.model.face_align import aligned_face

    det = Landmarker(YUNET)
    face = _fer_face(1500)
    a = aligned_face(face, det(face), TEMPLATE, 48)
    noses = {}
    for yaw in (-30.0, 0.0, 30.0):
        t = turn(a, TEMPLATE, yaw)
        pts = det(t)
        assert pts is not None, yaw
        assert np.abs(pts[:2] - np.array(TEMPLATE[:2]) * 48).max() < 4.0, (yaw, pts[:2])
        noses[yaw] = pts[2, 0] - (pts[0, 0] + pts[1, 0]) / 2  # the nose against the eyes' midpoint
    assert np.array_equal(turn(a, TEMPLATE, 0.0), a) or np.abs(turn(a, TEMPLATE, 0.0).astype(int) - a).max() <= 1
    assert noses[30.0] - noses[0.0] > 1.5 and noses[0.0] - noses[-30.0] > 1.5, noses


def test_the_near_infrared_look_pales_the_skin_and_darkens_the_eyes():
    from converter.face_views import near_infrared

    rng = np.random.default_rng(3)
    a = np.full((48, 48), 110, np.uint8)
    n = near_infrared(a, TEMPLATE, rng)
    eye = (int(TEMPLATE[0][1] * 48), int(TEMPLATE[0][0] * 48))
    cheek = (int(0.62 * 48), int(0.2 * 48))
    assert n[cheek] > 140  # skin pale
    assert n[eye] < 0.75 * n[cheek]  # eyes dark


def test_the_peer_teaches_by_how_much_it_agrees_with_the_votes():
    from converter.distill import peer_shares

    votes = np.array([[1.0, 0, 0], [0.5, 0.5, 0], [0, 0, 1.0]], np.float32)
    peer = np.array([[0.9, 0.1, 0], [0.5, 0.5, 0], [1.0, 0, 0]], np.float32)  # the last: nobody voted that
    flat = peer_shares(votes, peer, 0.2, "none")
    assert flat[:, 0] == pytest.approx([0.2, 0.2, 0.2])
    w = peer_shares(votes, peer, 0.2, "agreement")[:, 0]
    assert w[2] == 0.0 and w[1] > w[0] * 0.99 and w[0] > 0.2  # mean overlap 0.63: agreeing faces get more
    assert w.max() <= 0.4


def test_landmarks_are_cached_by_the_images(tmp_path):
    from converter.align import split_landmarks
    from converter.datasets import load_ckplus

    ck = load_ckplus(shared_file("ckplus48"), ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"])
    few = ck.subset(np.arange(0, len(ck), 150))
    cache = tmp_path / "lm.npz"
    p = split_landmarks(few, YUNET, cache)
    assert p.shape == (len(few), 5, 2) and not np.isnan(p).any()  # CK+ faces: YuNet finds all at 4x
    with np.load(cache) as z:
        key = z["key"]
    np.savez_compressed(cache, points=np.zeros_like(p), key=key)
    assert not split_landmarks(few, YUNET, cache).any()  # same key: read
    assert split_landmarks(ck.subset(np.arange(1, len(ck), 150)), YUNET, cache).any()  # other images: again
    assert json.loads(str(key))["upscale"] == 4
