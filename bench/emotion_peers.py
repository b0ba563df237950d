"""The emotion models side by side with their peers, on two validation distributions, in one run.

Rows: the daemon's shipped emotion models (each run by the daemon's own classifier, ``TfliteModel``,
through its manifest: crop contract, flip averaging, int8 as shipped) and two peers as their
authors ship them, one face per call:

* the ``fer`` package's TFLite (mini-Xception, 64×64 grey, ``(x/255 - 0.5) * 2``);
* OpenCV Zoo's RAF-DB MobileFaceNet (int8 ONNX in ``cv2.dnn``; 112×112 RGB aligned by YuNet's
  five points, found on the face upscaled 4×: ``converter/peer_teacher.py``).

Sets: FER-2013 PublicTest against the FER+ annotators' majority (3,370 faces with one), and
CK+48 (927 posed lab faces, contempt left out; **validation only**: nothing here trains on it).
Accuracy and every class's recall on each, then ms per face on one core (median of single-face
calls on a real talking-head crop; the ``TfliteModel`` rows include their flip-averaged pair and
preprocessing; the RAF row's landmark search is not counted: the daemon's detector gives them).

    python bench/emotion_peers.py                # print the table
    python bench/emotion_peers.py --write        # ... and replace the table in bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from _common import REPO, SHARED, TALKING_HEAD, machine, pin_to_core, require, table

sys.path.insert(0, str(REPO))

FER_TFLITE = SHARED / "peers" / "fer_25.10.3_emotion_model_quantized.tflite"
RAF_ONNX = SHARED / "peers" / "opencv_zoo_fer_mobilefacenet_int8.onnx"
YUNET = REPO / "models" / "face_detection_yunet_2023mar.onnx"
FER2013 = SHARED / "fer2013"
CKPLUS = SHARED / "ckplus48"
OURS = ("emotion_wild.tflite", "emotion_wild_fp16.tflite", "emotion_ferplus.tflite")
LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
FER_PKG_ORDER = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # fer2013.csv's
MARK_BEGIN, MARK_END = "<!-- emotion_peers: begin -->", "<!-- emotion_peers: end -->"


class FerPackage:
    """The ``fer`` package's model, fed as the package feeds it."""

    name = "fer package (mini-Xception, float)"

    def __init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(str(FER_TFLITE), num_threads=1)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]
        self.out = self.it.get_output_details()[0]["index"]
        self.order = [FER_PKG_ORDER.index(c) for c in LABELS]

    def face(self, grey: np.ndarray) -> np.ndarray:
        import cv2

        x = cv2.resize(grey, (64, 64)).astype(np.float32)
        self.it.set_tensor(self.inp, ((x / 255.0 - 0.5) * 2.0)[None, :, :, None])
        self.it.invoke()
        return np.array(self.it.get_tensor(self.out)[0])[self.order]


class RafPeer:
    """OpenCV Zoo's RAF-DB MobileFaceNet on YuNet-aligned faces, one face per call (no mirror)."""

    name = "OpenCV Zoo MobileFaceNet (RAF-DB, int8)"

    def __init__(self) -> None:
        from converter.peer_teacher import PeerTeacher

        self.t = PeerTeacher(RAF_ONNX, YUNET)

    def face(self, grey: np.ndarray, points: np.ndarray | None = None) -> np.ndarray:
        if points is None:
            points = self.t.landmarks(grey)
        if points is None:  # no landmarks: where YuNet puts them on an average centred face
            points = np.array([[0.29, 0.39], [0.68, 0.39], [0.49, 0.6], [0.34, 0.76], [0.65, 0.76]], np.float32) * grey.shape[1]
        return self.t.probs(grey, points, mirror=False)


def sets() -> dict:
    from converter.datasets import load_ckplus, load_split
    from converter.ferplus import load_ferplus

    test = load_split(FER2013, "test", labels=LABELS)
    t = load_ferplus(test, FER2013 / "ferplus")
    has = t.majority >= 0
    return {
        "FER+ PublicTest": (test, t.index[has], t.majority[has]),
        "CK+48": (load_ckplus(CKPLUS, LABELS), None, None),
    }


