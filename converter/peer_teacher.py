"""A second teacher: OpenCV Zoo's RAF-DB MobileFaceNet, run on FER-2013 faces aligned as it expects.

The FER+ votes say what ten people saw in a FER-2013 face; RAF-DB (30 k faces from the web,
posed and spontaneous, many 3/4 views) taught this peer what anger, disgust and fear look like
on faces FER-2013 has few of. Its soft outputs on the *training* faces, blended with the votes,
carry that knowledge into the daemon's own network without shipping the peer.

How the peer is fed (``../shared/data/README.md``): a 112×112 RGB face aligned by YuNet's five
points (eyes, nose, mouth corners) to the standard template with a similarity transform, pixels
``(x/255 - 0.5)/0.5``, 7 logits in the order angry, disgust, fearful, happy, neutral, sad,
surprised (the daemon's order). A 48×48 FER-2013 face is too small for YuNet, so it is upscaled
4× first; where YuNet finds no face (a few per cent: hands, profile, cartoons) the split's mean
landmarks stand in, FER-2013 faces being centred by the detector that cut them. The probabilities
are flip-averaged (the face and its mirror), so they stay valid under the flip augmentation, and
cached beside the run keyed by the peer file's SHA-256 and the images.

The peer runs in ``cv2.dnn`` one face at a time (its int8 graph does not take a batch in OpenCV
4.14), about 13 ms per face and mirror on one core: 28.5 k training faces in about 12 minutes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from .align import Landmarker, cached_landmarks, filled
from .datasets import Split, file_sha256, images_key

# ArcFace's 112×112 five-point template (eye centres, nose tip, mouth corners)
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], np.float32
)
PEER_LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


class PeerTeacher:
    """YuNet landmarks + the RAF-DB MobileFaceNet, on grey face crops of any size."""

    def __init__(self, peer: str | Path, yunet: str | Path) -> None:
        self.peer, self.yunet = Path(peer), Path(yunet)
        for p in (self.peer, self.yunet):
            if not p.is_file():
                raise FileNotFoundError(f"peer teacher file not found: {p}")
        self.net = cv2.dnn.readNet(str(self.peer))
        self.landmarks = Landmarker(self.yunet)

    def probs(self, grey: np.ndarray, points: np.ndarray, mirror: bool = True) -> np.ndarray:
        """Probabilities (7,) of one face aligned by ``points``, averaged with its mirror image's
        unless ``mirror`` is False (the peer as its authors run it)."""
        m, _ = cv2.estimateAffinePartial2D(points.astype(np.float32), TEMPLATE_112, method=cv2.LMEDS)
        face = cv2.warpAffine(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), m, (112, 112))
        views = (face, np.ascontiguousarray(face[:, ::-1])) if mirror else (face,)
        out = np.zeros(7, np.float64)
        for img in views:
            self.net.setInput(cv2.dnn.blobFromImage(img, 1 / 127.5, (112, 112), (127.5,) * 3, swapRB=True))
            z = self.net.forward()[0].astype(np.float64)
            e = np.exp(z - z.max())
            out += e / e.sum()
        return (out / len(views)).astype(np.float32)


def peer_targets(split: Split, peer: str | Path, yunet: str | Path, cache: Path) -> np.ndarray:
    """(N, 7) flip-averaged peer probabilities for every face of ``split`` in order, in the split's
    label order, from ``cache`` when it was made by the same peer on the same images."""
    if split.labels != PEER_LABELS:
        raise ValueError(f"the peer's classes are {PEER_LABELS}, the split's {split.labels}")
    key = {"peer_sha256": file_sha256(peer), "images": images_key(split)}
    if cache.is_file():
        with np.load(cache) as z:
            if json.loads(str(z["key"])) == key:
                print(f"peer targets for {split.name}: cached in {cache}")
                return z["probs"]
    teacher = PeerTeacher(peer, yunet)
    t0 = time.time()
    raw = cached_landmarks(split, yunet)  # the same points the aligned crop uses, found once
    points = filled(raw)
    probs = np.stack([teacher.probs(split.image(i), points[i]) for i in range(len(split))])
    missed = int(np.isnan(raw[:, 0, 0]).sum())
    acc = float(np.mean(probs.argmax(1) == split.y))
    print(f"peer targets for {split.name}: {len(probs)} faces in {time.time() - t0:.0f} s, "
          f"{missed} without landmarks (mean points used), agreement with the labels {acc:.4f}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, probs=probs, key=json.dumps(key), missed=np.isnan(raw[:, 0, 0]))
    return probs
