"""Distillation: the loss, the student read back from the shipped ensemble, and the command end
to end on a tiny student and data (teacher targets cached, a rerun resumes)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, shared_file

pytest.importorskip("tensorflow")

DEFAULT_FP16 = REPO / "models" / "emotion_wild_fp16.tflite"  # one MobileNetV2-96, float16 weights
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def test_distill_loss_is_the_label_loss_when_student_equals_teacher_and_grows_with_disagreement():
    from converter.distill import distill_loss

    n = 3
    teacher = np.array([[0.7, 0.2, 0.1]], np.float32)
    label = np.array([[1.0, 0.0, 0.0]], np.float32)
    y_true = np.concatenate([teacher, label], axis=1)
    loss = distill_loss(n, temperature=3.0, kd_weight=0.8)
    same = float(np.asarray(loss(y_true, teacher))[0])
    assert same == pytest.approx(0.2 * -np.log(0.7), rel=1e-4)  # KL term vanishes
    other = float(np.asarray(loss(y_true, np.array([[0.2, 0.7, 0.1]], np.float32)))[0])
    assert other > same + 0.1


def test_the_single_network_read_back_from_the_fp16_default_rebuilds_it():
    """The shipped default's one network (member "": no member prefix in its weight names),
    rebuilt as a Keras MobileNetV2 from the TFLite weights (BatchNorm folded), gives the file's
    probabilities again: a student or a fine-tuning run can start from it."""
    if not DEFAULT_FP16.is_file():
        pytest.skip(f"{DEFAULT_FP16} not built")
    from ai_edge_litert.interpreter import Interpreter

    from converter.model import build_model
    from converter.tflite_weights import load_mobilenetv2_from_tflite

    model, _ = build_model("mobilenetv2", 7, 48, 1, 96, 1.0, None, 0.3)
    load_mobilenetv2_from_tflite(model, DEFAULT_FP16, "")
    x = np.random.default_rng(0).uniform(-1, 1, (3, 48, 48, 1)).astype(np.float32)
    keras_p = np.asarray(model(x, training=False))
    it = Interpreter(str(DEFAULT_FP16))
    it.resize_tensor_input(0, list(x.shape))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    tflite_p = it.get_tensor(it.get_output_details()[0]["index"])
    assert np.abs(keras_p - tflite_p).max() < 1e-3
    assert (keras_p.argmax(1) == tflite_p.argmax(1)).all()


def _cmd(out: Path, teacher: Path, epochs: int) -> list[str]:
    return [
        sys.executable, "-m", "converter", "distill", "--data", str(shared_file("fer2013")), "--out", str(out),
        "--teacher", str(teacher), "--backbone-size", "32", "--alpha", "0.35", "--limit", "64", "--batch", "32",
        "--epochs", str(epochs), "--temperature", "2", "--kd-weight", "0.5", "--patience", "100",
    ]


def _logged_epochs(out: Path) -> list[int]:
    with (out / "log_distill.csv").open() as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh)]


@pytest.mark.slow  # two TensorFlow processes, a few tiny epochs
def test_distill_command_caches_teacher_targets_and_resumes_after_a_kill(tmp_path, tiny_float_model):
    from test_train_smoke import _kill_after_first_epoch

    out = tmp_path / "run"
    _kill_after_first_epoch(_cmd(out, tiny_float_model, 50), out, phase="distill")
    assert _logged_epochs(out)[0] == 0 and not (out / "DONE").exists()
    with np.load(out / "teacher_train.npz") as z:
        probs = z["probs"]
    assert probs.shape == (64, 7) and np.allclose(probs.sum(1), 1.0, atol=1e-4)

    again = subprocess.run(_cmd(out, tiny_float_model, 3), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "teacher targets for train: cached" in again.stdout
    logged = _logged_epochs(out)
    assert logged[0] == 0 and logged[-1] == 2 and logged == sorted(logged)  # went on, did not restart
    for name in ("best.keras", "best.json", "curves.png", "train_config.json", "DONE"):
        assert (out / name).is_file(), name
    assert not (out / "backup_distill").exists()
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["temperature"] == 2.0 and cfg["kd_weight"] == 0.5 and cfg["teacher"] == str(tiny_float_model)

    import keras

    model = keras.models.load_model(out / "best.keras", compile=False)
    p = np.asarray(model(np.zeros((2, 48, 48, 1), np.float32)))
    assert p.shape == (2, 7) and np.allclose(p.sum(1), 1.0, atol=1e-5)
