"""The distilled student as shipped: its manifest matches its tensors, says how it was made
(teacher, temperature, soft-target weight) and carries the measured PublicTest figures; it runs
at one network's cost on real faces and agrees with the ensemble it learnt from."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import REPO, TALKING_HEAD, read_frames
from daemon.model.manifest import load_manifest
from daemon.model.tflite import TfliteModel

STUDENT = REPO / "models" / "emotion_student.tflite"
ENSEMBLE = REPO / "models" / "emotion.tflite"


@pytest.fixture(scope="module")
def student() -> TfliteModel:
    if not STUDENT.is_file():
        pytest.skip(f"{STUDENT} not built")
    return TfliteModel(STUDENT)


def test_student_manifest_says_how_it_was_made_and_what_it_measured(student):
    m = load_manifest(STUDENT)
    assert m.flip_average and m.quantization.type == "int8"
    assert m.metrics.split == "test" and m.metrics.n == 3589
    assert 0.6 < m.metrics.accuracy < 1 and 0.5 < m.metrics.macro_recall < 1
    assert m.metrics.float_agreement is not None and m.metrics.float_agreement > 0.9
    training = m.model_dump()["training"]
    assert training["teacher"].endswith("emotion_fp16.tflite")
    assert training["temperature"] >= 1 and 0 < training["kd_weight"] <= 1 and training["best_val_accuracy"] > 0.6
    assert training["init_tflite"] and training["init_member"] == "member0"


def test_student_is_one_network_and_agrees_with_the_ensemble_on_real_faces(student):
    frames = read_frames(TALKING_HEAD, limit=40, step=5)
    boxes = [(250, 60, 140, 140)]
    s = np.concatenate([student.classify(f, boxes) for f in frames])
    assert s.shape == (len(frames), 7) and np.allclose(s.sum(1), 1.0, atol=0.02)
    # one MobileNetV2: a third of the ensemble's weights
    assert STUDENT.stat().st_size < ENSEMBLE.stat().st_size / 2
    if ENSEMBLE.is_file():
        ensemble = TfliteModel(ENSEMBLE)
        e = np.concatenate([ensemble.classify(f, boxes) for f in frames])
        assert np.mean(s.argmax(1) == e.argmax(1)) >= 0.8
