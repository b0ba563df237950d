"""Where the driver's head points, relative to their own "road" direction: the building block of
``driver_distraction`` and of glance-proof ``driver_fatigue``.

Cameras sit at different places in different cabins (on the column, the mirror, the A-pillar),
and people hold their heads differently, so "looking at the road" is learned per driver, as
openpilot's driver monitor does: the neutral pose is the median of the head's yaw and pitch,
sampled a few times a second while the head is steady, confident, the eyes open (lowered lids
mean a look down), and (once calibrated) within
the road zone around the current estimate, so a glance cannot pull it away; clamped to ``max_offset_deg``
around the configured fallback (a driver who stares at a phone from the start does not make
"down" the road). Until ``calibration_s`` of such samples exist, the fallback
(``road_yaw_deg``, ``road_pitch_deg``) is the neutral pose. A face absent for
``driver_change_s`` is a new driver: the calibration starts again.

Head pose here is the ``head_pose`` face signal (FaceMesh). There is no gaze: FaceMesh's 468
points carry no iris, so the eyes turning without the head are not seen.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..configbase import Section
from ..types import FaceState, Observation

SAMPLE_EVERY_S = 0.2  # calibration samples at most 5 a second (a median over a bounded deque)
STEADY_DEG = 3.0  # head moved less than this since the last sample: a steady pose
CALIBRATION_SAMPLES_MAX = 600  # 2 minutes of samples at 5 Hz
# Only a driver with open eyes teaches the road direction: looking down at notes, a phone or
# the lap lowers the lids (the eye model reads them closed), and that steady pose must not
# become "the road" (on the talking-head clip it would pull the median 8 degrees down).
ATTENTIVE_EYES_BELOW = 0.5

Zone = Literal["road", "left", "right", "down", "up"]


class HeadZoneConfig(Section):
    yaw_deg: float = Field(30.0, gt=0, le=90, title="head turned more than this (left or right of the road direction) is out of the zone")
    pitch_down_deg: float = Field(15.0, gt=0, le=90, title="head pitched down more than this is out of the zone")
    pitch_up_deg: float = Field(15.0, gt=0, le=90, title="head pitched up more than this is out of the zone")
    min_confidence: float = Field(0.5, ge=0, le=1, title="head pose readings below this confidence are unknown")
    road_yaw_deg: float = Field(0.0, ge=-60, le=60, title="the road direction's yaw before calibration (0: facing the camera)")
    road_pitch_deg: float = Field(0.0, ge=-45, le=45, title="the road direction's pitch before calibration")
    calibrate: bool = Field(True, title="learn each driver's road direction from their steady attentive pose")
    calibration_s: float = Field(15.0, gt=0, title="seconds of steady in-zone samples before the learned direction is used")
    max_offset_deg: float = Field(20.0, ge=0, title="the learned direction stays within this of the fallback")
    driver_change_s: float = Field(10.0, gt=0, title="no face for this long: a new driver, calibration starts again")

    @model_validator(mode="after")
    def _fits(self) -> HeadZoneConfig:
        if self.calibration_s / SAMPLE_EVERY_S > CALIBRATION_SAMPLES_MAX:
            raise ValueError(f"calibration_s must be at most {CALIBRATION_SAMPLES_MAX * SAMPLE_EVERY_S:g}")
        return self


@dataclass(slots=True)
class HeadReading:
    """One frame's head pose, relative to the driver's road direction (degrees)."""

    yaw: float  # > 0: turned to the driver's left of the road direction
    pitch: float  # < 0: below it
    zone: Zone


def pose_of(face: FaceState | None, min_confidence: float) -> dict | None:
    """The face's head_pose value when it is confident enough, else None."""
    if face is None:
        return None
    value = face.signal("head_pose")
    if not isinstance(value, dict) or (value.get("confidence") or 0.0) < min_confidence:
        return None
    return value


def has_pose_signal(face: FaceState | None) -> bool:
    """The head_pose signal ran on this face (readable or not): it is enabled."""
    return face is not None and "head_pose" in face.signals


