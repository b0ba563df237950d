"""MediaPipe Iris on both eyes of a FaceMesh: eyelid contour and iris, per eye.

The model stage's iris runner (the face signal that uses it is ``daemon/vision/signals/gaze.py``).
``iris_landmark.tflite`` (MediaPipe, Apache-2.0) takes one eye crop, float32 ``[1, 64, 64, 3]``
RGB in [0, 1], and returns 71 eye-contour and brow points and 5 iris points (centre first),
x, y in crop pixels. Dependencies: NumPy, OpenCV, ai_edge_litert (never TensorFlow).

The crop is MediaPipe's own (``iris_landmark_left_and_right_from_face_landmarks`` and
``iris_landmark_cpu.pbtxt``): a square 2.3 eye widths wide, centred on the midpoint of the two
FaceMesh eye corners (33/133 for the image-left eye, 362/263 for the image-right one), rotated
so that the corner line is horizontal, padded by replicating the border, and for the
image-right eye mirrored, because the model was trained on one eye only. Both eyes run in one
invoke (the input is resized to a batch of two).

Contour order (MediaPipe's UpdateFaceLandmarksCalculator): points 0-8 are the lower lid from
the outer corner (0) to the inner corner (8), points 9-15 the upper lid from outer to inner;
the rest are outer rings and the brow. Everything below is measured in the crop, where the
corner line is horizontal, and scaled by the eye's width (corner to corner), so it does not
depend on the face's size or roll:

* ``dx``, ``dy``: the iris centre's offset from the corners' midpoint (x towards image right,
  y down), in eye widths;
* ``openness``: the lids' mean vertical distance over the eye width (measured on the
  talking-head clip: 0.25 open, 0.05-0.10 looking down at notes, 0.00-0.04 in a blink);
* ``iris_radius``: the iris's mean radius, in eye widths (about 0.22).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from .eye_crop import corners_from_mesh, eye_transform, eye_widths_px
from .tflite import ModelError, _litert

_SIZE = 64
_CROP_PER_EYE_WIDTH = 2.3  # MediaPipe's ROI scale
_LOWER = slice(1, 8)
_UPPER = slice(9, 16)


@dataclass(slots=True)
class EyeReading:
    """One eye, measured in its own upright crop (see the module docstring)."""

    dx: float  # iris centre right of the corners' midpoint (image direction), eye widths
    dy: float  # iris centre below the corners' midpoint, eye widths
    openness: float  # lid distance over eye width
    iris_radius: float  # eye widths
    width_px: float  # eye width in frame pixels (corner to corner)
    contour: np.ndarray  # (16, 2) float32: the lids in frame pixels (0-8 lower, 9-15 upper)
    iris: np.ndarray  # (5, 2) float32: iris centre and rim in frame pixels
    contrast: float = 0.0  # grey standard deviation (0-255) of the crop's central eye region


class IrisModel:
    """``read(frame, mesh)``: both eyes of a 468-point FaceMesh. One instance per thread."""

    def __init__(self, model_path: str | os.PathLike, threads: int = 1) -> None:
        path = os.fspath(model_path)
        if not os.path.isfile(path):
            raise ModelError(f"iris model file not found: {path}")
        try:
            self._it = _litert().Interpreter(model_path=path, num_threads=threads)
            inp = self._it.get_input_details()
            if len(inp) != 1 or tuple(inp[0]["shape"]) != (1, _SIZE, _SIZE, 3):
                raise ModelError(f"{path} is not a MediaPipe Iris model (input {[d['shape'].tolist() for d in inp]})")
            self._it.resize_tensor_input(inp[0]["index"], (2, _SIZE, _SIZE, 3))
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # LiteRT's errors for a bad flatbuffer
            raise ModelError(f"iris model could not be loaded: {path}: {exc}") from None
        out = {int(np.prod(d["shape"])) // 2: d["index"] for d in self._it.get_output_details()}  # a batch of two
        if 213 not in out or 15 not in out:
            raise ModelError(f"{path} is not a MediaPipe Iris model (output sizes {sorted(out)})")
        self._in, self._out_contour, self._out_iris = inp[0]["index"], out[213], out[15]
        self._input = np.zeros((2, _SIZE, _SIZE, 3), np.float32)
        self._rgb = np.zeros((_SIZE, _SIZE, 3), np.uint8)

    def read(self, frame_bgr: np.ndarray, mesh: np.ndarray) -> tuple[EyeReading, EyeReading] | None:
        """Both eyes (image-left first) of the face whose FaceMesh landmarks (frame pixels)
        are ``mesh``; None when an eye is degenerate (corners on top of each other)."""
        mats = []
        corners = corners_from_mesh(mesh)
        if float(eye_widths_px(corners).min()) < 2.0:
            return None
        for k in range(2):
            # the eye-state model's crop contract, at MediaPipe's scale (mirrored: the model knows one eye only)
            m = eye_transform(corners[k], _SIZE, _CROP_PER_EYE_WIDTH, mirror=k == 1)
            if m is None:
                return None
            crop = cv2.warpAffine(frame_bgr, m, (_SIZE, _SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            cv2.cvtColor(crop, cv2.COLOR_BGR2RGB if crop.ndim == 3 else cv2.COLOR_GRAY2RGB, dst=self._rgb)
            np.multiply(self._rgb, np.float32(1.0 / 255.0), out=self._input[k])
            mats.append(m)
        self._it.set_tensor(self._in, self._input)
        self._it.invoke()
        contours = self._it.get_tensor(self._out_contour).reshape(2, 71, 3)[:, :, :2]
        irises = self._it.get_tensor(self._out_iris).reshape(2, 5, 3)[:, :, :2]
        eyes = (self._measure(contours[0], irises[0], mats[0], False),
                self._measure(contours[1], irises[1], mats[1], True))
        for eye, crop in zip(eyes, self._input):
            # The eye spans the middle 1/2.3 of the crop: sunglasses or a cover make it flat.
            q = int(_SIZE * (1 - 1 / _CROP_PER_EYE_WIDTH) / 2)
            eye.contrast = float(crop[q:_SIZE - q, q:_SIZE - q].mean(axis=2).std() * 255.0)
        return eyes

    @staticmethod
    def _measure(contour: np.ndarray, iris: np.ndarray, m: np.ndarray, mirrored: bool) -> EyeReading:
        outer, inner = contour[0], contour[8]
        width = max(float(np.hypot(*(inner - outer))), 1e-6)
        mid = (outer + inner) / 2
        dx = float(iris[0, 0] - mid[0]) / width
        dy = float(iris[0, 1] - mid[1]) / width
        openness = float(contour[_LOWER, 1].mean() - contour[_UPPER, 1].mean()) / width
        radius = float(np.linalg.norm(iris[1:] - iris[0], axis=1).mean()) / width
        inv = cv2.invertAffineTransform(m)
        to_frame = lambda p: (p @ inv[:, :2].T + inv[:, 2]).astype(np.float32)  # noqa: E731
        lids = to_frame(contour[:16].astype(np.float64))
        return EyeReading(dx=-dx if mirrored else dx, dy=dy, openness=max(openness, 0.0), iris_radius=radius,
                          width_px=width / abs(float(np.linalg.det(m[:, :2]))) ** 0.5, contour=lids,
                          iris=to_frame(iris.astype(np.float64)))