def scores(predict, data: dict) -> dict[str, tuple[float, list[float]]]:
    """{set: (accuracy, per-class recall)}; ``predict`` maps a Split to (N, 7) scores."""
    from converter.evaluate import confusion_matrix, metrics_from_confusion

    out = {}
    for name, (split, index, target) in data.items():
        p = predict(split)
        y = split.y
        if index is not None:
            p, y = p[index], target
        m = metrics_from_confusion(confusion_matrix(y, p.argmax(1), 7), LABELS)
        out[name] = (m.accuracy, m.recall)
    return out


def ms_per_face(call, runs: int, rounds: int = 3) -> float:
    for _ in range(10):
        call()
    per = []
    for _ in range(rounds):
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            call()
            ts.append((time.perf_counter() - t0) * 1000.0)
        per.append(statistics.median(ts))
    return statistics.median(per)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200, help="single-face calls per timing round")
    ap.add_argument("--models", nargs="*", default=list(OURS), help="the daemon's models (files in models/)")
    ap.add_argument("--write", action="store_true", help="replace the table in bench/RESULTS.md")
    args = ap.parse_args()
    require(FER_TFLITE, RAF_ONNX, FER2013, CKPLUS, TALKING_HEAD)
    print(machine())
    print(pin_to_core(0))
    import cv2

    from converter.evaluate import evaluate_tflite, load_tflite

    data = sets()
    cap = cv2.VideoCapture(str(TALKING_HEAD))
    ok, frame = cap.read()
    assert ok, TALKING_HEAD
    box = (290, 40, 150, 150)
    crop = cv2.cvtColor(frame[40:190, 290:440], cv2.COLOR_BGR2GRAY)

    rows: list[tuple[str, dict, float]] = []
    for name in args.models:
        m = load_tflite(REPO / "models" / name)
        rows.append((f"`{name}` ({m.manifest.quantization.type})",
                     scores(lambda s: evaluate_tflite(m, s).probs, data),
                     ms_per_face(lambda: m.classify(frame, [box]), args.runs)))
    fer = FerPackage()
    rows.append((fer.name, scores(lambda s: np.stack([fer.face(s.image(i)) for i in range(len(s))]), data),
                 ms_per_face(lambda: fer.face(crop), args.runs)))
    raf = RafPeer()
    pts = raf.t.landmarks(crop)
    rows.append((raf.name, scores(lambda s: np.stack([raf.face(s.image(i)) for i in range(len(s))]), data),
                 ms_per_face(lambda: raf.face(crop, pts), args.runs)))

    header = ["model", "set", "accuracy", *LABELS, "ms/face"]
    body = []
    for name, sc, ms in rows:
        for k, (set_name, (acc, rec)) in enumerate(sc.items()):
            body.append([name if k == 0 else "", set_name, f"{100 * acc:.1f}",
                         *("-" if r is None else f"{100 * r:.0f}" for r in rec), f"{ms:.2f}" if k == 0 else ""])
    text = table(body, header)
    print(text)
    if args.write:
        md = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        md += ["| " + " | ".join(r) + " |" for r in body]
        block = "\n".join([MARK_BEGIN, f"`python bench/emotion_peers.py --write`, {time.strftime('%Y-%m-%d')}, "
                           f"{machine().splitlines()[0]}", "", *md, MARK_END])
        res = REPO / "bench" / "RESULTS.md"
        old = res.read_text()
        if MARK_BEGIN in old:
            new = old[: old.index(MARK_BEGIN)] + block + old[old.index(MARK_END) + len(MARK_END):]
        else:
            new = old.rstrip("\n") + "\n\n## Emotion models and their peers (issue 33)\n\n" + block + "\n"
        res.write_text(new)
        print(f"wrote {res}")


if __name__ == "__main__":
    main()
