"""Turn a face in a camera frame into model input, exactly as the manifest says.

This is the only implementation of preprocessing in the project: the converter imports it for
evaluation and for the int8 representative dataset, so what the model was measured on is what
the daemon feeds it. Normalisation and quantisation are folded into one 256-entry lookup table,
so the per-face cost is one crop, one colour conversion, one resize and one table lookup.

A face whose eyes are tilted (a head leaning on a shoulder, a camera mounted askew) is turned
upright inside the same crop when its eye points are given: FER-2013's faces, and so the
emotion model, are upright. CK+48's faces at 4x, rolled by 20° either way: 74.4 / 76.3 % as
they are, 78.3 / 79.1 % turned by their own eye points rolled with them (what a followed face's
FaceMesh gives); by 30°: 61.8 / 64.9 %, 76.6 / 76.6 %; upright: 80.3 %, untouched
(``bench/emotion_roll.py``). YuNet's eye points follow a roll by only part of it (25° read as
4.7° on the talking head), so faces known only to the detector are turned less or not at all.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from ..types import Box
from .face_align import aligned_face, valid_points
from .manifest import Manifest


def build_lut(manifest: Manifest, dtype: np.dtype | type) -> np.ndarray:
    """Map every uint8 pixel value to the model's input value (normalised, then quantised)."""
    dtype = np.dtype(dtype)
    norm = manifest.input.normalize
    x = np.arange(256, dtype=np.float64) * norm.scale + norm.offset
    if dtype.kind in "iu":
        q = manifest.quantization
        if not q.input_scale:
            raise ValueError(f"an {dtype} input needs quantization.input_scale in the manifest")
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / q.input_scale + (q.input_zero_point or 0)), info.min, info.max)
    return x.astype(dtype)


def square_crop(frame_hw: tuple[int, int], box: Box, margin: float) -> tuple[int, int, int, int]:
    """A square around the box, grown by ``margin`` of its side on each side, clamped to the frame.

    FER-2013 faces are square crops with some forehead and chin; a square crop keeps the face's
    aspect ratio when it is resized to the model's square input.
    """
    fh, fw = frame_hw
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0 = max(0, int(round(cx - side / 2.0)))
    y0 = max(0, int(round(cy - side / 2.0)))
    x1 = min(fw, int(round(cx + side / 2.0)))
    y1 = min(fh, int(round(cy + side / 2.0)))
    return x0, y0, x1, y1


# A roll under this is left as it is: YuNet's eye points on upright faces scatter by -3.6 to
# +2.8 degrees (p10-p90 on CK+48's 927 faces found at 4x), and an upright face keeps its pixels.
UPRIGHT_MIN_ROLL = 8.0
# Beyond this the eye points are more likely wrong (a profile, a hand) than the head so rolled.
UPRIGHT_MAX_ROLL = 45.0


def eye_roll(landmarks: np.ndarray | None) -> float | None:
    """The face's roll in degrees from its eye points (YuNet's order: the person's right eye
    first, at image left): positive when the eye at image right is lower. None without points
    or beyond ``UPRIGHT_MAX_ROLL``."""
    if landmarks is None or len(landmarks) < 2:
        return None
    (rx, ry), (lx, ly) = np.asarray(landmarks[0][:2], np.float64), np.asarray(landmarks[1][:2], np.float64)
    if not (math.isfinite(rx + ry + lx + ly) and lx > rx):
        return None
    roll = math.degrees(math.atan2(ly - ry, lx - rx))
    return roll if abs(roll) <= UPRIGHT_MAX_ROLL else None


