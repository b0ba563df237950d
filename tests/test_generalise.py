"""What teaches the emotion model faces FER-2013 has few of (issue 33): CK+48 as a second
validation set, the RAF-DB peer as a second teacher on aligned faces, the camera augmentation,
class balance in the loss, and a balanced classifier read back without its balance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO, shared_file


def test_ckplus_loads_in_the_models_order_without_contempt():
    from converter.datasets import load_ckplus

    labels = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    ck = load_ckplus(shared_file("ckplus48"), labels)
    counts = ck.counts()
    # CK+48 as published: anger 135, disgust 177, fear 75, happy 207, sadness 84, surprise 249
    assert counts == {"angry": 135, "disgust": 177, "fear": 75, "happy": 207, "neutral": 0, "sad": 84, "surprise": 249}
    assert not any("contempt" in p for p in ck.paths)
    assert ck.image(0).shape == (48, 48)


def test_a_missing_ckplus_folder_is_an_error_naming_it(tmp_path):
    from converter.datasets import DatasetError, load_ckplus

    with pytest.raises(DatasetError, match="CK\\+ folder not found: .*nowhere"):
        load_ckplus(tmp_path / "nowhere", ["angry"])
    (tmp_path / "ck" / "anger").mkdir(parents=True)
    with pytest.raises(DatasetError, match="missing or empty: .*anger"):
        load_ckplus(tmp_path / "ck", ["angry"])


def test_class_balance_weighs_rare_classes_by_the_inverse_square_root_of_their_share():
    from converter.distill import balance_weights

    y = np.array([0] * 90 + [1] * 10)  # 90 % / 10 %
    w = balance_weights(y, 2)
    assert w[y].mean() == pytest.approx(1.0, rel=1e-5)
    assert w[1] / w[0] == pytest.approx(np.sqrt(91 / 11), rel=1e-3)  # (+1 smoothing per class)


def test_the_class_weighted_loss_scales_each_face_by_its_labels_weight():
    pytest.importorskip("tensorflow")
    from converter.distill import distill_loss

    soft = np.array([[0.6, 0.4], [0.3, 0.7]], np.float32)
    hard = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    pred = np.array([[0.5, 0.5], [0.5, 0.5]], np.float32)
    y = np.concatenate([soft, hard], axis=1)
    plain = np.asarray(distill_loss(2, 1.0, 1.0)(y, pred))
    weighted = np.asarray(distill_loss(2, 1.0, 1.0, class_weights=np.array([2.0, 0.5], np.float32))(y, pred))
    assert plain.min() > 0
    assert weighted == pytest.approx(plain * np.array([2.0, 0.5]), rel=1e-5)


def test_camera_augmentation_keeps_the_range_and_changes_each_face_differently():
    tf = pytest.importorskip("tensorflow")
    from converter.model import camera_augmentation

    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(60, 200, (16, 48, 48, 1)).astype(np.float32))
    aug = camera_augmentation(7)
    y = np.asarray(aug(x))
    assert y.shape == (16, 48, 48, 1)
    assert y.min() >= 0.0 and y.max() <= 255.0
    change = np.abs(y - np.asarray(x)).mean(axis=(1, 2, 3))
    assert (change > 1.0).all()  # every face moved or re-lit
    assert change.std() > 1.0  # by its own draw, not one transform for the batch
    assert np.array_equal(np.asarray(aug(x, training=False)), np.asarray(x))


def test_the_raf_peer_reads_posed_happy_and_surprised_faces_after_aligning_them():
    from converter.datasets import load_ckplus
    from converter.peer_teacher import PEER_LABELS, PeerTeacher

    teacher = PeerTeacher(shared_file("peers/opencv_zoo_fer_mobilefacenet_int8.onnx"),
                          REPO / "models" / "face_detection_yunet_2023mar.onnx")
    ck = load_ckplus(shared_file("ckplus48"), PEER_LABELS)
    for cls in ("happy", "surprise"):
        idx = np.flatnonzero(ck.y == PEER_LABELS.index(cls))[::12][:12]
        hits, found = 0, 0
        for i in idx:
            g = ck.image(int(i))
            pts = teacher.landmarks(g)
            if pts is None:
                continue
            found += 1
            left_eye, right_eye, nose = pts[0], pts[1], pts[2]
            assert left_eye[0] < nose[0] < right_eye[0] and nose[1] > left_eye[1]  # a face's geometry
            p = teacher.probs(g, pts)
            assert p.sum() == pytest.approx(1.0, abs=1e-4)
            hits += int(p.argmax() == PEER_LABELS.index(cls))
        assert found >= 10, f"YuNet found {found} of {len(idx)} upscaled 48 px {cls} faces"
        assert hits >= 0.8 * found, f"{cls}: {hits} of {found}"


def test_peer_targets_are_cached_by_peer_and_images(tmp_path):
    from converter.datasets import load_ckplus
    from converter.peer_teacher import PEER_LABELS, peer_targets

    peer = shared_file("peers/opencv_zoo_fer_mobilefacenet_int8.onnx")
    yunet = REPO / "models" / "face_detection_yunet_2023mar.onnx"
    ck = load_ckplus(shared_file("ckplus48"), PEER_LABELS)
    few = ck.subset(np.arange(0, len(ck), 100))
    cache = tmp_path / "peer.npz"
    p = peer_targets(few, peer, yunet, cache)
    assert p.shape == (len(few), 7) and cache.is_file()
    with np.load(cache) as z:
        key = json.loads(str(z["key"]))
    np.savez_compressed(cache, probs=np.zeros_like(p), key=json.dumps(key))
    assert not peer_targets(few, peer, yunet, cache).any()  # same key: the cache is read
    other = ck.subset(np.arange(1, len(ck), 100))
    assert peer_targets(other, peer, yunet, cache).any()  # other images: recomputed


def test_a_balanced_classifier_read_back_answers_as_it_learnt():
    """The default was converted with its output balanced (bias + offsets, in its manifest);
    read back for more training, the offsets come out: its probabilities times prior^-tau,
    renormalised, are the file's again."""
    pytest.importorskip("tensorflow")
    from ai_edge_litert.interpreter import Interpreter

    from converter.distill import undo_output_balance
    from converter.model import build_model
    from converter.tflite_weights import load_mobilenetv2_from_tflite

    fp16 = REPO / "models" / "emotion_wild_fp16.tflite"
    manifest = json.loads(fp16.with_suffix(".json").read_text())
    balance = manifest.get("output_balance")
    if not balance:
        pytest.skip(f"{fp16.name} was converted without an output balance")
    m, _ = build_model("mobilenetv2", 7, 48, 1, 96, 1.0, None, 0.3)
    load_mobilenetv2_from_tflite(m, fp16, "")
    undo_output_balance(m, fp16.with_suffix(".json"))
    x = np.random.default_rng(1).uniform(-1, 1, (2, 48, 48, 1)).astype(np.float32)
    learnt = np.asarray(m(x, training=False), np.float64)
    it = Interpreter(str(fp16))
    it.resize_tensor_input(0, list(x.shape))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    shipped = np.asarray(it.get_tensor(it.get_output_details()[0]["index"]), np.float64)
    rebalanced = learnt * np.exp(np.asarray(balance["logit_offsets"]))
    rebalanced /= rebalanced.sum(axis=1, keepdims=True)
    assert np.abs(rebalanced - shipped).max() < 2e-3
    assert np.abs(learnt - shipped).max() > 0.01  # the offsets were really taken out


