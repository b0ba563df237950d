"""Classification cost per frame with 1 and 8 tracked faces, every face on every frame
(``classifier.max_rate_hz: 0``) against the round-robin rate limit (default 10 Hz).

The frames follow a 30 fps timeline (no sleeping: the cost is the compute per frame); each face
is a real talking-head crop (the clip's face, boxes shifted so the crops differ). The daemon's
own ``TfliteModel`` and ``ClassifySchedule`` run, one thread, pinned to one core.

    python bench/many_faces.py --frames 300 --models models/emotion_wild.tflite models/emotion_ferplus.tflite
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from _common import REPO, TALKING_HEAD, machine, pct, pin_to_core, require, table
from daemon.model.tflite import TfliteModel
from daemon.vision.schedule import ClassifySchedule
from daemon.vision.tracking import Track

FPS = 30.0


def frame_and_boxes(n: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    cap = cv2.VideoCapture(str(TALKING_HEAD))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"cannot read {TALKING_HEAD}")
    x, y, s = 250, 60, 140  # the clip's face (YuNet box of frame 0, rounded)
    return frame, [(x + 6 * (i % 4) - 9, y + 6 * (i // 4) - 3, s, s) for i in range(n)]


def per_frame_ms(model: TfliteModel, faces: int, rate: float, frames: int) -> list[float]:
    frame, boxes = frame_and_boxes(faces)
    tracks = [Track(i, b, 0.0, 0.0) for i, b in enumerate(boxes)]
    sched = ClassifySchedule(rate)
    model.classify(frame, boxes)  # warm-up: interpreters for this batch size
    out = []
    for i in range(frames):
        t0 = time.perf_counter()
        due = sched.due(tracks, i / FPS)
        if due:
            probs = model.classify(frame, [tr.box for tr in due])
            for tr, p in zip(due, probs):
                tr.probs = p
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rate", type=float, default=10.0, help="classifier.max_rate_hz to compare with 0 (every frame)")
    ap.add_argument("--models", nargs="+", default=[str(REPO / "models" / "emotion_wild.tflite")])
    args = ap.parse_args()
    require(TALKING_HEAD)
    print(machine(), "|", pin_to_core(0))
    rows = []
    for path in map(Path, args.models):
        model = TfliteModel(path, threads=1)
        for faces in (1, 8):
            for rate in (0.0, args.rate):
                ms = per_frame_ms(model, faces, rate, args.frames)
                rows.append([path.name, str(faces), "every frame" if rate == 0 else f"{rate:g} Hz",
                             f"{np.mean(ms):.2f}", f"{pct(ms, 50):.2f}", f"{pct(ms, 99):.2f}", f"{max(ms):.2f}"])
    print(f"classify ms per frame, {args.frames} frames at {FPS:g} fps, flip averaging as the manifest says")
    print(table(rows, ["model", "faces", "max_rate_hz", "mean", "p50", "p99", "max"]))


if __name__ == "__main__":
    main()
