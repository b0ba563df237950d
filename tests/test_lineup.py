"""The emotion models that ship (issue 33): the default ``emotion_wild.tflite`` and its float
sibling keep the daemon's input contract and agree with each other, every config the repository
ships names the default, and the alternative is int8 only. The default's figures are read from its
manifest, never written here: the file is retrained and replaced."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from conftest import FER_LABELS, REPO, TALKING_HEAD, read_frames, shared_file
from daemon.model import lineup
from daemon.model.config import ClassifierConfig

MODELS = REPO / "models"
CONTRACT = {"labels": FER_LABELS, "input": {"height": 48, "width": 48, "channels": 1, "color": "gray"},
            "crop": {"margin": 0.1}, "flip_average": True}


def manifest(name: str) -> dict:
    return json.loads((MODELS / name).with_suffix(".json").read_text())


def test_the_default_is_emotion_wild_in_the_code_and_in_every_shipped_config():
    assert ClassifierConfig.model_fields["model"].default.name == lineup.DEFAULT == "emotion_wild.tflite"
    configs = [REPO / "config.yaml", REPO / "demo" / "config.yaml", *sorted((REPO / "profiles").glob("*.yaml"))]
    for path in configs:
        model = (yaml.safe_load(path.read_text()).get("classifier") or {}).get("model")
        assert model is None or model.endswith("models/emotion_wild.tflite"), (path, model)
    assert lineup.SHIPPED == ("emotion_wild.tflite", "emotion_wild_fp16.tflite", "emotion_ferplus.tflite")


@pytest.mark.parametrize("name, kind", [("emotion_wild.tflite", "int8"), ("emotion_wild_fp16.tflite", "float16"),
                                        ("emotion_ferplus.tflite", "int8")])
def test_every_shipped_emotion_model_keeps_the_daemons_input_contract(name, kind):
    m = manifest(name)
    assert m["task"] == "emotion" and m["quantization"]["type"] == kind
    assert m["labels"] == CONTRACT["labels"] and m["crop"]["margin"] == CONTRACT["crop"]["margin"]
    if name.startswith("emotion_wild"):  # the default and its sibling: cut by five points, one template
        assert m["crop"]["align"] == "five_points" and len(m["crop"]["template"]) == 5
        assert m["crop"] == manifest("emotion_wild.tflite")["crop"]
    else:
        assert m["crop"].get("align", "box") == "box"
    assert m["flip_average"] is CONTRACT["flip_average"]
    assert {k: m["input"][k] for k in CONTRACT["input"]} == CONTRACT["input"]
    # measured as the daemon runs it, on the split the manifest names (its own figures, whatever they are)
    assert m["metrics"]["n"] > 1000 and 0 < m["metrics"]["accuracy"] <= 1 and set(m["metrics"]["per_class_recall"]) == set(FER_LABELS)


def test_the_float_sibling_is_the_same_network_and_agrees_with_the_int8_default_on_real_faces():
    from daemon.model.tflite import TfliteModel

    int8, fp = manifest("emotion_wild.tflite"), manifest("emotion_wild_fp16.tflite")
    assert fp["input"]["normalize"] == int8["input"]["normalize"]
    assert fp.get("output_balance") == int8.get("output_balance")  # one model, two precisions
    shared_file(TALKING_HEAD)
    frames = read_frames(TALKING_HEAD, limit=60)[::3]
    box = (290, 40, 150, 150)  # her face in these frames (YuNet's box, rounded)
    p8 = np.concatenate([TfliteModel(MODELS / "emotion_wild.tflite").classify(f, [box]) for f in frames])
    pf = np.concatenate([TfliteModel(MODELS / "emotion_wild_fp16.tflite").classify(f, [box]) for f in frames])
    np.testing.assert_allclose(p8.sum(axis=1), 1.0, atol=0.02)
    np.testing.assert_allclose(pf.sum(axis=1), 1.0, atol=1e-3)
    # int8 rounding changes the class of a few percent of faces; the same network agrees on most
    assert (p8.argmax(1) == pf.argmax(1)).mean() >= 0.8
    assert np.abs(p8 - pf).max() < 0.25
