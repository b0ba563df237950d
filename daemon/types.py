"""Data that crosses module lines inside the daemon. Plain slotted dataclasses: cheap to make
per frame, easy to read in a test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Box = tuple[int, int, int, int]  # x, y, w, h in frame pixels


@dataclass(slots=True)
class Frame:
    image: np.ndarray  # BGR uint8, as OpenCV delivers it
    index: int  # sequence number from the source (gaps = frames the pipeline skipped)
    t_capture: float  # time.monotonic() when the frame was read
    t_wall: float  # time.time() at the same moment, for payload timestamps


@dataclass(slots=True)
class Detection:
    box: Box
    score: float = 1.0
    # 5 points (x, y) when the detector gives them (YuNet): right eye, left eye, nose tip,
    # right mouth corner, left mouth corner ("right" = the person's right, image left).
    landmarks: np.ndarray | None = None


# What one face signal returns for one face: a number, a flat mapping of numbers (e.g. head
# pose: yaw, pitch, roll, confidence), or None when it could not be read.
SignalValue = float | dict[str, float | None] | None


@dataclass(slots=True, init=False)
class FaceState:
    """One tracked face after classification and smoothing, as rules and publishers see it.

    ``signals`` holds what each face signal (daemon/vision/signals/) measured on this face, by
    the signal's name; a signal that did not run on this face (e.g. it runs on the primary face
    only) is absent. Signals can also be given as keywords: ``FaceState(..., eye_closed=0.1)``.
    """

    track_id: int
    box: Box
    # Smoothed class probabilities in manifest label order; None (label None, confidence 0)
    # while the face has not been classified: too small or blurred to read, or not yet its turn.
    probs: np.ndarray | None
    label: str | None  # argmax of probs
    confidence: float  # probs[argmax]
    primary: bool
    landmarks: np.ndarray | None
    signals: dict[str, SignalValue]
    # The 468 FaceMesh points (frame pixels) when the head_pose signal ran on this face in this
    # frame: the gaze signal crops the eyes from them. Never published.
    mesh: np.ndarray | None = field(compare=False, repr=False)
    # The eye signal found both eyes hidden in this frame (dark glasses: the eye model sure they
    # are unreadable, and they are dark against the face around them): the gaze signal, which runs
    # after it, then reads nothing (MediaPipe Iris draws an open eye on a dark lens). Never published.
    eyes_hidden: bool = field(compare=False, repr=False)
    # The head_pose signal ran FaceMesh on this face in this frame and it found no face (a face
    # large enough for it: turned, tilted or dim past what it fits): the pose is unknown, not
    # merely unmeasured, so the eye signal does not trust its model as if head_pose were off.
    mesh_lost: bool = field(compare=False, repr=False)

    def __init__(self, track_id: int, box: Box, probs: np.ndarray | None, label: str | None, confidence: float,
                 primary: bool = False, landmarks: np.ndarray | None = None,
                 signals: dict[str, SignalValue] | None = None, **signal_values: Any) -> None:
        self.track_id, self.box, self.probs, self.label, self.confidence = track_id, box, probs, label, confidence
        self.primary, self.landmarks = primary, landmarks
        self.signals = {**(signals or {}), **signal_values}
        self.mesh = None
        self.eyes_hidden = False
        self.mesh_lost = False

    def signal(self, name: str) -> SignalValue:
        """The value of one signal on this face; None when it was not measured."""
        return self.signals.get(name)


@dataclass(slots=True)
class Observation:
    """What the pipeline saw in one processed frame; the rules engine's only input."""

    t: float  # monotonic seconds (injected in tests)
    t_wall: float
    faces: list[FaceState] = field(default_factory=list)
    labels: tuple[str, ...] = ()
    frame_hw: tuple[int, int] | None = None  # (height, width): places boxes in zones

    @property
    def primary(self) -> FaceState | None:
        for f in self.faces:
            if f.primary:
                return f
        return None


Phase = Literal["start", "update", "end"]


@dataclass(slots=True)
class Event:
    """One step in an alert's lifecycle; ``id`` is the same UUID from start to end."""

    id: str
    type: str  # rule type, e.g. driver_fatigue
    rule: str  # rule name from the config
    phase: Phase
    started_at: float  # wall-clock seconds
    ended_at: float | None = None
    level: str | None = None
    details: dict = field(default_factory=dict)
