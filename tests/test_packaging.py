"""Models as package data: a wheel built from this checkout carries the default models, the
daemon run from that wheel in an empty folder finds them, config model paths fall back to the
installed models only when nothing is beside the config, and a missing or corrupt packaged
model is an error naming the file. (The .deb and a real systemd: tests/test_systemd_e2e.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import pytest

from conftest import REPO, TALKING_HEAD, read_frames
from daemon.cli import main
from daemon.config import ConfigError, parse_config
from daemon.model import paths
from daemon.model.catalog import installed, table

# Issue 33's lineup, written out (not read from daemon.model.lineup) so that a change to what
# ships is a change to this test too: the default and its float sibling, one alternative.
SHIPPED = ("emotion_wild.tflite", "emotion_wild.json", "emotion_wild_fp16.tflite", "emotion_wild_fp16.json",
           "emotion_ferplus.tflite", "emotion_ferplus.json", "eye_state.tflite", "eye_state.json",
           "face_landmark.tflite", "iris_landmark.tflite")
REMOVED = ("emotion.tflite", "emotion_fp16.tflite", "emotion_fast.tflite", "emotion_fast_fp16.tflite",
           "emotion_student.tflite", "emotion_student_fp16.tflite", "emotion_ferplus_fp16.tflite")
needs_models = pytest.mark.skipif(not all((REPO / "models" / n).is_file() for n in SHIPPED),
                                  reason="the repository's default models are not in models/")


@needs_models
def test_a_checkout_resolves_its_own_models():
    assert paths.installed_models_dir() == REPO / "models"
    assert paths.packaged_model(Path("models/emotion_wild.tflite")) == REPO / "models/emotion_wild.tflite"
    assert paths.packaged_model(Path("models/emotion.tflite")) is None  # removed (issue 33)
    assert paths.packaged_model(Path("eye_state.tflite")) == REPO / "models/eye_state.tflite"
    assert paths.packaged_model(Path("models/nope.tflite")) is None
    assert paths.packaged_model(Path("other/emotion_wild.tflite")) is None  # only models/<name>
    assert paths.packaged_model(Path("models/emotion_wild.json")) is None  # only model files, never e.g. an output
    assert paths.resolve(Path("emotion_wild.json"), REPO / "nowhere") == REPO / "nowhere/emotion_wild.json"


@needs_models
def test_config_paths_beside_the_config_win_and_absent_ones_fall_back(tmp_path):
    cfg = parse_config({}, "<test>", tmp_path)  # nothing in tmp_path: the installed models
    assert cfg.classifier.model == REPO / "models/emotion_wild.tflite"
    assert cfg.eyes.model == REPO / "models/eye_state.tflite"
    own = tmp_path / "models" / "emotion_wild.tflite"
    own.parent.mkdir()
    own.write_bytes((REPO / "models/emotion_wild.tflite").read_bytes())
    assert parse_config({}, "<test>", tmp_path).classifier.model == own  # the user's copy wins
    with pytest.raises(ConfigError) as err:
        parse_config({"classifier": {"model": "models/mine.tflite"}}, "<test>", tmp_path)
    assert f"classifier.model: file not found: {tmp_path / 'models/mine.tflite'}" in str(err.value)
    assert f"(nor {REPO / 'models/mine.tflite'} among the installed models)" in str(err.value)


@needs_models
def test_emotiond_models_lists_task_labels_and_accuracy(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    info = {m.path.name: m for m in installed(REPO / "models")}
    assert {n for n in info if n.startswith("emotion")} == {"emotion_wild.tflite", "emotion_wild_fp16.tflite",
                                                            "emotion_ferplus.tflite"}
    for name in ("emotion_wild.tflite", "emotion_ferplus.tflite"):
        # the figures are each manifest's own (the default's are replaced when it is retrained)
        manifest = json.loads((REPO / "models" / name).with_suffix(".json").read_text())
        line = next(x for x in out.splitlines() if x.startswith(name + " "))
        assert "emotion" in line and "angry,disgust,fear,happy,neutral,sad,surprise" in line
        assert f"{manifest['metrics']['accuracy']:.3f} ({manifest['metrics']['split']})" in line
        ferplus = manifest.get("metrics_ferplus")  # FER+ majority column: "-" for a manifest without it
        assert line.split()[-1] == (f"{ferplus['accuracy']:.3f}" if ferplus else "-")
    assert info["eye_state.tflite"].labels == ("closed", "open", "unreadable") and info["eye_state.tflite"].accuracy > 0.9
    assert info["face_landmark.tflite"].task.startswith("face mesh") and info["face_landmark.tflite"].accuracy is None
    assert "file" in table(list(info.values())).splitlines()[0]


def test_emotiond_models_in_a_folder_without_models(tmp_path, capsys):
    assert main(["models", "--dir", str(tmp_path / "none")]) == 66
    assert "no models folder at" in capsys.readouterr().err


@needs_models
def test_missing_or_corrupt_packaged_model_names_the_file(tmp_path, monkeypatch, capsys):
    packaged = tmp_path / "site" / "daemon" / "models"
    packaged.mkdir(parents=True)
    (packaged / "emotion_wild.json").write_bytes((REPO / "models/emotion_wild.json").read_bytes())
    (packaged / "emotion_wild.tflite").write_bytes(b"TFL3 this is not a flatbuffer" * 10)
    yunet = "face_detection_yunet_2023mar.onnx"  # the default detector's model, installed beside it
    (packaged / yunet).write_bytes((REPO / "models" / yunet).read_bytes())
    monkeypatch.setattr(paths, "installed_models_dir", lambda: packaged)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    image = work / "x.jpg"
    cv2.imwrite(str(image), read_frames(TALKING_HEAD, limit=1)[0])
    (work / "config.yaml").write_text("eyes: {enabled: false}\nhead_pose: {enabled: false}\n")
    assert main(["analyze", str(image)]) == 78
    err = capsys.readouterr().err
    assert f"cannot load model {packaged / 'emotion_wild.tflite'}" in err

    (packaged / "emotion_wild.tflite").unlink()
    assert main(["analyze", str(image)]) == 78
    err = capsys.readouterr().err
    assert f"classifier.model: file not found: {work / 'models/emotion_wild.tflite'}" in err
    assert f"nor {packaged / 'emotion_wild.tflite'} among the installed models" in err


@needs_models
def test_a_wheel_from_this_checkout_runs_analyze_from_an_empty_folder(tmp_path):
    """The wheel is built without isolation (no download; about 5 s) and unpacked as pip would
    install it; the daemon is then run from it with this venv's dependencies."""
    wheel_dir = tmp_path / "wheel"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-w", str(wheel_dir), str(REPO)], check=True, capture_output=True, text=True, timeout=300)
    # setuptools' deprecation of project.license as a TOML table (builds stop after 2027-02-18)
    assert "project.license` as a TOML table is deprecated" not in build.stdout + build.stderr
    (wheel,) = wheel_dir.glob("emotiond-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(site)
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(meta).decode()
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    for name in SHIPPED:
        assert f"daemon/models/{name}" in names
    # only the lineup: the models issue 33 removed are in neither the checkout nor the wheel
    assert {n for n in names if n.startswith("daemon/models/emotion")} == {f"daemon/models/{n}" for n in SHIPPED
                                                                            if n.startswith("emotion")}
    for name in REMOVED:
        assert not (REPO / "models" / name).exists() and f"daemon/models/{name}" not in names
    for onnx in (REPO / "models").glob("*.onnx"):
        assert f"daemon/models/{onnx.name}" in names

    empty = tmp_path / "empty"
    empty.mkdir()
    cv2.imwrite(str(empty / "face.jpg"), read_frames(TALKING_HEAD, limit=1)[0])
    env = dict(os.environ, PYTHONPATH=str(site))
    probe = subprocess.run([sys.executable, "-c", "import daemon.model.paths as p; print(p.installed_models_dir())"],
                           cwd=empty, env=env, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == str(site / "daemon" / "models")
    res = subprocess.run([sys.executable, "-m", "daemon", "analyze", "face.jpg", "--results", "faces.csv"],
                         cwd=empty, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "faces in 1" in res.stdout
    rows = (empty / "faces.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("face.jpg,0,,1,1,")