def test_class_offsets_are_parsed_by_name_and_bad_ones_name_themselves():
    from converter.convert import parse_class_offsets

    labels = ["angry", "neutral"]
    assert parse_class_offsets("neutral=-0.3, angry=0.25", labels) == {"neutral": -0.3, "angry": 0.25}
    assert parse_class_offsets("", labels) == {}
    with pytest.raises(ValueError, match="'calm=1'.*one of"):
        parse_class_offsets("calm=1", labels)
    with pytest.raises(ValueError, match="'lots' is not a number"):
        parse_class_offsets("angry=lots", labels)


def test_the_balance_and_a_class_offset_add_up_in_the_classifiers_bias():
    pytest.importorskip("tensorflow")
    import keras

    from converter.convert import balance_output

    inp = keras.Input((2,))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="probs")(inp))
    before = model.get_layer("probs").get_weights()[1].copy()
    prior = np.array([0.5, 0.25, 0.25])
    offsets = balance_output(model, prior, 0.5, [0.0, -0.3, 0.0])
    expect = -0.5 * np.log(prior) + np.array([0.0, -0.3, 0.0])
    assert offsets == pytest.approx(expect.tolist(), abs=1e-6)
    assert model.get_layer("probs").get_weights()[1] - before == pytest.approx(expect, abs=1e-6)


def test_the_default_reads_posed_lab_faces_as_its_card_says_and_better_than_the_alternative():
    """CK+48 through the daemon's own classifier (the default cuts each face by its five points):
    the default meets issue 42's bar (80 %, every class 50 %) and finds the anger and fear that the
    FER+ alternative calls neutral or sad."""
    from converter.datasets import load_ckplus
    from converter.evaluate import evaluate_tflite, load_tflite

    root = shared_file("ckplus48")
    scores = {}
    for name in ("emotion_wild.tflite", "emotion_ferplus.tflite"):
        model = load_tflite(REPO / "models" / name)
        m = evaluate_tflite(model, load_ckplus(root, model.manifest.labels)).metrics
        scores[name] = {"accuracy": m.accuracy, **m.per_class(m.recall)}
    wild, ferplus = scores["emotion_wild.tflite"], scores["emotion_ferplus.tflite"]
    recorded = json.loads((REPO / "models" / "emotion_wild.json").read_text())["metrics_ckplus"]
    assert wild["accuracy"] == pytest.approx(recorded["accuracy"], abs=0.005)
    assert wild["accuracy"] >= 0.80
    assert min(v for k, v in wild.items() if k != "accuracy") >= 0.50
    assert wild["angry"] > ferplus["angry"] + 0.2 and wild["fear"] > ferplus["fear"] + 0.2
