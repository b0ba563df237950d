"""How the default emotion model reads tilted faces, as is and turned upright by their eye points.

CK+48's 927 posed faces (contempt left out; validation only), upscaled 4× to 192 px (a face as
a camera at arm's length gives it; rolling a 48 px face and turning it back would blur it
twice), are rolled in the image plane by each angle (about the face's centre, the edge
repeated) and classified by the daemon's own classifier (``TfliteModel.classify``, the shipped
manifest, flip averaging) three times: as they are; turned upright (``classifier.upright``:
a face rolled by ``UPRIGHT_MIN_ROLL`` or more) by the roll ``daemon.model.preprocess.eye_roll``
reads from the eye points of the daemon's YuNet detector on the rolled face; and by the roll read
from the eye points the face had upright, rolled with it (what the FaceMesh of a followed face
gives: on the talking head rolled 25°, FaceMesh's points read 21.5° on a face that leans 3.5°
the other way, YuNet's 4.7°). Accuracy and every class's recall for each; each roll's median
and spread.

The roll is synthetic; the faces, the detector and the classifier are real. It measures how
much the model depends on upright faces and how much of that the daemon's turn gives back.

    python bench/emotion_roll.py                 # angles 0, ±10, ±20, ±30
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from _common import REPO, SHARED, machine, require, table

sys.path.insert(0, str(REPO))

CKPLUS = SHARED / "ckplus48"
YUNET = REPO / "models" / "face_detection_yunet_2023mar.onnx"
SCALE = 4
MODEL = REPO / "models" / "emotion_wild.tflite"


def rolled(img: np.ndarray, degrees: float) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--angles", default="0,10,-10,20,-20,30,-30", help="rolls in degrees (positive: counter-clockwise)")
    args = ap.parse_args()
    require(CKPLUS, YUNET, MODEL)
    print(machine())
    import cv2

    from converter.datasets import load_ckplus
    from daemon.model.preprocess import eye_roll
    from daemon.model.tflite import TfliteModel
    from daemon.vision.detectors import YunetConfig, make_detector

    model = TfliteModel(MODEL, threads=1)
    labels = list(model.labels)
    ck = load_ckplus(CKPLUS, labels)
    faces = [cv2.resize(ck.image(i), None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC) for i in range(len(ck))]
    detector = make_detector(YunetConfig(model=YUNET))
    present = [k for k in range(len(labels)) if np.any(ck.y == k)]
    rows = []
    def points(img: np.ndarray) -> np.ndarray | None:
        found = detector.detect(img)
        return max(found, key=lambda d: d.score).landmarks if found else None

    level = [points(cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)) for face in faces]  # each face's own eye points
    for degrees in (float(a) for a in args.angles.split(",")):
        names = ("as is", "upright, YuNet's eye points", "upright, the eye points rolled")
        preds: dict[str, list[int]] = {n: [] for n in names}
        measured: dict[str, list[float]] = {n: [] for n in names[1:]}
        for face, own in zip(faces, level):
            h, w = face.shape[:2]
            m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), degrees, 1.0)
            img = cv2.cvtColor(rolled(face, degrees), cv2.COLOR_GRAY2BGR)
            exact = None if own is None else own @ m[:, :2].T + m[:, 2]
            rolls = {names[0]: None, names[1]: eye_roll(points(img)), names[2]: eye_roll(exact)}
            for name, roll in rolls.items():
                if name in measured and roll is not None:
                    measured[name].append(roll)
                preds[name].append(int(np.argmax(model.classify(img, [(0, 0, w, h)], None if roll is None else [roll])[0])))
        for name, p in preds.items():
            p = np.asarray(p)
            recall = [f"{100 * np.mean(p[ck.y == k] == k):.0f}" for k in present]
            r = measured.get(name)
            spread = (f"{np.median(r):+.1f} ({np.percentile(r, 10):+.1f} to {np.percentile(r, 90):+.1f}), "
                      f"{len(r)} of {len(faces)}") if r else ""
            rows.append([f"{degrees:+.0f}", name, f"{100 * np.mean(p == ck.y):.1f}", *recall, spread])
    header = ["roll °", "faces", "CK+ %", *[labels[k] for k in present], "measured roll ° median (p10 to p90), found"]
    print(f"{MODEL.name} on CK+48 ({len(faces)} faces at {SCALE}x) rolled in the image plane, the whole face its box")
    print(table(rows, header))


if __name__ == "__main__":
    main()
