"""Every conversion variant of a tiny Keras model, run with ai_edge_litert on real faces, and
the manifests the converter writes beside them.

The tiny model is trained for a few seconds on real faces to tell their mean brightness
(seven bands): an easy task it learns with clear margins, so the int8 model's agreement with
the float model measures the quantisation (input scale, zero point, calibration), not noise.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

import keras  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from converter import convert  # noqa: E402
from converter.cli import main as converter_main  # noqa: E402
from converter.evaluate import float_manifest  # noqa: E402
from daemon.model.manifest import ManifestError, check_against_tensors, load_manifest  # noqa: E402
from daemon.model.preprocess import Preprocessor, build_lut  # noqa: E402
from conftest import FER_LABELS, fer_faces, shared_file  # noqa: E402

INPUT_DTYPE = {"int8": np.int8, "float16": np.float32, "float32": np.float32, "dynamic": np.float32}
# largest difference from the Keras probabilities allowed per variant
PROB_TOLERANCE = {"float32": 1e-4, "float16": 5e-3, "dynamic": 0.05, "int8": 0.1}


def _brightness_band(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.digitize(x.mean(axis=(1, 2, 3)), edges)


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory) -> tuple[Path, keras.Model]:
    """A trained tiny CNN saved as a run folder (best.keras + train_config.json)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((48, 48, 1), name="face")
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(7, activation="softmax")(x))
    prep = Preprocessor(float_manifest((48, 48, 1), FER_LABELS), np.float32)
    x_train = np.stack([prep.prepare_face(f) for f in fer_faces(280)])
    edges = np.quantile(x_train.mean(axis=(1, 2, 3)), np.linspace(0, 1, 8)[1:-1])
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x_train, _brightness_band(x_train, edges), epochs=10, batch_size=32, verbose=0)
    run = tmp_path_factory.mktemp("run")
    model.save(run / "best.keras")
    (run / "train_config.json").write_text(json.dumps({"arch": "tiny", "epochs": 10, "command": "test"}))
    return run / "best.keras", model


def _run_cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = converter_main(argv)
    return rc, out.getvalue()


@pytest.fixture(scope="module")
def converted(tiny_keras, tmp_path_factory) -> tuple[Path, int, str]:
    """``python -m converter convert`` on the tiny model: (output stem, exit code, printout)."""
    stem = tmp_path_factory.mktemp("models") / "emotion"
    rc, text = _run_cli([
        "convert", str(tiny_keras[0]), "--data", str(shared_file("fer2013")), "--out", str(stem),
        "--limit", "50", "--rep-samples", "32", "--latency-runs", "5",
    ])
    return stem, rc, text


def test_cli_writes_every_variant_with_a_measured_manifest(converted):
    stem, rc, text = converted
    assert rc == 0, text
    for variant in convert.VARIANTS:
        path = convert.variant_path(stem, variant)
        assert path.is_file(), text
        data = path.read_bytes()
        m = load_manifest(path)
        assert m.labels == FER_LABELS and m.quantization.type == variant
        assert (m.input.height, m.input.width, m.input.channels, m.input.color) == (48, 48, 1, "gray")
        assert m.input.normalize.scale == pytest.approx(1 / 127.5) and m.input.normalize.offset == -1.0
        assert m.crop.margin == 0.1
        extra = m.model_dump()
        assert extra["size_bytes"] == len(data) and extra["sha256"] == hashlib.sha256(data).hexdigest()
        assert extra["latency_ms"] > 0 and extra["training"]["arch"] == "tiny"
        assert m.metrics.split == "test" and extra["metrics"]["n"] == 50
        assert 0.0 <= m.metrics.accuracy <= 1.0 and set(m.metrics.per_class_recall) <= set(FER_LABELS)
        assert m.metrics.float_agreement >= (0.98 if variant in ("float32", "float16") else 0.85)
        assert path.with_suffix(".confusion.png").is_file() and path.with_suffix(".confusion.json").is_file()
        assert f"\n{variant} " in text  # its row in the table
    assert stem.with_suffix(".tflite").is_file()  # int8 is the shipped default: <stem>.tflite
    fp16 = load_manifest(convert.variant_path(stem, "float16")).model_dump()
    assert fp16["gpu_compatibility"]["compatible"] is True


