"""``emotiond analyze`` through the real CLI entry point, on the real talking-head clip and on
folders of its frames: the output plays, has every frame, carries the drawing, and the
results table covers the video; bad input gives one clear line and a sysexits code. The
results columns themselves: tests/test_results.py."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import TALKING_HEAD, read_frames, shared_file
from daemon.analyze import Progress
from daemon.vision.annotate import PRIMARY_BGR
from daemon.cli import main

CLIP_FRAMES = 225  # talking_head_640x360.mp4: 9 s at 25 fps




def video_frames(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames, fps


def primary_pixels(image: np.ndarray) -> int:
    """Pixels drawn in the primary face's colour (the box and label background)."""
    return int(np.all(np.abs(image.astype(int) - PRIMARY_BGR) < 40, axis=2).sum())


def test_video_same_frames_and_rate_with_results_for_every_frame(tmp_path, config, capsys):
    clip = shared_file(TALKING_HEAD)
    out, timeline = tmp_path / "out" / "annotated.mp4", tmp_path / "results.csv"
    code = main(["analyze", str(clip), "--config", str(config), "--out", str(out), "--results", str(timeline)])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert f"wrote {out}: {CLIP_FRAMES} annotated" in printed and f"results {timeline}" in printed

    written, fps = video_frames(out)
    original, fps_in = video_frames(clip)
    assert len(original) == CLIP_FRAMES
    assert len(written) == CLIP_FRAMES and fps == pytest.approx(fps_in)
    assert written[0].shape == original[0].shape

    with timeline.open() as fh:
        rows = list(csv.DictReader(fh))
    labels = [k[2:] for k in rows[0] if k.startswith("p_")]
    assert len(labels) >= 2
    assert sorted({int(r["frame"]) for r in rows}) == list(range(CLIP_FRAMES))
    assert {r["file"] for r in rows} == {str(clip)}
    faces = [r for r in rows if r["track"]]
    face_frames = {int(r["frame"]) for r in faces}
    assert len(face_frames) >= 0.9 * CLIP_FRAMES  # one person faces the camera throughout
    for r in faces:
        probs = np.array([float(r[f"p_{name}"]) for name in labels])
        assert probs.sum() == pytest.approx(1.0, abs=0.02)
        assert r["label"] == labels[int(np.argmax(probs))]
        assert float(r["time_s"]) == pytest.approx(int(r["frame"]) / fps_in, abs=1e-3)
        x, y, w, h = (int(r[k]) for k in "xywh")
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 640 and y + h <= 360

    # The drawing is in the video where the timeline puts the primary face, and not elsewhere.
    i = min(face_frames)
    row = next(r for r in faces if int(r["frame"]) == i and r["primary"] == "1")
    x, y, w, h = (int(row[k]) for k in "xywh")
    drawn, plain = written[i], original[i]
    outline = (slice(y + h - 3, y + h + 3), slice(x, x + w))  # the box's bottom edge
    assert np.abs(drawn[outline].astype(int) - plain[outline]).mean() > 40
    assert primary_pixels(drawn) > primary_pixels(plain) + 4 * w
    far = (slice(300, 360), slice(0, 100))
    assert np.abs(drawn[far].astype(int) - plain[far]).mean() < 10


def test_json_results_of_a_video_and_the_old_timeline_option(tmp_path, config, capsys, monkeypatch):
    short = tmp_path / "short.mp4"
    frames = read_frames(TALKING_HEAD, limit=20)
    writer = cv2.VideoWriter(str(short), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, frames[0].shape[1::-1])
    for f in frames:
        writer.write(f)
    writer.release()
    results = tmp_path / "t.json"
    # --timeline is the old name of --results; with no --out only the table is written.
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["analyze", str(short), "-c", str(config), "--timeline", str(results)]) == 0
    assert "analyzed 20, faces in" in capsys.readouterr().out
    rows = json.loads(results.read_text())
    assert sorted({r["frame"] for r in rows}) == list(range(20))
    assert [r["time_s"] for r in rows if r["frame"] == 10][0] == pytest.approx(1.0)
    face = next(r for r in rows if r["frame"] == 10 and r["track"] is not None)
    probs = {k[2:]: v for k, v in face.items() if k.startswith("p_")}
    assert face["primary"] is True and face["label"] == max(probs, key=probs.get)
    assert not list(work.iterdir())


def test_folder_one_annotated_image_per_input(tmp_path, config, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = read_frames(TALKING_HEAD, step=40)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:02d}.jpg"), frame)
    (folder / "notes.txt").write_text("not an image")
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "annotated"
    assert main(["analyze", str(folder), "--config", str(config), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"{len(frames)} annotated" in captured.out and "skipped 1 unreadable" in captured.out
    assert f"skipping unreadable image {folder / 'zz_broken.jpg'}" in captured.err
    assert sorted(p.name for p in out.iterdir()) == [f"{i:02d}.jpg" for i in range(len(frames))]
    for i, frame in enumerate(frames):
        drawn = cv2.imread(str(out / f"{i:02d}.jpg"))
        assert drawn.shape == frame.shape
        assert primary_pixels(drawn) > primary_pixels(frame) + 200, f"no face drawn on {i:02d}.jpg"


def test_single_image_default_output_in_the_current_folder(tmp_path, config, monkeypatch):
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), read_frames(TALKING_HEAD, limit=1)[0])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["analyze", str(image), "--config", str(config)]) == 0
    assert cv2.imread(str(work / "face.annotated.png")) is not None


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.mp4", None, "input not found: {path}"),
        ("clip.mp4", b"\x00not a video" * 100, "cannot read video {path}"),
        ("face.jpg", b"\xff\xd8 truncated", "cannot read image {path}"),
    ],
)
def test_unreadable_input_names_the_file_and_exits_66(tmp_path, config, capsys, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main(["analyze", str(path), "--config", str(config), "--out", str(tmp_path / "o")]) == 66
    err = capsys.readouterr().err
    assert err.startswith("emotiond analyze: ") and message.format(path=path) in err


def test_empty_folder_is_refused(tmp_path, config, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["analyze", str(empty), "--config", str(config)]) == 66
    assert f"no .jpg/.jpeg/.png images in folder {empty}" in capsys.readouterr().err


def test_without_a_config_file_the_defaults_find_the_installed_models(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no config.yaml and no models/ here
    image = tmp_path / "face.jpg"
    cv2.imwrite(str(image), read_frames(TALKING_HEAD, limit=1)[0])
    assert main(["analyze", str(image)]) == 0, capsys.readouterr().err
    assert "faces in 1" in capsys.readouterr().out
    assert cv2.imread(str(tmp_path / "face.annotated.jpg")) is not None


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_only():
    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(200, "frames", stream)
        bar.update(50)
        bar.update(51)  # within 0.2 s of the last redraw: not drawn
        bar.close()
    assert tty.getvalue().startswith("\r[" + "#" * 7 + " " * 23 + "] 50/200 frames  25%")
    assert "51/200" not in tty.getvalue() and tty.getvalue().endswith("\n")
    assert pipe.getvalue() == ""
