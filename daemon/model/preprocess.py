"""Turn a face in a camera frame into model input, exactly as the manifest says.

This is the only implementation of preprocessing in the project: the converter imports it for
evaluation and for the int8 representative dataset, so what the model was measured on is what
the daemon feeds it. Normalisation and quantisation are folded into one 256-entry lookup table,
so the per-face cost is one crop, one colour conversion, one resize and one table lookup.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..types import Box
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


class Preprocessor:
    """Applies one manifest for one input dtype; reuses its buffers between calls."""

    def __init__(self, manifest: Manifest, dtype: np.dtype | type = np.float32) -> None:
        self.manifest = manifest
        spec = manifest.input
        self.size = (spec.width, spec.height)
        self.gray = spec.channels == 1
        self.rgb = spec.color == "rgb"
        self.margin = manifest.crop.margin
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

    def prepare(self, frame: np.ndarray, boxes: Sequence[Box], mirror: bool = False) -> np.ndarray:
        """All faces of a frame → one batch (then, with ``mirror``, the same faces mirrored, for
        flip averaging in the same invoke). The returned array is reused by the next call."""
        n = len(boxes)
        rows = 2 * n if mirror else n
        if self._batch.shape[0] < rows:
            self._batch = np.empty((rows, *self.shape), dtype=self.dtype)
        batch = self._batch[:rows]
        for i, box in enumerate(boxes):
            self.prepare_face(self.crop(frame, box), out=batch[i])
        if mirror:
            batch[n:] = batch[:n, :, ::-1]
        return batch
