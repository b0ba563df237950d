"""``daemon.api``: an image array in, faces with emotions out, on the daemon's own pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, TALKING_HEAD, read_frames
from daemon.api import Analyzer, Face, analyze_image
from daemon.config import ConfigError

EYE_MODEL = REPO / "models" / "eye_state.tflite"


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return read_frames(TALKING_HEAD, step=30, limit=4)


@pytest.fixture
def settings(emotion_model: Path) -> dict:
    eyes = {"model": str(EYE_MODEL)} if EYE_MODEL.is_file() else {"enabled": False}
    return {"classifier": {"model": str(emotion_model)}, "eyes": eyes}


def test_faces_with_emotions_from_an_array(frames, settings):
    analyzer = Analyzer(settings)
    faces = analyzer.analyze(frames[0])
    assert len(faces) == 1 and isinstance(faces[0], Face)
    face = faces[0]
    assert list(face.probs) == list(analyzer.labels) and len(analyzer.labels) == 7
    assert sum(face.probs.values()) == pytest.approx(1.0, abs=0.02)
    assert face.label == max(face.probs, key=face.probs.get) and face.confidence == face.probs[face.label]
    x, y, w, h = face.box
    assert w > 40 and h > 40 and x + w <= 640 and y + h <= 360 and face.primary
    assert set(face.signals) >= {"eye_closed"}
    # The same image as RGB (PIL, imageio) with rgb=True: the same answer.
    again = analyzer.analyze(np.ascontiguousarray(frames[0][:, :, ::-1]), rgb=True)[0]
    assert again.box == face.box and again.probs == face.probs


def test_the_same_numbers_as_emotiond_analyze(tmp_path, frames, settings):
    import csv
    import json

    import cv2
    import yaml

    from daemon.cli import main

    image = tmp_path / "face.png"
    cv2.imwrite(str(image), frames[1])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    assert main(["analyze", str(image), "-c", str(config), "-r", str(tmp_path / "r.csv")]) == 0
    row = next(csv.DictReader((tmp_path / "r.csv").open()))
    face = analyze_image(frames[1], config)[0]
    assert face.box == tuple(int(row[k]) for k in "xywh") and face.label == row["label"]
    assert face.probs == {k: float(row[f"p_{k}"]) for k in face.probs}
    assert json.loads(json.dumps(face.signals))  # plain JSON values


def test_stills_are_independent_unless_video(frames, settings):
    stills = Analyzer(settings)
    assert [stills.analyze(f)[0].track for f in frames[:2]] == [1, 1]  # every image starts afresh
    video = Analyzer(settings, video=True)  # a sequence: a face is published once confirmed, then keeps its id
    tracks = [faces[0].track for f in read_frames(TALKING_HEAD, limit=12) if (faces := video.analyze(f))]
    assert len(tracks) >= 6 and set(tracks) == {1}


def test_bad_input_and_bad_settings(settings):
    analyzer = Analyzer(settings)
    assert analyzer.analyze(np.zeros((64, 64), np.uint8)) == []  # grey is fine, no face
    for bad, message in [(np.zeros((64, 64, 3), np.float32), "uint8"), ([[0]], "uint8"),
                         (np.zeros((64, 64, 2), np.uint8), "shape")]:
        with pytest.raises(ValueError, match=message):
            analyzer.analyze(bad)
    with pytest.raises(ConfigError, match="classifier.threads"):
        Analyzer({**settings, "classifier": {"threads": 0}})
