"""The LiteRT classifier on real faces: probabilities per face, manifest checks that name the
mismatch, delegate fallback, and no TensorFlow in the daemon's imports."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, TALKING_HEAD, YUNET, copy_model, fer_faces, read_frames, shared_file

from daemon.model.tflite import ClassifierConfig, ModelError, TfliteModel
from daemon.vision.detectors import YunetConfig, make_detector


@pytest.fixture(scope="module")
def frame_and_boxes():
    """A talking-head frame with its detected face, plus shifted copies: a batch of real crops."""
    frame = read_frames(TALKING_HEAD, limit=1)[0]
    (det,) = make_detector(YunetConfig(model=shared_file(YUNET))).detect(frame)
    x, y, w, h = det.box
    return frame, [det.box, (x - 20, y, w, h), (x + 15, y + 10, w, h)]


@pytest.mark.parametrize("fixture", ["emotion_model", "tiny_emotion_model", "tiny_float_model"])
def test_batch_of_faces_gives_one_probability_row_each(request, fixture, frame_and_boxes):
    model = TfliteModel(request.getfixturevalue(fixture))
    frame, boxes = frame_and_boxes
    assert model.delegate_in_use == "cpu" and model.fallback_reason is None
    assert len(model.labels) == 7
    for n in (3, 1, 2, 3):  # changing batch sizes, then one seen before
        probs = model.classify(frame, boxes[:n])
        assert probs.shape == (n, 7) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)
        assert np.all(probs >= 0)
    one_by_one = np.concatenate([model.classify(frame, [b]) for b in boxes])
    np.testing.assert_allclose(model.classify(frame, boxes), one_by_one, atol=1e-5)
    assert model.classify(frame, []).shape == (0, 7)


@pytest.mark.parametrize("fixture", ["tiny_emotion_model", "tiny_float_model"])
def test_batches_beyond_four_faces_are_padded_to_a_power_of_two_with_the_same_rows(request, fixture):
    """Memory stays bounded with many faces (one interpreter per bucket, not per count), and a
    padded batch gives each face the row it gets alone."""
    from daemon.model.tflite import batch_rows

    assert [batch_rows(n) for n in (1, 2, 3, 6, 8, 9, 16, 17, 128)] == [1, 2, 3, 6, 8, 16, 16, 32, 128]
    model = TfliteModel(request.getfixturevalue(fixture))
    faces = np.random.default_rng(4).uniform(-1, 1, (11, 48, 48, 1)).astype(np.float32)
    x = np.stack([model.preprocessor.prepare_face(((f[..., 0] + 1) * 127.5).astype(np.uint8)) for f in faces])
    alone = np.concatenate([model.predict(x[i : i + 1]) for i in range(len(x))])
    for n in (3, 7, 9, 11):
        together = model.predict(x[:n])
        assert together.shape == (n, 7)
        assert np.abs(together - alone[:n]).max() < 0.02  # int8 output steps are 1/256
    assert sorted(model._by_batch) == [1, 3, 7, 16]


def test_flip_average_from_the_manifest_averages_each_face_with_its_mirror(tmp_path, tiny_float_model, frame_and_boxes):
    frame, boxes = frame_and_boxes
    plain = TfliteModel(tiny_float_model)
    model = copy_model(tiny_float_model, tmp_path)
    manifest = json.loads(model.with_suffix(".json").read_text())
    model.with_suffix(".json").write_text(json.dumps({**manifest, "flip_average": True}))
    flipped = TfliteModel(model)
    assert flipped.flip_average and not plain.flip_average
    faces = plain.preprocessor.prepare(frame, boxes).copy()
    expected = (plain.predict(faces) + plain.predict(np.ascontiguousarray(faces[:, :, ::-1]))) / 2
    np.testing.assert_allclose(flipped.classify(frame, boxes), expected, atol=1e-5)
    assert not np.allclose(plain.classify(frame, boxes), expected, atol=1e-4)  # mirroring changes the answer


def test_flip_averaging_model_keeps_no_interpreter_it_never_runs(tmp_path, tiny_float_model, frame_and_boxes):
    """One face with its mirror runs at batch 2: the interpreter built at start is that one, so
    no batch-1 interpreter (a second packed copy of the weights) is kept unused."""
    frame, boxes = frame_and_boxes
    model = copy_model(tiny_float_model, tmp_path)
    manifest = json.loads(model.with_suffix(".json").read_text())
    model.with_suffix(".json").write_text(json.dumps({**manifest, "flip_average": True}))
    flipped = TfliteModel(model)
    assert sorted(flipped._by_batch) == [2]
    one = flipped.classify(frame, boxes[:1])
    assert sorted(flipped._by_batch) == [2]
    np.testing.assert_allclose(one, flipped.classify(frame, boxes)[:1], atol=1e-5)  # the same row in a larger batch
    assert sorted(flipped._by_batch) == [2, 6]
    assert sorted(TfliteModel(tiny_float_model)._by_batch) == [1]  # without mirrors, one face is batch 1


def test_int8_model_agrees_with_its_float_twin_on_real_faces(tiny_emotion_model, tiny_float_model):
    """Dequantisation is right: the int8 model's probabilities are the float model's, ± a step."""
    q, f = TfliteModel(tiny_emotion_model), TfliteModel(tiny_float_model)
    faces = fer_faces(14, split="test")
    pq = q.predict(np.stack([q.preprocessor.prepare_face(x) for x in faces]))
    pf = f.predict(np.stack([f.preprocessor.prepare_face(x) for x in faces]))
    assert q.preprocessor.dtype == np.int8 and f.preprocessor.dtype == np.float32
    np.testing.assert_allclose(pq, pf, atol=0.03)


def test_config_defaults():
    cfg = ClassifierConfig()
    assert (cfg.threads, cfg.delegate, cfg.fallback) == (1, "cpu", True)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m["input"].update(height=64), r"input shape is \[48, 48, 1\] \(HWC\) but manifest says \[64, 48, 1\]"),
        (lambda m: m["labels"].pop(), "model has 7 outputs but manifest lists 6 labels"),
        (lambda m: m["quantization"].update(input_zero_point=5), "input zero point is -?\\d+ but manifest says 5"),
    ],
)
def test_manifest_mismatch_is_refused_naming_it(tmp_path, tiny_emotion_model, edit, message):
    model = copy_model(tiny_emotion_model, tmp_path)
    manifest = json.loads(model.with_suffix(".json").read_text())
    edit(manifest)
    model.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=message):
        TfliteModel(model)


def test_missing_files_are_named(tmp_path, tiny_emotion_model):
    with pytest.raises(ModelError, match=f"model file not found: {tmp_path / 'none.tflite'}"):
        TfliteModel(tmp_path / "none.tflite")
    model = copy_model(tiny_emotion_model, tmp_path)
    model.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match=f"manifest not found: {model.with_suffix('.json')}"):
        TfliteModel(model)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    bad.with_suffix(".json").write_text(tiny_emotion_model.with_suffix(".json").read_text())
    with pytest.raises(ModelError, match="cannot load model .*bad.tflite"):
        TfliteModel(bad)


def test_missing_delegate_falls_back_to_cpu_and_says_why(tiny_emotion_model, frame_and_boxes, caplog):
    with caplog.at_level(logging.WARNING, logger="daemon.model.tflite"):
        model = TfliteModel(tiny_emotion_model, delegate="/nonexistent/libdelegate.so", fallback=True)
    assert model.delegate_in_use == "cpu"
    assert "/nonexistent/libdelegate.so" in model.fallback_reason
    assert any("falling back to the CPU" in r.message and "/nonexistent/libdelegate.so" in r.message for r in caplog.records)
    frame, boxes = frame_and_boxes
    assert model.classify(frame, boxes).shape == (3, 7)


def test_gpu_delegate_without_a_gpu_falls_back(tiny_emotion_model):
    model = TfliteModel(tiny_emotion_model, delegate="gpu", fallback=True)
    if model.delegate_in_use.startswith("gpu"):
        pytest.skip("this machine has a usable GPU (see tests/test_gpu.py)")
    assert "GPU" in model.fallback_reason


def test_missing_delegate_without_fallback_is_an_error(tiny_emotion_model):
    with pytest.raises(ModelError, match="/nonexistent/libdelegate.so.*fallback"):
        TfliteModel(tiny_emotion_model, delegate="/nonexistent/libdelegate.so", fallback=False)


def test_importing_and_running_the_classifier_never_loads_tensorflow(tiny_emotion_model):
    code = (
        "import sys, numpy as np\n"
        "from daemon.model.tflite import TfliteModel\n"
        f"m = TfliteModel({str(tiny_emotion_model)!r})\n"
        "m.predict(np.zeros((2, 48, 48, 1), np.int8))\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print('loaded:', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "loaded: []" in result.stdout


# ------------------------------------------------------------------ tilted faces turned upright


def test_eye_roll_reads_the_tilt_of_the_eye_line_and_refuses_what_is_no_face():
    from daemon.model.preprocess import eye_roll

    level = np.array([[100, 50], [140, 50], [120, 70], [105, 90], [135, 90]], np.float32)
    assert eye_roll(level) == pytest.approx(0.0)
    # the eye at image right 40 px lower over 40 px: 45°, the limit; a little more is refused
    assert eye_roll(np.array([[100, 50], [140, 90]], np.float32)) == pytest.approx(45.0)
    assert eye_roll(np.array([[100, 50], [140, 91]], np.float32)) is None
    assert eye_roll(np.array([[100, 60], [140, 50]], np.float32)) == pytest.approx(-14.04, abs=0.01)
    assert eye_roll(None) is None
    assert eye_roll(np.array([[140, 50], [100, 50]], np.float32)) is None  # eyes swapped: a profile or a wrong fit
    assert eye_roll(np.array([[np.nan, 50], [140, 50]], np.float32)) is None


def _rolled_about(frame: np.ndarray, centre, degrees: float) -> np.ndarray:
    import cv2

    m = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    return cv2.warpAffine(frame, m, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def test_a_real_face_rolled_by_25_degrees_is_turned_upright_by_its_eye_points(emotion_model):
    """The talking head, rolled about her face by 25° each way, her eye points rolled with it
    (as the FaceMesh of a followed face gives them): the crop turned by eye_roll's reading is
    nearer the upright face's input than the tilted crop (both prepared exactly as the model is
    fed), and so are the probabilities."""
    import cv2

    from daemon.model.preprocess import UPRIGHT_MIN_ROLL, eye_roll

    frame = read_frames(TALKING_HEAD, limit=1)[0]
    (upright,) = make_detector(YunetConfig(model=shared_file(YUNET))).detect(frame)
    model = TfliteModel(emotion_model)
    pre = model.preprocessor
    ref = pre.prepare(frame, [upright.box]).astype(np.float32).copy()
    ref_probs = model.classify(frame, [upright.box])[0]
    own = eye_roll(upright.landmarks)
    assert abs(own) < UPRIGHT_MIN_ROLL  # she faces the camera nearly level: left as she is
    x, y, w, h = upright.box
    for degrees in (25.0, -25.0):
        m = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), degrees, 1.0)
        tilted = cv2.warpAffine(frame, m, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REPLICATE)
        roll = eye_roll(upright.landmarks @ m[:, :2].T + m[:, 2])
        assert roll == pytest.approx(own - degrees, abs=0.5)  # counter-clockwise in the image: the eye at right rises
        as_is = pre.prepare(tilted, [upright.box]).astype(np.float32).copy()
        turned = pre.prepare(tilted, [upright.box], rolls=[roll]).astype(np.float32).copy()
        assert np.abs(turned - ref).mean() < 0.6 * np.abs(as_is - ref).mean()
        p_as_is = model.classify(tilted, [upright.box])[0]
        p_turned = model.classify(tilted, [upright.box], [roll])[0]
        assert np.abs(p_turned - ref_probs).sum() < np.abs(p_as_is - ref_probs).sum()
    # a roll under the threshold leaves the crop's pixels exactly as they were
    assert np.array_equal(pre.prepare(frame, [upright.box], rolls=[UPRIGHT_MIN_ROLL - 0.1]).astype(np.float32), ref)


def test_the_followed_face_rolled_by_25_degrees_is_classified_upright_by_its_mesh():
    """config.yaml follows the driver's face by its FaceMesh: the track's eye points come from
    the mesh, which reads the roll (YuNet's eye points barely follow it: 4.7° of 25° on this
    face). The talking head's first second, rolled by 25°: the classifier gets the roll, and its
    default is cut by the mesh's five points, which takes the roll out whatever
    ``classifier.upright`` says: the same probabilities both ways, near the upright clip's. (A model
    cut by its box is turned upright by the roll alone: the test above, pixel by pixel.)"""
    import cv2

    from daemon.config import load_config
    from daemon.types import Frame
    from daemon.vision.pipeline import Pipeline

    frames = read_frames(TALKING_HEAD, limit=25)
    m = cv2.getRotationMatrix2D((335.0, 100.0), 25.0, 1.0)  # about her face
    tilted = [cv2.warpAffine(f, m, (f.shape[1], f.shape[0]), borderMode=cv2.BORDER_REPLICATE) for f in frames]

    def run(clip, upright: bool):
        cfg = load_config(REPO / "config.yaml")
        classifier = cfg.classifier.model_copy(update={"upright": upright})
        cfg = cfg.model_copy(update={"classifier": classifier,
                                     "pipeline": cfg.pipeline.model_copy(update={"classify_per_frame": 1})})
        pipe = Pipeline.from_config(cfg)
        rolls, probs = [], []
        real = pipe.model.classify

        def spy(f, boxes, r=None, points=None):
            p = real(f, boxes, r, points)
            rolls.append(r)
            probs.append(p[0])
            return p

        pipe.model.classify = spy
        for i, f in enumerate(clip):
            pipe.process(Frame(f, i, i / 25.0, i / 25.0))
        return rolls, np.mean(probs[1:], axis=0)  # the first: before the mesh has run

    _, reference = run(frames, True)
    rolls, turned = run(tilted, True)
    off_rolls, as_is = run(tilted, False)
    assert off_rolls and all(r is None for r in off_rolls)
    read = [r[0] for r in rolls[1:]]
    assert len(read) >= 2 and np.median(read) == pytest.approx(-25.0 + 3.5, abs=2.0)  # she leans 3.5° herself
    assert np.array_equal(turned, as_is) and np.abs(turned - reference).sum() < 0.05  # measured: 0.020
