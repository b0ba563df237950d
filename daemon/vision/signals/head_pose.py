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

Cost on one AVX2 core (``python bench/head_pose.py``): one FaceMesh pass, 2.5 ms per face. The
crop is rotated by the eye line's angle in this track's previous frame (as MediaPipe does), and
a second pass runs only when the head tilted more than ``retilt_deg`` since then; without that
hint the tilted talking head needed a second pass on 193 of 200 frames (5.0 ms).
Measured accuracy: see models/FACE_MESH_CARD.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from ...types import FaceState, SignalValue
from .base import FaceSignal, SignalConfig

TILT_HINTS_KEPT = 16
FIELDS = ("yaw", "pitch", "roll", "confidence", "ear", "mar", "mouth_width")


class HeadPoseConfig(SignalConfig):
    enabled: bool = Field(True, title="head pose, eye and mouth openness of the primary face from FaceMesh landmarks "
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
        self._tilt: dict[int, float] = {}  # track id -> eye-line angle last frame (crop rotation hint)

    def measure(self, frame_bgr: np.ndarray, face: FaceState) -> SignalValue:
        if max(face.box[2], face.box[3]) < self.cfg.min_face_px:
            return None
        r = self.mesh.read(frame_bgr, face.box, self._tilt.get(face.track_id, 0.0))
        if r is None:
            self._tilt.pop(face.track_id, None)
            face.mesh_lost = True
            return None
        if face.track_id not in self._tilt and len(self._tilt) >= TILT_HINTS_KEPT:
            self._tilt.pop(next(iter(self._tilt)))  # bounded: forget the oldest face
        self._tilt[face.track_id] = r.tilt
        face.mesh = r.landmarks  # for the gaze signal, which runs after this one on the same face
        return {"yaw": r.yaw, "pitch": r.pitch, "roll": r.roll, "confidence": r.pose_confidence,
                "ear": r.ear, "mar": r.mar, "mouth_width": r.mouth_width}

    def forget(self) -> None:
        self._tilt.clear()

    @classmethod
    def describe(cls, value: SignalValue) -> str | None:
        v: dict = value  # type: ignore[assignment]
        return f"yaw {v['yaw']:+.0f} pitch {v['pitch']:+.0f} mouth {v['mar']:.2f}"