@pytest.mark.parametrize("variant", convert.VARIANTS)
def test_variant_runs_batched_on_real_faces_like_keras(converted, tiny_keras, variant):
    path = convert.variant_path(converted[0], variant)
    manifest = load_manifest(path)
    interp = Interpreter(model_path=str(path), num_threads=1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == INPUT_DTYPE[variant]
    assert inp["shape_signature"][0] == -1  # the daemon resizes the batch to N faces
    faces = fer_faces(5, "test")
    x = np.stack([Preprocessor(manifest, inp["dtype"]).prepare_face(f) for f in faces])
    interp.resize_tensor_input(inp["index"], list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    probs = interp.get_tensor(out["index"]).astype(np.float32)
    if variant == "int8":
        scale, zero_point = out["quantization"]
        probs = (probs - zero_point) * scale
    expected = tiny_keras[1].predict_on_batch(np.stack([Preprocessor(manifest).prepare_face(f) for f in faces]))
    assert probs.shape == (5, 7)
    np.testing.assert_allclose(probs, expected, atol=PROB_TOLERANCE[variant])


def test_int8_agrees_with_the_float_model_on_50_real_faces(converted, tiny_keras):
    path = convert.variant_path(converted[0], "int8")
    manifest = load_manifest(path)
    interp = Interpreter(model_path=str(path), num_threads=1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    faces = fer_faces(50, "test")
    q = np.stack([Preprocessor(manifest, np.int8).prepare_face(f) for f in faces])
    interp.resize_tensor_input(inp["index"], list(q.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], q)
    interp.invoke()
    int8_top = interp.get_tensor(out["index"]).argmax(axis=1)
    float_probs = tiny_keras[1].predict_on_batch(np.stack([Preprocessor(manifest).prepare_face(f) for f in faces]))
    float_top = float_probs.argmax(axis=1)
    assert len(set(float_top)) >= 4  # a real spread of classes, not one constant answer
    assert np.mean(int8_top == float_top) >= 0.9


def test_int8_input_quantisation_comes_from_normalised_real_faces(converted):
    manifest = load_manifest(convert.variant_path(converted[0], "int8"))
    q = manifest.quantization
    # calibrated on faces normalised to [-1, 1]: one int8 step per grey level
    assert q.input_scale == pytest.approx(2 / 255, rel=0.02)
    lut = build_lut(manifest, np.int8)
    assert lut[0] <= -127 and lut[255] >= 126 and len(set(lut.tolist())) >= 250


def _tampered(model: Path, folder: Path, edit) -> Path:
    dst = folder / model.name
    shutil.copy(model, dst)
    data = json.loads(model.with_suffix(".json").read_text())
    edit(data)
    dst.with_suffix(".json").write_text(json.dumps(data))
    return dst


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["input"].update(height=64), "input shape"),
        (lambda d: d["quantization"].update(input_zero_point=d["quantization"]["input_zero_point"] + 5), "zero point"),
        (lambda d: d["quantization"].update(input_scale=0.5), "input scale"),
        (lambda d: d["labels"].pop(), "labels"),
        (lambda d: d["quantization"].update(type="float32"), "dtype"),
    ],
)
def test_manifest_round_trip_and_tampering(converted, tmp_path, edit, message):
    model = convert.variant_path(converted[0], "int8")
    interp = Interpreter(model_path=str(model))
    tensors = interp.get_input_details()[0], interp.get_output_details()[0]
    check_against_tensors(load_manifest(model), *tensors)  # as written: passes
    bad = _tampered(model, tmp_path, edit)
    with pytest.raises(ManifestError, match=message):
        check_against_tensors(load_manifest(bad), *tensors, source=str(bad))


def test_manifest_missing_a_key_names_it(converted, tmp_path):
    bad = _tampered(convert.variant_path(converted[0], "int8"), tmp_path, lambda d: d["input"].pop("color"))
    with pytest.raises(ManifestError, match=r"input\.color"):
        load_manifest(bad)


def test_a_failing_variant_is_reported_and_the_others_written(tiny_keras, tmp_path, monkeypatch):
    real = convert.to_tflite

    def flaky(model, variant, representative=None, qat=False):
        if variant == "dynamic":
            raise RuntimeError("dynamic-range kernels unavailable")
        return real(model, variant, representative, qat)

    monkeypatch.setattr(convert, "to_tflite", flaky)
    stem = tmp_path / "emotion"
    rc, text = _run_cli([
        "convert", str(tiny_keras[0]), "--data", str(shared_file("fer2013")), "--out", str(stem),
        "--variants", "dynamic,float32", "--limit", "20", "--latency-runs", "2",
    ])
    assert rc == 1
    assert "dynamic   FAILED: RuntimeError: dynamic-range kernels unavailable" in text
    assert convert.variant_path(stem, "float32").is_file()
    assert not convert.variant_path(stem, "dynamic").exists()


def test_gpu_verdict_lists_incompatible_ops():
    report = (
        "Subgraph#0 main(T#0) -> [T#3]\n"
        "  Op#0 CONV_2D(T#0, T#1, T#2) -> [T#3]\n"
        "  Op#1 FlexErf(T#3) -> [T#4]\n"
        "GPU COMPATIBILITY WARNING: Not supported custom op FlexErf\n"
        "\nGPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 1\n"
    )
    verdict = convert.parse_gpu_verdict(report)
    assert not verdict.compatible
    assert verdict.incompatible_ops == ["FlexErf: Not supported custom op FlexErf"]
    ok = convert.parse_gpu_verdict("  Op#0 CONV_2D(T#0) -> [T#1]\nYour model looks compatible with GPU delegate on ...")
    assert ok.compatible and ok.incompatible_ops == []


