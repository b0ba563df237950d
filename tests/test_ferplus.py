"""FER+ votes (issue "Emotions as people see them"): the loader's decisions on a small votes CSV
made here (ties, unknown, NF, contempt, a file missing from the folder, an image without a row),
target distributions that sum to 1, the two views of ``converter evaluate`` on a tiny model,
and the manifest of the shipped emotion_ferplus.tflite."""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import pytest

from conftest import FER_LABELS, REPO
from converter.datasets import DatasetError, load_folder_split
from converter.evaluate import confusion_matrix, evaluate_cli, ferplus_view, metrics_from_confusion
from converter.ferplus import FERPLUS_COLUMNS, NO_MAJORITY, ferplus_targets, load_ferplus, read_votes

HEADER = "file,class," + ",".join(FERPLUS_COLUMNS) + ",dist\n"
#            neutral happy surprise sad anger disgust fear contempt unknown NF
ROWS = {
    "happy/a.jpg": (1, 8, 1, 0, 0, 0, 0, 0, 0, 0),  # clear happy
    "angry/b.jpg": (6, 0, 0, 0, 3, 0, 0, 1, 0, 0),  # FER-2013 says angry, people say neutral
    "sad/c.jpg": (0, 0, 0, 4, 4, 0, 0, 0, 2, 0),  # a tie: sad and anger
    "fear/d.jpg": (1, 0, 2, 0, 0, 0, 1, 0, 6, 0),  # unknown majority
    "disgust/e.jpg": (0, 0, 0, 0, 1, 3, 0, 6, 0, 0),  # contempt majority
    "neutral/f.jpg": (2, 0, 0, 0, 0, 0, 0, 0, 0, 8),  # not a face
    "surprise/g.jpg": (0, 0, 0, 0, 0, 0, 0, 0, 3, 0),  # only unknown: nothing to learn
    "happy/missing.jpg": (0, 10, 0, 0, 0, 0, 0, 0, 0, 0),  # a row whose image is not in the folder
}
IMAGES = ["happy/a.jpg", "angry/b.jpg", "sad/c.jpg", "fear/d.jpg", "disgust/e.jpg", "neutral/f.jpg",
          "surprise/g.jpg", "happy/h.jpg"]  # h has no row


@pytest.fixture()
def votes_dir(tmp_path):
    rng = np.random.default_rng(0)
    for rel in IMAGES:
        p = tmp_path / "data" / "test" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    for name in FER_LABELS:  # every class folder, as FER-2013's layout has them
        (tmp_path / "data" / "test" / name).mkdir(exist_ok=True)
    folder = tmp_path / "ferplus"
    folder.mkdir()
    (folder / "publictest.csv").write_text(
        HEADER + "".join(f"{f},{f.split('/')[0]},{','.join(map(str, v))},1.0\n" for f, v in ROWS.items()))
    return tmp_path


def test_the_votes_loader_keeps_what_people_can_teach_and_says_what_it_left_out(votes_dir):
    split = load_folder_split(votes_dir / "data", "test", FER_LABELS)
    t = load_ferplus(split, votes_dir / "ferplus")
    kept = [p.split("/test/")[1] for p in t.split.paths]
    assert sorted(kept) == sorted(["happy/a.jpg", "angry/b.jpg", "sad/c.jpg", "fear/d.jpg", "disgust/e.jpg"])
    assert t.dropped == {"no FER+ row": 1, "not a face (NF majority)": 1, "no emotion vote": 1,
                         "FER+ row without an image in the folder": 1}
    assert t.no_majority == {"tie": 1, "unknown majority": 1, "contempt majority": 1}
    by = dict(zip(kept, zip(t.dist, t.majority)))
    np.testing.assert_allclose(t.dist.sum(axis=1), 1.0, atol=1e-6)
    # unknown and contempt votes are dropped and the rest renormalised over the seven classes
    np.testing.assert_allclose(by["happy/a.jpg"][0], [0, 0, 0, 0.8, 0.1, 0, 0.1], atol=1e-6)
    np.testing.assert_allclose(by["angry/b.jpg"][0], [3 / 9, 0, 0, 0, 6 / 9, 0, 0], atol=1e-6)
    np.testing.assert_allclose(by["fear/d.jpg"][0], [0, 0, 0.25, 0, 0.25, 0, 0.5], atol=1e-6)
    np.testing.assert_allclose(by["disgust/e.jpg"][0], [0.25, 0.75, 0, 0, 0, 0, 0], atol=1e-6)
    assert by["happy/a.jpg"][1] == FER_LABELS.index("happy")
    assert by["angry/b.jpg"][1] == FER_LABELS.index("neutral")  # the people's majority, not FER-2013's label
    assert {k for k, (_, m) in by.items() if m == NO_MAJORITY} == {"sad/c.jpg", "fear/d.jpg", "disgust/e.jpg"}
    assert t.split.y[kept.index("angry/b.jpg")] == FER_LABELS.index("angry")  # the original label is kept


