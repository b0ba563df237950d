"""Gaze of the primary face: where the eyes point inside the head, and how open the lids are.

MediaPipe Iris (``models/iris_landmark.tflite``, Apache-2.0; ``daemon/model/iris.py``) runs on
both eyes, cropped from the FaceMesh points that the ``head_pose`` signal measured on the same
face in the same frame (so it needs ``head_pose`` on, and costs no detection of its own). From
the iris centre against the eye corners and the lids it gives:

* ``yaw``, ``pitch`` in degrees: the eyes' direction relative to the head (yaw > 0: towards the
  driver's left, the image's right on a camera that is not mirrored; pitch < 0: down), from the
  iris centre's offset off the corners' midpoint on an eyeball of ``EYEBALL_RADIUS`` eye widths
  (11-12 mm eyeball radius over a 28-30 mm eye), the mean of both eyes. The vertical zero is
  ``NEUTRAL_DY`` (the iris sits a little above the corner line when looking ahead). The rules
  add head pose to this and calibrate each driver's own road direction on top, so a driver's
  constant offsets cancel; the gain is a population constant;
* ``confidence`` 0..1: how far to trust the direction: the head pose's confidence, times the
  eyes' size in pixels (``min_eye_px``), times the iris being visible (a shut lid has no
  iris), times the two eyes agreeing;
* ``openness``: the lids' aperture over the eye's width from the eyelid contour, the mean of
  both eyes (0.25 open on the talking head; 0.05-0.10 looking down at her notes; under 0.045 in
  a blink). Unlike the eye-state model, it tells a lowered lid with the iris below it (a look
  down) from a shut one.

Cost on one AVX2 core (``python bench/gaze.py``): both eyes in one invoke, see bench/RESULTS.md.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from ...types import FaceState, SignalValue
from .base import FaceSignal, SignalConfig

FIELDS = ("yaw", "pitch", "confidence", "openness")
EYEBALL_RADIUS = 0.40  # eyeball rotation radius in eye widths (corner to corner)
NEUTRAL_DY = -0.07  # iris centre below the corners' midpoint when looking ahead (measured on the clips: -0.06..-0.09)
# Lid aperture (eye widths) below which the iris is covered: a shut eye. Measured on the
# talking head: blinks 0.00-0.04, looking down at notes 0.045-0.10, open 0.25.
SHUT_OPENNESS = 0.045
EYES_DISAGREE_DEG = 20.0  # the two eyes' yaws this far apart halve the confidence
VISIBLE_MARGIN = 0.02  # the direction is fully trusted from SHUT_OPENNESS + this (a look down narrows the eye to 0.05-0.10)


class GazeConfig(SignalConfig):
    enabled: bool = Field(True, title="gaze and lid openness of the primary face from MediaPipe Iris "
                                      "(needs head_pose; driver_distraction judges the road zone on it)")
    # 15 readings a second are 5 % of the 3 s distraction window, and they halve the model's
    # cost on a 25-30 frames/s camera (bench/RESULTS.md, "Where the driver looks").
    max_hz: float = Field(15.0, ge=0, title="at most this many gaze readings per second (0: every frame); "
                                            "between two, the last one is carried")
    model: Path = Field(Path("models/iris_landmark.tflite"), title="MediaPipe Iris model (.tflite, 71 contour + 5 iris points)")
    min_eye_px: float = Field(6.0, gt=0, title="eyes narrower than this (corner to corner, pixels) give no reading")
    min_contrast: float = Field(
        6.0, ge=0, title="eye regions flatter than this (grey standard deviation, 0-255) are unreadable: sunglasses, a cover")


def eye_angles(dx: float, dy: float) -> tuple[float, float]:
    """(yaw, pitch) degrees of one eye from its iris offset (eye widths)."""
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, dx / EYEBALL_RADIUS))))
    pitch = -math.degrees(math.asin(max(-1.0, min(1.0, (dy - NEUTRAL_DY) / EYEBALL_RADIUS))))
    return yaw, pitch


class Gaze(FaceSignal):
    """The ``gaze`` signal: eye-in-head direction, its confidence and the lid openness."""

    name = "gaze"
    fields = FIELDS
    config_key = "gaze"
    Config = GazeConfig
    title = "gaze and eyelid openness (MediaPipe Iris)"
    stage = "gaze"
    needs_signals = ("head_pose",)
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": list(FIELDS),
        "additionalProperties": False,
        "properties": {
            "yaw": {"type": "number", "minimum": -90, "maximum": 90},
            "pitch": {"type": "number", "minimum": -90, "maximum": 90},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "openness": {"type": "number", "minimum": 0},
        },
    }

    def __init__(self, cfg: GazeConfig, threads: int = 1) -> None:
        from ...model.iris import IrisModel  # LiteRT and OpenCV load with the model, not with the config

        self.cfg = cfg
        self.model = IrisModel(cfg.model, threads=threads)

    def measure(self, frame_bgr: np.ndarray, face: FaceState) -> SignalValue:
        pose = face.signal("head_pose")
        if face.mesh is None or not isinstance(pose, dict):
            return None
        if face.eyes_hidden:
            return None  # the eye signal found them hidden: Iris would draw an open eye on a dark lens
        eyes = self.model.read(frame_bgr, face.mesh)
        if eyes is None:
            return None
        width = min(e.width_px for e in eyes)
        if width < self.cfg.min_eye_px or min(e.contrast for e in eyes) < self.cfg.min_contrast:
            return None  # too small, or hidden (dark glasses): the model would still answer
        return gaze_value(eyes, float(pose.get("confidence") or 0.0), width / (1.5 * self.cfg.min_eye_px))

    @classmethod
    def describe(cls, value: SignalValue) -> str | None:
        v: dict = value  # type: ignore[assignment]
        return f"gaze {v['yaw']:+.0f} {v['pitch']:+.0f} lids {v['openness']:.2f}"


def gaze_value(eyes: tuple[Any, Any], pose_confidence: float, size_share: float) -> dict[str, float]:
    """The signal's value from two ``EyeReading``s: mean angles, confidence, openness."""
    angles = [eye_angles(e.dx, e.dy) for e in eyes]
    openness = float(np.mean([e.openness for e in eyes]))
    visible = min(1.0, max(0.0, (openness - SHUT_OPENNESS) / VISIBLE_MARGIN))  # 0 shut, 1 once the iris shows
    agree = 0.5 ** ((abs(angles[0][0] - angles[1][0]) / EYES_DISAGREE_DEG) ** 2)
    confidence = pose_confidence * min(1.0, size_share) * visible * agree
    return {"yaw": float(np.mean([a[0] for a in angles])), "pitch": float(np.mean([a[1] for a in angles])),
            "confidence": float(confidence), "openness": openness}
