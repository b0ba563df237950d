"""Quantisation-aware fine-tuning (``python -m converter qat``): the rebuilt float graph equals
its TFLite source, the two tfmot corrections hold, and the command converts, measures and
resumes."""

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

pytest.importorskip("tensorflow_model_optimization", reason="the train extra (tfmot, tf_keras) is not installed")

DEFAULT_FP16 = REPO / "models" / "emotion_wild_fp16.tflite"  # one MobileNetV2-96, float16 weights
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def small_source(tmp_path_factory) -> Path:
    """A float32 TFLite MobileNetV2 (α 0.35 on 32×32, random weights): the shape of the
    shipped members at a fraction of their cost."""
    import keras

    from converter.convert import to_tflite
    from converter.model import build_model

    keras.utils.set_random_seed(3)
    model, _ = build_model("mobilenetv2", 7, 48, 1, 32, 0.35, None, 0.3)
    # BatchNorm statistics that are not the identity, so folding is exercised
    for lay in model.get_layer(index=3).layers:
        if isinstance(lay, keras.layers.BatchNormalization):
            n = lay.gamma.shape[0]
            rng = np.random.default_rng(n)
            lay.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.2, n), rng.normal(0, 0.2, n), rng.uniform(0.5, 2, n)])
    path = tmp_path_factory.mktemp("qat_src") / "small_fp32.tflite"
    path.write_bytes(to_tflite(model, "float32"))
    return path


def _run_tflite(path: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(path))
    it.resize_tensor_input(0, list(x.shape))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


@pytest.mark.parametrize("which", ["small", "shipped default"])
def test_rebuilt_float_graph_gives_the_tflite_files_probabilities(which, small_source):
    from converter.qat_graph import build_from_tflite, inspect_source

    path = small_source if which == "small" else DEFAULT_FP16
    if not path.is_file():
        pytest.skip(f"{path} not built")
    src = inspect_source(path)
    assert src.members == [""]  # one network, no member prefix (the ensemble is no longer shipped)
    assert src.backbone_size == (32 if which == "small" else 96)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 48, 48, 1)).astype(np.float32)
    keras_p = np.asarray(build_from_tflite(path)(x, training=False))
    tflite_p = _run_tflite(path, x)
    assert np.abs(keras_p - tflite_p).max() < 1e-3
    assert (keras_p.argmax(1) == tflite_p.argmax(1)).all()


def test_qat_graph_quantises_every_kernel_and_depthwise_kernels_per_channel(small_source):
    """The two tfmot 0.8 corrections: a convolution followed by a ReLU keeps its weight
    quantiser, and a depthwise kernel has one range per channel, as TFLite quantises it."""
    import tf_keras as keras

    from converter.qat import quantize_model
    from converter.qat_graph import build_from_tflite

    float_model = build_from_tflite(small_source)
    qat_model = quantize_model(float_model)
    wrapped = {lay.layer.name: lay for lay in qat_model.layers if hasattr(lay, "layer")}
    convs = [lay for lay in float_model.layers if isinstance(lay, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    assert len(convs) == 52
    for conv in convs:
        names = {v.name.split("/")[-1].split(":")[0]: v for v in wrapped[conv.name].non_trainable_weights}
        key = "depthwise_kernel" if isinstance(conv, keras.layers.DepthwiseConv2D) else "kernel"
        assert f"{key}_min" in names, f"{conv.name} has no weight quantiser"
        channels = conv.depthwise_kernel.shape[2] if key == "depthwise_kernel" else conv.kernel.shape[3]
        assert names[f"{key}_min"].shape == (channels,), conv.name
    x = np.random.default_rng(1).uniform(-1, 1, (4, 48, 48, 1)).astype(np.float32)
    # untrained fake-quant ranges (±6) differ from the float model; the weights must not
    kernel = next(v for v in wrapped["Conv1"].trainable_weights if "kernel" in v.name)
    assert np.allclose(kernel.numpy(), float_model.get_layer("Conv1").kernel.numpy())
    assert qat_model(x, training=False).shape == (4, 7)


def _cmd(out: Path, source: Path, steps: int) -> list[str]:
    return [
        sys.executable, "-m", "converter", "qat", "--data", str(shared_file("fer2013")), "--out", str(out),
        "--source", str(source), "--steps", str(steps), "--calib-batches", "2", "--batch", "16", "--limit", "64",
        "--eval-limit", "48", "--checkpoint-every", "2", "--latency-runs", "5", "--lr", "1e-4",
    ]


@pytest.mark.slow  # two TensorFlow processes, each builds, fine-tunes and converts a small network
def test_qat_command_fine_tunes_converts_measures_and_resumes(tmp_path, small_source):
    out = tmp_path / "run"
    first = subprocess.run(_cmd(out, small_source, 2), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "calibrated the activation ranges on 2 batches" in first.stdout
    assert json.loads((out / "state.json").read_text())["step"] == 2

    again = subprocess.run(_cmd(out, small_source, 4), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resumed at step 2 of 4" in again.stdout and "calibrated" not in again.stdout
    with (out / "log_qat.csv").open() as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [2, 4]

    model = out / "emotion_qat.tflite"
    manifest = json.loads(model.with_suffix(".json").read_text())
    assert manifest["quantization"]["type"] == "int8" and manifest["flip_average"] is True
    assert manifest["metrics"]["n"] == 48 and 0.0 <= manifest["metrics"]["float_agreement"] <= 1.0
    assert 0.0 <= manifest["training"]["int8_vs_fake_quant_agreement"] <= 1.0
    assert manifest["training"]["members_resolved"] == [""] and manifest["data"]["representative"].startswith("none")

    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(model))
    details = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    depthwise = [o for o in ops if o["op_name"] == "DEPTHWISE_CONV_2D"]
    assert len(depthwise) == 17
    for op in depthwise:  # per-channel ranges from the QAT graph, not one for all channels
        w = details[op["inputs"][1]]
        assert w["dtype"] == np.int8 and len(w["quantization_parameters"]["scales"]) == w["shape"][-1]
    float_ops = [o["op_name"] for o in ops if any(details[i]["dtype"] == np.float32 for i in o["outputs"])]
    assert float_ops == [], f"ops left in float: {float_ops}"

    from daemon.model.tflite import TfliteModel

    classifier = TfliteModel(model, threads=1)
    faces = np.random.default_rng(2).integers(0, 255, (3, 48, 48), dtype=np.uint8)
    probs = classifier.predict(np.stack([classifier.preprocessor.prepare_face(f) for f in faces]))
    assert probs.shape == (3, 7) and np.allclose(probs.sum(1), 1.0, atol=0.02)
