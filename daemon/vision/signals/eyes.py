"""Eye closure of a face: find the two eyes, classify both in one batch, average.

The eye model (``converter eyes``, trained on CEW) sees 24×24 grey patches cut tight around
one eye. The eyes are found from YuNet's eye landmarks when the detector gives them, else from
the face box's geometry: on Haar boxes the eye centres sit at a fixed share of the box
(measured on the talking-head clip against YuNet's landmarks: x 0.33 / 0.69, y 0.40 of the box,
inter-ocular distance 0.36 of its width, spread under 0.02). Each eye patch is a square
``EYE_SIDE_PER_IOD`` inter-ocular distances wide, which frames an eye as CEW does (corner to
corner with a little lid and brow); the manifest's crop margin is applied on top, and the
daemon's Preprocessor does the rest, exactly as for training-time evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from ...types import Box, FaceState, SignalValue
from .base import FaceSignal, SignalConfig

# Where the eyes are in a Haar face box (fractions of its width/height), and how wide an eye
# patch is, in inter-ocular distances (IOD). Measured on talking_head_640x360.mp4.
HAAR_EYE_X = (0.33, 0.69)  # image-left eye (the person's right), image-right eye
HAAR_EYE_Y = 0.40
HAAR_IOD_PER_WIDTH = 0.36
EYE_SIDE_PER_IOD = 0.7
# Landmarks are (right eye, left eye, nose, mouth right, mouth left): YuNet's order.
RIGHT_EYE, LEFT_EYE = 0, 1


# From this closed probability the annotation says "closed".
EYES_CLOSED_AT = 0.5


class EyesConfig(SignalConfig):
    enabled: bool = Field(True, title="estimate eye closure on the primary face (needed by driver_fatigue)")
    model: Path = Field(Path("models/eye_state.tflite"), title="eye open/closed model (.tflite) with its .json manifest")
    min_iod_px: float = Field(16.0, gt=0, title="smaller faces (inter-ocular distance in pixels) give no eye reading")
    min_contrast: float = Field(
        6.0, ge=0, title="eye patches flatter than this (grey standard deviation, 0-255) are unreadable: sunglasses, a mask")


def eye_centres(box: Box, landmarks: np.ndarray | None) -> np.ndarray:
    """(2, 2) float: the two eye centres in frame pixels, image-left eye first."""
    if landmarks is not None and len(landmarks) > LEFT_EYE:
        return np.asarray(landmarks[[RIGHT_EYE, LEFT_EYE]], dtype=np.float32)
    x, y, w, h = box
    return np.array([[x + fx * w, y + HAAR_EYE_Y * h] for fx in HAAR_EYE_X], dtype=np.float32)


def eye_boxes(centres: np.ndarray) -> list[Box]:
    """Square boxes around both eye centres, sized from the inter-ocular distance."""
    side = EYE_SIDE_PER_IOD * float(np.linalg.norm(centres[1] - centres[0]))
    return [(int(round(cx - side / 2)), int(round(cy - side / 2)), int(round(side)), int(round(side))) for cx, cy in centres]


class EyeStateEstimator:
    """``closed_prob(frame, box, landmarks)``: probability that the face's eyes are closed.

    None when the eyes cannot be read (face too small, eyes outside the frame): the fatigue
    rule treats that as unknown, never as closed.
    """

    def __init__(self, cfg: EyesConfig, threads: int = 1) -> None:
        from ...model.tflite import TfliteModel  # LiteRT and OpenCV load with the model, not with the config

        self.cfg = cfg
        self.model = TfliteModel(cfg.model, threads=threads)
        if "closed" not in self.model.labels:
            raise ValueError(f"eye model {cfg.model} has labels {self.model.labels}; expected one named 'closed'")
        self.closed = self.model.labels.index("closed")

    def closed_prob(self, frame_bgr: np.ndarray, box: Box, landmarks: np.ndarray | None = None) -> float | None:
        centres = eye_centres(box, landmarks)
        iod = float(np.linalg.norm(centres[1] - centres[0]))
        fh, fw = frame_bgr.shape[:2]
        if iod < self.cfg.min_iod_px:
            return None
        boxes = eye_boxes(centres)
        if any(x < 0 or y < 0 or x + s > fw or y + s > fh for x, y, s, _ in boxes):
            return None  # an eye cut by the frame edge would not look like a CEW patch
        if self.cfg.min_contrast and min(self._contrast(frame_bgr, b) for b in boxes) < self.cfg.min_contrast:
            # An eye patch flat: dark glasses or a cover. The model would still answer (flat
            # dark patches look "closed"); unreadable is the truth, and the degraded-monitoring
            # rule reports it. Measured on the clips: real eyes' central patches have a std of 10 and more.
            return None
        probs = self.model.classify(frame_bgr, boxes)
        return float(probs[:, self.closed].mean())

    @staticmethod
    def _contrast(frame_bgr: np.ndarray, box: Box) -> float:
        """Standard deviation of the central half of one eye patch, where iris, sclera and lid
        are (the rim may cross a lens edge, which is contrast of the wrong kind)."""
        x, y, w, h = box
        q, r = w // 4, h // 4
        return float(frame_bgr[y + r:y + h - r, x + q:x + w - q].std())


class EyeClosure(FaceSignal):
    """The ``eye_closed`` signal: the primary face's probability that its eyes are closed."""

    name = "eye_closed"
    config_key = "eyes"
    Config = EyesConfig
    title = "eye closure (eye open/closed model)"
    stage = "eyes"
    schema: ClassVar[dict[str, Any]] = {"type": "number", "minimum": 0, "maximum": 1}

    def __init__(self, cfg: EyesConfig, threads: int = 1) -> None:
        self.estimator = EyeStateEstimator(cfg, threads=threads)

    def measure(self, frame_bgr: np.ndarray, face: FaceState) -> SignalValue:
        return self.estimator.closed_prob(frame_bgr, face.box, face.landmarks)

    @classmethod
    def describe(cls, value: SignalValue) -> str | None:
        p = float(value)  # type: ignore[arg-type]
        closed = p >= EYES_CLOSED_AT
        return f"eyes {'closed' if closed else 'open'} {(p if closed else 1.0 - p):.0%}"