class HeadTracker:
    """The driver's neutral pose (calibration) and where the head points, frame by frame."""

    def __init__(self, cfg: HeadZoneConfig) -> None:
        self.cfg = cfg
        self.fallback = np.array([cfg.road_yaw_deg, cfg.road_pitch_deg])
        self.neutral = self.fallback.copy()
        self.samples: deque[tuple[float, float]] = deque(maxlen=CALIBRATION_SAMPLES_MAX)
        self._last_sample: tuple[float, float, float] | None = None  # t, yaw, pitch
        self._absent_since: float | None = None
        self.last_zone: Zone | None = None  # of the latest reading, for the live page

    @property
    def calibrated(self) -> bool:
        return len(self.samples) * SAMPLE_EVERY_S >= self.cfg.calibration_s

    def live(self) -> dict:
        """The road zone as the live page draws it: the (learned or fallback) road direction,
        the zone's half-widths around it and how far calibration has come."""
        c = self.cfg
        return {
            "calibrated": self.calibrated,
            "calibration_done_s": round(len(self.samples) * SAMPLE_EVERY_S, 1),
            "calibration_s": c.calibration_s,
            "road_yaw_deg": round(float(self.neutral[0]), 1),
            "road_pitch_deg": round(float(self.neutral[1]), 1),
            "yaw_deg": c.yaw_deg,
            "pitch_down_deg": c.pitch_down_deg,
            "pitch_up_deg": c.pitch_up_deg,
            "zone": self.last_zone,
        }

    def reset(self) -> None:
        self.samples.clear()
        self.neutral = self.fallback.copy()
        self._last_sample = None

    def zone(self, dyaw: float, dpitch: float) -> Zone:
        c = self.cfg
        if dpitch < -c.pitch_down_deg:
            return "down"
        if dyaw > c.yaw_deg:
            return "left"
        if dyaw < -c.yaw_deg:
            return "right"
        if dpitch > c.pitch_up_deg:
            return "up"
        return "road"

    def update(self, obs: Observation) -> HeadReading | None:
        """Step on one observation; the head's reading, or None when the pose is unknown."""
        face = obs.primary
        t = obs.t
        if face is None:
            if self._absent_since is None:
                self._absent_since = t
            elif t - self._absent_since >= self.cfg.driver_change_s and self.samples:
                self.reset()
            return None
        self._absent_since = None
        pose = pose_of(face, self.cfg.min_confidence)
        if pose is None:
            return None
        yaw, pitch = float(pose["yaw"]), float(pose["pitch"])
        dyaw, dpitch = yaw - self.neutral[0], pitch - self.neutral[1]
        zone = self.zone(dyaw, dpitch)
        self.last_zone = zone
        eyes = face.signal("eye_closed")
        attentive = "eye_closed" not in face.signals or (eyes is not None and eyes < ATTENTIVE_EYES_BELOW)
        if self.cfg.calibrate and attentive and self._learnable(yaw, pitch, zone):
            self._learn(t, yaw, pitch)
        return HeadReading(dyaw, dpitch, zone)

    def _learnable(self, yaw: float, pitch: float, zone: Zone) -> bool:
        """Once calibrated, only poses in the road zone teach; before, any steady pose within
        ``max_offset_deg`` of the fallback does (a camera mounted off-axis puts a new driver
        outside the fallback's zone, and the median outvotes the glances)."""
        if self.calibrated:
            return zone == "road"
        lim = self.cfg.max_offset_deg
        return abs(yaw - self.fallback[0]) <= lim and abs(pitch - self.fallback[1]) <= lim

    def _learn(self, t: float, yaw: float, pitch: float) -> None:
        last = self._last_sample
        if last is not None and t - last[0] < SAMPLE_EVERY_S:
            return
        self._last_sample = (t, yaw, pitch)
        if last is None or t - last[0] > 2 * SAMPLE_EVERY_S or max(abs(yaw - last[1]), abs(pitch - last[2])) > STEADY_DEG:
            return  # moving (or the first of a run): not a steady pose
        self.samples.append((yaw, pitch))
        if self.calibrated:
            median = np.median(np.asarray(self.samples), axis=0)
            lim = self.cfg.max_offset_deg
            self.neutral = self.fallback + np.clip(median - self.fallback, -lim, lim)
