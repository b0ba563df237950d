"""``emotiond analyze --results``: one row per face in the documented columns, CSV and JSON the
same table, every input accounted for, and a results path that cannot be written → exit 73."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, TALKING_HEAD, read_frames
from daemon.cli import main
from daemon.results import columns
from daemon.vision.signals import signal_columns





@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three frames with a face, a blank image (no face) and a broken file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, frame in enumerate(read_frames(TALKING_HEAD, step=60, limit=3)):
        cv2.imwrite(str(folder / f"{i:02d}.jpg"), frame)
    cv2.imwrite(str(folder / "10_blank.png"), np.full((120, 160, 3), 128, np.uint8))
    (folder / "20_broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return folder


def test_the_documented_columns():
    assert columns(("happy", "sad")) == [
        "file", "frame", "time_s", "track", "primary", "x", "y", "w", "h", "label", "confidence",
        "p_happy", "p_sad", *signal_columns()]
    assert "eye_closed" in signal_columns()
    # The documentation lists the same columns.
    page = (REPO / "docs" / "integrate" / "analyze.md").read_text()
    assert "`file`, `frame`, `time_s`, `track`, `primary`, `x`, `y`, `w`, `h`, `label`, `confidence`" in page


def test_folder_results_csv_and_json_are_the_same_table(tmp_path, config, folder, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["analyze", str(folder), "-c", str(config), "--results", "out/r.csv"]) == 0
    printed = capsys.readouterr().out
    assert "analyzed 4, faces in 3, skipped 1 unreadable" in printed and "(4 rows)" in printed
    assert not (tmp_path / "photos.annotated").exists()  # --results without --out: the table only
    assert main(["analyze", str(folder), "-c", str(config), "--results", "out/r.json"]) == 0

    with (tmp_path / "out/r.csv").open() as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    labels = [c[2:] for c in reader.fieldnames if c.startswith("p_")]
    assert reader.fieldnames == columns(labels) and len(labels) == 7
    assert [Path(r["file"]).name for r in rows] == ["00.jpg", "01.jpg", "02.jpg", "10_blank.png"]
    assert [r["frame"] for r in rows] == ["0", "1", "2", "3"]
    for r in rows[:3]:
        probs = np.array([float(r[f"p_{name}"]) for name in labels])
        assert probs.sum() == pytest.approx(1.0, abs=0.02)
        assert r["label"] == labels[int(np.argmax(probs))] and float(r["confidence"]) == probs.max()
        assert r["primary"] == "1" and r["time_s"] == ""
        x, y, w, h = (int(r[k]) for k in "xywh")
        assert w > 40 and h > 40 and x + w <= 640 and y + h <= 360
        assert 0.0 <= float(r["eye_closed"]) <= 1.0
    blank = rows[3]
    assert all(blank[c] == "" for c in columns(labels)[3:])  # accounted for, no face

    doc = json.loads((tmp_path / "out/r.json").read_text())
    assert [list(d) for d in doc] == [columns(labels)] * 4
    for row, d in zip(rows, doc):
        assert d["file"] == row["file"] and d["label"] == (row["label"] or None)
        assert d["x"] == (int(row["x"]) if row["x"] else None)
        assert d["p_happy"] == (float(row["p_happy"]) if row["p_happy"] else None)
    assert doc[0]["primary"] is True and doc[3]["track"] is None


def test_results_with_out_writes_both(tmp_path, config, folder):
    out = tmp_path / "annotated"
    assert main(["analyze", str(folder / "00.jpg"), "-c", str(config), "-o", str(out / "a.jpg"), "-r", str(tmp_path / "r.csv")]) == 0
    assert cv2.imread(str(out / "a.jpg")) is not None
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 2


def test_unwritable_results_exit_73_and_a_wrong_suffix_64(tmp_path, config, folder, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    target = blocker / "r.csv"  # a folder that cannot be made: a file is in the way (root or not)
    assert main(["analyze", str(folder), "-c", str(config), "--results", str(target)]) == 73
    err = capsys.readouterr().err
    assert err.startswith("emotiond analyze: cannot write") and str(target) in err
    assert main(["analyze", str(folder), "-c", str(config), "--results", str(tmp_path / "r.txt")]) == 64
    assert "must end in .csv or .json" in capsys.readouterr().err
