"""Head pose of the primary face, and the eye and mouth openness of the same landmarks.

MediaPipe FaceMesh (468 landmarks, ``models/face_landmark.tflite``, Apache-2.0) runs on the
primary face's box; ``daemon/model/face_mesh.py`` fits a rigid upper-face reference to the mesh
(Kabsch/Umeyama on the mesh's own 3-D points) and measures:

* ``yaw``, ``pitch``, ``roll`` in degrees (yaw > 0: the driver turns to their left; pitch < 0:
  looking down; roll > 0: head tilted to their left shoulder), relative to a frontal face
  looking into the camera; the rules calibrate each driver's own "road" direction on top;
* ``confidence`` 0..1: the model's face presence times the rigid fit's quality (a mesh that
  does not fit a rigid face, e.g. a hand or a far turn, scores low);
* ``ear``: eye aspect ratio, both eyes (about 0.3 open, below 0.15 closed; varies per person);
* ``mar``: mouth aspect ratio (0 closed, 0.6-0.8 wide open);
* ``mouth_width``: inner mouth width over eye-corner width (a yawn narrows it, a shout widens it).

Cost on one AVX2 core (``python bench/head_pose.py``): 2.5 ms per face for one pass, 5.0 ms p50
with the second, upright pass that runs whenever the eye line tilts more than ``retilt_deg``
(most frames of a talking head). Measured accuracy: see models/FACE_MESH_CARD.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from ...types import FaceState, SignalValue
from .base import FaceSignal, SignalConfig

FIELDS = ("yaw", "pitch", "roll", "confidence", "ear", "mar", "mouth_width")


class HeadPoseConfig(SignalConfig):
    enabled: bool = Field(False, title="head pose, eye and mouth openness of the primary face from FaceMesh landmarks "
                                       "(needed by driver_distraction, yawns, degraded monitoring)")
    model: Path = Field(Path("models/face_landmark.tflite"), title="MediaPipe FaceMesh model (.tflite, 468 landmarks)")
    min_face_px: int = Field(48, ge=16, title="smaller faces (box side in pixels) give no reading")
    retilt_deg: float | None = Field(
        3.0, ge=0, title="eye-line tilt above which the mesh is run again on an upright crop (null: one pass, half the cost)")


class HeadPose(FaceSignal):
    name = "head_pose"
    fields = FIELDS
    config_key = "head_pose"
    Config = HeadPoseConfig
    title = "head pose, eye and mouth openness (FaceMesh)"
    stage = "head_pose"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": list(FIELDS),
        "additionalProperties": False,
        "properties": {
            "yaw": {"type": "number", "minimum": -180, "maximum": 180},
            "pitch": {"type": "number", "minimum": -90, "maximum": 90},
            "roll": {"type": "number", "minimum": -180, "maximum": 180},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "ear": {"type": "number", "minimum": 0},
            "mar": {"type": "number", "minimum": 0},
            "mouth_width": {"type": "number", "minimum": 0},
        },
    }

    def __init__(self, cfg: HeadPoseConfig, threads: int = 1) -> None:
        from ...model.face_mesh import FaceMesh  # LiteRT and OpenCV load with the model, not with the config

        self.cfg = cfg
        self.mesh = FaceMesh(cfg.model, threads=threads, retilt_deg=cfg.retilt_deg)

    def measure(self, frame_bgr: np.ndarray, face: FaceState) -> SignalValue:
        if max(face.box[2], face.box[3]) < self.cfg.min_face_px:
            return None
        r = self.mesh.read(frame_bgr, face.box)
        if r is None:
            return None
        return {"yaw": r.yaw, "pitch": r.pitch, "roll": r.roll, "confidence": r.pose_confidence,
                "ear": r.ear, "mar": r.mar, "mouth_width": r.mouth_width}

    @classmethod
    def describe(cls, value: SignalValue) -> str | None:
        v: dict = value  # type: ignore[assignment]
        return f"yaw {v['yaw']:+.0f} pitch {v['pitch']:+.0f} mouth {v['mar']:.2f}"