def test_to_tflite_rejects_bad_requests(tiny_keras):
    with pytest.raises(ValueError, match="representative"):
        convert.to_tflite(tiny_keras[1], "int8")
    with pytest.raises(ValueError, match="unknown variant 'int4'"):
        convert.to_tflite(tiny_keras[1], "int4")


def _perturbed_copy(model: keras.Model, folder: Path, seed: int) -> Path:
    """The tiny model with noise added to its weights: a second, different ensemble member."""
    rng = np.random.default_rng(seed)
    other = keras.models.clone_model(model)
    other.set_weights([w + rng.normal(0, 0.2, w.shape).astype(w.dtype) for w in model.get_weights()])
    folder.mkdir(parents=True, exist_ok=True)
    other.save(folder / "best.keras")
    return folder / "best.keras"


def test_ensemble_averages_members_inside_one_graph_and_converts(tiny_keras, tmp_path):
    first, model = tiny_keras
    second = _perturbed_copy(model, tmp_path / "run2", seed=1)
    out = tmp_path / "ens" / "emotion_ensemble.keras"
    rc, text = _run_cli(["ensemble", str(first), str(second), "--out", str(out)])
    assert rc == 0, text
    assert "2 members" in text

    prep = Preprocessor(float_manifest((48, 48, 1), FER_LABELS), np.float32)
    faces = np.stack([prep.prepare_face(f) for f in fer_faces(40, "test")])
    members = [keras.models.load_model(p) for p in (first, second)]
    probs = [m.predict(faces, verbose=0).astype(np.float64) for m in members]
    # default: softmax of the mean logits = normalised geometric mean of the probabilities
    geometric = np.exp(np.mean(np.log(probs), axis=0))
    geometric /= geometric.sum(axis=1, keepdims=True)
    got = keras.models.load_model(out).predict(faces, verbose=0)
    np.testing.assert_allclose(got, geometric, atol=1e-5)
    arithmetic = np.mean(probs, axis=0)
    # the members really differ, so neither mean is trivially one of them, nor the two means equal
    assert np.abs(probs[0] - geometric).max() > 1e-3
    assert np.abs(arithmetic - geometric).max() > 1e-4
    by_probs = tmp_path / "ens" / "emotion_ensemble_probs.keras"
    rc, text = _run_cli(["ensemble", str(first), str(second), "--out", str(by_probs), "--combine", "probs"])
    assert rc == 0, text
    np.testing.assert_allclose(keras.models.load_model(by_probs).predict(faces, verbose=0), arithmetic, atol=1e-5)

    provenance = json.loads(out.with_name("emotion_ensemble.provenance.json").read_text())
    assert [m["model"] for m in provenance["members"]] == [str(first), str(second)]
    assert provenance["members"][0]["training"]["arch"] == "tiny"
    assert provenance["combine"] == "logits"

    stem = tmp_path / "models" / "emotion"
    rc, text = _run_cli([
        "convert", str(out), "--data", str(shared_file("fer2013")), "--out", str(stem),
        "--variants", "float32", "--limit", "20", "--latency-runs", "2",
    ])
    assert rc == 0, text
    manifest = load_manifest(convert.variant_path(stem, "float32"))
    assert manifest.source_model == "emotion_ensemble.keras"
    assert len(manifest.training["members"]) == 2


def test_ensemble_rejects_members_that_do_not_fit(tiny_keras, tmp_path, capsys):
    inp = keras.Input((64, 64, 1))
    other = keras.Model(inp, keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inp)))
    other.save(tmp_path / "other.keras")
    argv = ["ensemble", str(tiny_keras[0]), str(tmp_path / "other.keras"), "--out", str(tmp_path / "e.keras")]
    assert converter_main(argv) == 2
    assert "member 1 takes (64, 64, 1) and gives 7 classes; member 0 takes (48, 48, 1)" in capsys.readouterr().err
    assert converter_main(["ensemble", str(tiny_keras[0]), "--out", str(tmp_path / "e.keras")]) == 2
    assert "at least two models" in capsys.readouterr().err
    assert converter_main(["ensemble", str(tiny_keras[0]), str(tmp_path / "none.keras"), "--out", str(tmp_path / "e.keras")]) == 2
    assert "none.keras" in capsys.readouterr().err
    inp = keras.Input((48, 48, 1))
    no_softmax = keras.Model(inp, keras.layers.Softmax()(keras.layers.Dense(7)(keras.layers.Flatten()(inp))))
    no_softmax.save(tmp_path / "no_softmax.keras")
    argv = ["ensemble", str(tiny_keras[0]), str(tmp_path / "no_softmax.keras"), "--out", str(tmp_path / "e.keras")]
    assert converter_main(argv) == 2
    assert "member 1's last layer is Softmax, not a softmax Dense; use --combine probs" in capsys.readouterr().err
    assert not (tmp_path / "e.keras").exists()
