"""Five landmarks for every face of a data set, once, and the faces cut by them as the daemon cuts them.

FER-2013 and CK+48 are 48-px crops, too small for YuNet's smallest anchors, so each face is
upscaled 4× first (as for the peer teacher). Where YuNet finds no face (0.9 % of FER-2013's
training faces: hands, profiles, cartoons) the set's mean points stand in: those crops were
centred by the detector that cut them. The points are cached per split, keyed by the images
and the detector file, so every run after the first reads them in a second.

``aligned(split, template)`` returns the split's faces cut by ``daemon.model.face_align`` (the
very function the daemon runs) to the manifest's template, as a pixel split the trainer caches;
``template_from(points)`` is FER-2013's mean points as fractions of the face side, which the
manifest carries.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import cv2
import numpy as np

from daemon.model.face_align import aligned_face, valid_points

from .datasets import Split, file_sha256, images_key

UPSCALE = 4  # 48 px faces → 192 px, where YuNet's smallest anchors find them
REPO = Path(__file__).resolve().parent.parent
YUNET = REPO / "models" / "face_detection_yunet_2023mar.onnx"  # the daemon's own detector
CACHE = REPO / "build" / "landmarks"


class Landmarker:
    """YuNet's five points of the most confident face in a small grey crop."""

    def __init__(self, yunet: str | Path) -> None:
        self.yunet = Path(yunet)
        if not self.yunet.is_file():
            raise FileNotFoundError(f"YuNet model not found: {self.yunet}")
        self.det = cv2.FaceDetectorYN.create(str(self.yunet), "", (192, 192), 0.5, 0.3, 5)

    def __call__(self, grey: np.ndarray) -> np.ndarray | None:
        h, w = grey.shape[:2]
        big = cv2.resize(grey, (w * UPSCALE, h * UPSCALE), interpolation=cv2.INTER_CUBIC)
        self.det.setInputSize((w * UPSCALE, h * UPSCALE))
        _, faces = self.det.detect(cv2.cvtColor(big, cv2.COLOR_GRAY2BGR) if big.ndim == 2 else big)
        if faces is None or len(faces) == 0:
            return None
        best = faces[int(np.argmax(faces[:, -1]))]
        return (best[4:14].reshape(5, 2) / UPSCALE).astype(np.float32)


def split_landmarks(split: Split, yunet: str | Path, cache: Path) -> np.ndarray:
    """(N, 5, 2) points of every face of ``split`` in its pixels, NaN where YuNet found none."""
    key = {"yunet_sha256": file_sha256(yunet), "images": images_key(split), "upscale": UPSCALE}
    if cache.is_file():
        with np.load(cache) as z:
            if json.loads(str(z["key"])) == key:
                return z["points"]
    det = Landmarker(yunet)
    t0 = time.time()
    pts = np.full((len(split), 5, 2), np.nan, np.float32)
    for i in range(len(split)):
        p = det(split.image(i))
        if p is not None and valid_points(p):
            pts[i] = p
    missed = int(np.isnan(pts[:, 0, 0]).sum())
    print(f"landmarks of {split.name}: {len(split)} faces in {time.time() - t0:.0f} s, {missed} without")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, points=pts, key=json.dumps(key))
    return pts


def filled(points: np.ndarray) -> np.ndarray:
    """The points with the faces YuNet missed given the set's mean points."""
    found = ~np.isnan(points[:, 0, 0])
    if not found.any():
        raise ValueError("YuNet found no face in the whole set")
    out = points.copy()
    out[~found] = np.nanmean(points[found], axis=0)
    return out


def template_from(points: np.ndarray, side: int) -> list[list[float]]:
    """The mean five points of a set of ``side``-px faces, as fractions of the side (the
    manifest's ``crop.template``), rounded to 4 places."""
    found = points[~np.isnan(points[:, 0, 0])]
    # in float64: float32 means written to JSON carry noise (0.310699999332428 for 0.3107)
    return np.round(found.mean(axis=0, dtype=np.float64) / side, 4).tolist()


def cached_landmarks(split: Split, yunet: str | Path = YUNET, cache_dir: Path = CACHE) -> np.ndarray:
    """``split_landmarks`` in the one cache every user shares (``build/landmarks``), by split and images."""
    return split_landmarks(split, yunet, cache_dir / f"landmarks_{split.name}_{images_key(split)[:12]}.npz")


def with_points(split: Split, yunet: str | Path = YUNET, cache_dir: Path = CACHE) -> Split:
    """The split with its five points attached (missing ones filled), for the daemon's aligned
    crop; unchanged if it has them."""
    if split.points is not None:
        return split
    return dataclasses.replace(split, points=filled(cached_landmarks(split, yunet, cache_dir)))


def fer_template(split: Split, yunet: str | Path = YUNET, cache_dir: Path = CACHE) -> list[list[float]]:
    """The template of the manifest: the mean five points of ``split``'s faces (FER-2013's
    training faces, all one size), as fractions of their side."""
    return template_from(cached_landmarks(split, yunet, cache_dir), split.image(0).shape[0])


def aligned(split: Split, template, side: int) -> Split:
    """A pixel split of ``split``'s faces cut to ``template`` at ``side`` px by the daemon's own
    ``aligned_face``; ``split.points`` must be attached (``with_points``)."""
    if split.points is None:
        raise ValueError(f"{split.name}: no landmarks attached (converter.align.with_points)")
    tmpl = np.asarray(template, np.float64)
    pix = np.stack([aligned_face(split.image(i), split.points[i], tmpl, side) for i in range(len(split))])
    return dataclasses.replace(split, paths=None, pixels=pix, points=None)