class Preprocessor:
    """Applies one manifest for one input dtype; reuses its buffers between calls."""

    def __init__(self, manifest: Manifest, dtype: np.dtype | type = np.float32) -> None:
        self.manifest = manifest
        spec = manifest.input
        self.size = (spec.width, spec.height)
        self.gray = spec.channels == 1
        self.rgb = spec.color == "rgb"
        self.margin = manifest.crop.margin
        crop = manifest.crop
        self.template = np.asarray(crop.template, np.float64) if crop.align == "five_points" else None
        self.unaligned = 0  # faces of an aligned model cut by their box: no valid landmarks
        self.lut = build_lut(manifest, dtype)
        self.dtype = self.lut.dtype
        self.shape = (spec.height, spec.width, spec.channels)
        self._batch = np.empty((0, *self.shape), dtype=self.dtype)

    def prepare_face(self, face: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """A face image (BGR or grey uint8, already cropped) → one model input of ``self.shape``."""
        if face.ndim == 3 and face.shape[2] == 1:
            face = face[:, :, 0]
        if self.gray and face.ndim == 3:
            face = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
        elif not self.gray:
            if face.ndim == 2:
                face = cv2.cvtColor(face, cv2.COLOR_GRAY2RGB if self.rgb else cv2.COLOR_GRAY2BGR)
            elif self.rgb:
                face = cv2.cvtColor(face, cv2.COLOR_BGR2RGB)
        h, w = face.shape[:2]
        if (w, h) != self.size:
            shrinking = w > self.size[0] or h > self.size[1]
            face = cv2.resize(face, self.size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        if out is None:
            out = np.empty(self.shape, dtype=self.dtype)
        np.take(self.lut, face.reshape(self.shape), out=out)
        return out

    def crop(self, frame: np.ndarray, box: Box) -> np.ndarray:
        """A view of the frame around the face (no copy)."""
        x0, y0, x1, y1 = square_crop(frame.shape[:2], box, self.margin)
        return frame[y0:y1, x0:x1]

    def crop_upright(self, frame: np.ndarray, box: Box, roll: float) -> np.ndarray:
        """The same square as ``crop``, turned by ``roll`` degrees about its centre so the eyes
        are level (one affine warp of the crop's pixels only; the border repeats the edge)."""
        x0, y0, x1, y1 = square_crop(frame.shape[:2], box, self.margin)
        m = cv2.getRotationMatrix2D(((x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0), roll, 1.0)
        m[:, 2] -= (x0, y0)
        return cv2.warpAffine(frame, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    @property
    def aligns(self) -> bool:
        """The manifest cuts faces by their five landmarks (``crop.align: five_points``)."""
        return self.template is not None

    def aligned(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The face cut by its five points onto the manifest's template (``face_align``)."""
        return aligned_face(image, points, self.template, self.size[0], gray=self.gray)

    def prepare(self, frame: np.ndarray, boxes: Sequence[Box], mirror: bool = False,
                rolls: Sequence[float | None] | None = None,
                points: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
        """All faces of a frame → one batch (then, with ``mirror``, the same faces mirrored, for
        flip averaging in the same invoke). A model whose manifest aligns by five points gets
        each face cut by its ``points`` (one (5, 2) array or None per box); a face without valid
        points, or a model cut by the box, gets the box's square, turned upright first when its
        ``rolls`` entry (``eye_roll``'s degrees or None) is ``UPRIGHT_MIN_ROLL`` or more. The
        returned array is reused by the next call."""
        n = len(boxes)
        rows = 2 * n if mirror else n
        if self._batch.shape[0] < rows:
            self._batch = np.empty((rows, *self.shape), dtype=self.dtype)
        batch = self._batch[:rows]
        for i, box in enumerate(boxes):
            pts = points[i] if points is not None else None
            if self.template is not None and valid_points(pts):
                self.prepare_face(self.aligned(frame, pts), out=batch[i])
                continue
            if self.template is not None:
                self.unaligned += 1
            roll = rolls[i] if rolls is not None else None
            if roll is not None and abs(roll) >= UPRIGHT_MIN_ROLL:
                face = self.crop_upright(frame, box, roll)
            else:
                face = self.crop(frame, box)
            self.prepare_face(face, out=batch[i])
        if mirror:
            batch[n:] = batch[:n, :, ::-1]
        return batch