def test_bad_votes_files_are_errors_that_name_them(votes_dir, tmp_path):
    with pytest.raises(DatasetError, match="not found: .*nowhere.csv"):
        read_votes(tmp_path / "nowhere.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "happy/a.jpg,happy,1,x,0,0,0,0,0,0,0,0,1.0\n")
    with pytest.raises(DatasetError, match=r"bad.csv:2: .*integers"):
        read_votes(bad)
    (tmp_path / "short.csv").write_text("file,class,neutral\nhappy/a.jpg,happy,1\n")
    with pytest.raises(DatasetError, match="lacks columns"):
        read_votes(tmp_path / "short.csv")
    split = load_folder_split(votes_dir / "data", "test", FER_LABELS)
    with pytest.raises(DatasetError, match="no image"):
        ferplus_targets(split, {"happy/other.jpg": np.ones(10, np.int32)})


def test_the_majority_view_leaves_out_faces_without_a_majority(votes_dir):
    split = load_folder_split(votes_dir / "data", "test", FER_LABELS)
    t = load_ferplus(split, votes_dir / "ferplus")
    probs = np.zeros((len(split), 7), np.float32)
    probs[:, FER_LABELS.index("neutral")] = 1.0  # a model that always says neutral
    m = ferplus_view(probs, t, FER_LABELS)
    assert int(m.confusion.sum()) == 2  # a.jpg (happy) and b.jpg (neutral); the tie and the others left out
    assert m.accuracy == pytest.approx(0.5)
    assert m.recall[FER_LABELS.index("neutral")] == 1.0 and m.recall[FER_LABELS.index("happy")] == 0.0
    original = metrics_from_confusion(confusion_matrix(split.y, probs.argmax(1), 7), FER_LABELS)
    # the original view counts every image, by its FER-2013 label: only f.jpg (NF to people) is "neutral"
    assert int(original.confusion.sum()) == len(split) == 8 and original.accuracy == pytest.approx(1 / 8)


def test_evaluate_reports_both_views_on_a_tiny_model(votes_dir, tiny_float_model, tmp_path, capsys):
    out = tmp_path / "eval"
    args = argparse.Namespace(model=str(tiny_float_model), data=str(votes_dir / "data"), split="test", manifest=None,
                              out=str(out), limit=None, batch=4, tta_flip=False, ferplus=str(votes_dir / "ferplus"))
    assert evaluate_cli(args) == 0
    text = capsys.readouterr().out
    assert "ferplus: 2 images" in text and "original: 8 images" in text
    ferplus = json.loads((out / f"{tiny_float_model.stem}.ferplus.metrics.json").read_text())
    original = json.loads((out / f"{tiny_float_model.stem}.metrics.json").read_text())
    assert ferplus["n"] == 2 and original["n"] == 8
    assert ferplus["reference"] == "FER+ majority"
    assert (out / f"{tiny_float_model.stem}.ferplus.confusion.png").stat().st_size > 0


def test_emotion_ferplus_was_chosen_against_the_ferplus_majority_at_one_networks_cost():
    """The shipped alternative (issue 33): the model closest to the FER+ annotators, int8 only,
    at the default's cost. Its figures are its manifest's; the checks are what they must show."""
    manifest = json.loads((REPO / "models" / "emotion_ferplus.json").read_text())
    fp = manifest["metrics_ferplus"]
    assert fp["split"] == "test" and fp["n"] == 3370 and fp["left_out"]["tie"] == 159
    assert fp["accuracy"] >= 0.82 and fp["macro_recall"] >= 0.70  # the FER+ issue's targets, as the daemon runs it
    assert manifest["metrics"]["accuracy"] > 0.5  # the original labels stay reported
    assert set(fp["per_class_recall"]) == set(manifest["labels"])
    assert manifest["flip_average"] is True and manifest["quantization"]["type"] == "int8"
    assert manifest["output_balance"]["tau"] == 0.5  # square-root logit adjustment by the FER+ train prior
    assert not (REPO / "models" / "emotion_ferplus_fp16.tflite").exists()  # int8 only
    # one MobileNetV2-96, like the default: the same weights to hold and run
    size = (REPO / "models" / "emotion_ferplus.tflite").stat().st_size
    assert 0.9 < size / (REPO / "models" / "emotion_wild.tflite").stat().st_size < 1.1


def test_emotion_ferplus_reads_real_faces_like_the_people_did():
    """Talking head frames (a woman speaking, mostly neutral to the eye): the FER+ model, run by the
    daemon's classifier on the detected face, says neutral or happy, never a rare class."""
    from conftest import read_frames, shared_file
    from daemon.model.tflite import TfliteModel

    shared_file("videos/talking_head_640x360.mp4")
    frames = read_frames("videos/talking_head_640x360.mp4", limit=60)[::6]
    model = TfliteModel(REPO / "models" / "emotion_ferplus.tflite")
    box = (290, 40, 150, 150)  # her face in these frames (YuNet's box, rounded)
    probs = np.concatenate([model.classify(f, [box]) for f in frames])
    labels = [model.labels[i] for i in probs.argmax(axis=1)]
    assert set(labels) <= {"neutral", "happy"}, labels
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)
