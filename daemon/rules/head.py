"""Where the driver looks, relative to their own "road" direction: the building block of
``driver_distraction`` and of glance-proof ``driver_fatigue``.

**What is judged.** Where the ``gaze`` face signal is readable (MediaPipe Iris, confidence at
least ``gaze_min_confidence``, the lids not shut), the direction is the head pose plus the eyes'
direction in the head: a driver who looks at a mirror or the lap with the eyes only is seen.
Otherwise it is the head pose alone (``head_pose``: FaceMesh), as before. Lowered lids with the
iris still visible (``narrowed``) and the head pitched down more than ``lid_head_down_deg`` also
count as looking down: that is how people look at a lap or a phone (the eyes do most of it, the
head only a little). Shut lids (``shut``: no iris between them) are reported as such: a closure
is never a look away, it is ``driver_fatigue``'s business, also when the head drops with it.

**Calibration.** Cameras sit at different places in different cabins (on the column, the mirror,
the A-pillar), and people hold their heads differently, so "looking at the road" is learned per
driver, as openpilot's driver monitor does: running statistics from the first second, with a
prior. The road direction is the median of the samples together with ``PRIOR_SAMPLES``
pseudo-samples at the configured fallback (``road_yaw_deg``, ``road_pitch_deg``), so it moves
to the driver's own pose within about a second of attentive driving and a few odd samples
cannot pull it. Samples are taken a few times a second while the head is steady, confident and
the driver attentive (the eye model reads the eyes open, the lids are not lowered: a look down
at notes, a phone or the lap must not become "the road"), and, once ``calibration_s`` of samples
exist, only inside the road zone around the current estimate, so a glance cannot move it; the
direction is clamped to ``max_offset_deg`` around the fallback (a driver who stares at a phone
from the start does not make "down" the road). The eyes' own neutral direction and the lids'
open aperture are learned the same way (priors: straight ahead, ``OPEN_PRIOR``). A face absent
for ``driver_change_s`` is a new driver: the calibration starts again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..configbase import Section
from ..types import FaceState, Observation

SAMPLE_EVERY_S = 0.1  # calibration samples at most 10 a second (a median over a bounded deque)
PRIOR_SAMPLES = 5  # the fallback direction counts as this many samples (0.5 s at 10 Hz) in the median
STEADY_DEG = 3.0  # head moved less than this since the last sample: a steady pose
CALIBRATION_SAMPLES_MAX = 600  # a minute of samples at 10 Hz
# Only a driver with open eyes teaches the road direction: looking down at notes, a phone or
# the lap lowers the lids (the eye model reads them closed), and that steady pose must not
# become "the road" (on the talking-head clip it would pull the median 8 degrees down).
ATTENTIVE_EYES_BELOW = 0.5
# Lid aperture (the gaze signal's openness) relative to this driver's open aperture. Measured on
# the talking head (open 0.25): blinks 0.00-0.04 (shut: under 0.18 of open), looking down at her
# notes 0.05-0.13 (narrowed: under 0.6 of open).
OPEN_PRIOR = 0.25
OPEN_RANGE = (0.12, 0.40)  # the learned open aperture stays within this
SHUT_SHARE = 0.18
NARROWED_SHARE = 0.6

Zone = Literal["road", "left", "right", "down", "up"]
Lids = Literal["open", "narrowed", "shut"]


class HeadZoneConfig(Section):
    yaw_deg: float = Field(30.0, gt=0, le=90, title="head turned more than this (left or right of the road direction) is out of the zone")
    pitch_down_deg: float = Field(15.0, gt=0, le=90, title="head pitched down more than this is out of the zone")
    pitch_up_deg: float = Field(15.0, gt=0, le=90, title="head pitched up more than this is out of the zone")
    min_confidence: float = Field(0.5, ge=0, le=1, title="head pose readings below this confidence are unknown")
    road_yaw_deg: float = Field(0.0, ge=-60, le=60, title="the road direction's yaw before calibration (0: facing the camera)")
    road_pitch_deg: float = Field(0.0, ge=-45, le=45, title="the road direction's pitch before calibration")
    calibrate: bool = Field(True, title="learn each driver's road direction from their steady attentive pose")
    calibration_s: float = Field(3.0, gt=0, title="seconds of steady attentive samples after which only poses inside the road zone teach")
    max_offset_deg: float = Field(20.0, ge=0, title="the learned direction stays within this of the fallback")
    driver_change_s: float = Field(10.0, gt=0, title="no face for this long: a new driver, calibration starts again")
    gaze: bool = Field(True, title="judge the zone on gaze (head pose plus the eyes) where the gaze signal is readable")
    gaze_min_confidence: float = Field(0.3, ge=0, le=1, title="gaze readings below this confidence fall back to head pose")
    gaze_yaw_deg: float = Field(20.0, gt=0, le=90, title="gaze turned more than this (left or right of the road direction) is out of the zone")
    lid_head_down_deg: float = Field(
        5.0, ge=0, le=90, title="lowered lids (iris visible) with the head pitched down more than this count as looking down")

    @model_validator(mode="after")
    def _fits(self) -> HeadZoneConfig:
        if self.calibration_s / SAMPLE_EVERY_S > CALIBRATION_SAMPLES_MAX:
            raise ValueError(f"calibration_s must be at most {CALIBRATION_SAMPLES_MAX * SAMPLE_EVERY_S:g}")
        return self


@dataclass(slots=True)
class HeadReading:
    """One frame's direction, relative to the driver's road direction (degrees)."""

    yaw: float  # > 0: to the driver's left of the road direction
    pitch: float  # < 0: below it
    zone: Zone
    source: Literal["gaze", "head"] = "head"  # what yaw and pitch are: gaze (head + eyes) or head pose alone
    lids: Lids | None = None  # from the eyelid contour (gaze signal); None without it
    head_pitch: float = 0.0  # the head alone, relative to its road pitch

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
    """The driver's road direction (calibration) and where the driver looks, frame by frame."""

    def __init__(self, cfg: HeadZoneConfig) -> None:
        self.cfg = cfg
        self.fallback = np.array([cfg.road_yaw_deg, cfg.road_pitch_deg])
        self.neutral = self.fallback.copy()
        self.eye_neutral = np.zeros(2)
        self.open_lids = OPEN_PRIOR
        self.samples: deque[tuple[float, float]] = deque(maxlen=CALIBRATION_SAMPLES_MAX)
        self.eye_samples: deque[tuple[float, float]] = deque(maxlen=CALIBRATION_SAMPLES_MAX)
        self.lid_samples: deque[float] = deque(maxlen=CALIBRATION_SAMPLES_MAX)
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
        self.eye_samples.clear()
        self.lid_samples.clear()
        self.neutral = self.fallback.copy()
        self.eye_neutral = np.zeros(2)
        self.open_lids = OPEN_PRIOR
        self._last_sample = None

    def zone(self, dyaw: float, dpitch: float, yaw_deg: float | None = None) -> Zone:
        c = self.cfg
        yaw_deg = c.yaw_deg if yaw_deg is None else yaw_deg
        if dpitch < -c.pitch_down_deg:
            return "down"
        if dyaw > yaw_deg:
            return "left"
        if dyaw < -yaw_deg:
            return "right"
        if dpitch > c.pitch_up_deg:
            return "up"
        return "road"

    def lids(self, openness: float) -> Lids:
        """Shut (no iris between the lids), narrowed (lowered, iris visible) or open, against
        this driver's own open aperture."""
        if openness < SHUT_SHARE * self.open_lids:
            return "shut"
        return "narrowed" if openness < NARROWED_SHARE * self.open_lids else "open"

    def update(self, obs: Observation) -> HeadReading | None:
        """Step on one observation; where the driver looks, or None when the pose is unknown."""
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
        c = self.cfg
        head = np.array([float(pose["yaw"]), float(pose["pitch"])])
        dhead = head - self.neutral
        gaze = face.signal("gaze")
        lids: Lids | None = None
        eye: np.ndarray | None = None
        if isinstance(gaze, dict):
            lids = self.lids(float(gaze["openness"]))
            if c.gaze and lids != "shut" and float(gaze["confidence"]) >= c.gaze_min_confidence:
                eye = np.array([float(gaze["yaw"]), float(gaze["pitch"])])
        d = dhead if eye is None else dhead + eye - self.eye_neutral
        zone = self.zone(float(d[0]), float(d[1]), c.gaze_yaw_deg if eye is not None else None)
        if zone == "road" and lids == "narrowed" and dhead[1] < -c.lid_head_down_deg:
            zone = "down"  # the eyes look down under lowered lids, the head follows a little
        self.last_zone = zone
        eyes = face.signal("eye_closed")
        eyes_open = "eye_closed" not in face.signals or (eyes is not None and eyes < ATTENTIVE_EYES_BELOW)
        if c.calibrate and eyes_open and lids != "shut" and self._learnable(head, zone):
            self._learn(t, head, eye if lids == "open" else None,
                        float(gaze["openness"]) if isinstance(gaze, dict) else None, teach=lids in (None, "open"))
        return HeadReading(float(d[0]), float(d[1]), zone, "head" if eye is None else "gaze", lids, float(dhead[1]))

    def _learnable(self, head: np.ndarray, zone: Zone) -> bool:
        """Once calibrated, only poses in the road zone teach; before, any steady pose within
        ``max_offset_deg`` of the fallback does (a camera mounted off-axis puts a new driver
        outside the fallback's zone, and the median outvotes the glances)."""
        if self.calibrated:
            return zone == "road"
        return bool(np.all(np.abs(head - self.fallback) <= self.cfg.max_offset_deg))

    def _learn(self, t: float, head: np.ndarray, eye: np.ndarray | None, openness: float | None, teach: bool) -> None:
        """One sample a SAMPLE_EVERY_S at most, of a steady head: the lids' open aperture always
        (the eye model reads the eyes open), the direction only with open lids (``teach``)."""
        yaw, pitch = float(head[0]), float(head[1])
        last = self._last_sample
        if last is not None and t - last[0] < SAMPLE_EVERY_S - 1e-6:  # frame clocks are not exact
            return
        self._last_sample = (t, yaw, pitch)
        if last is None or t - last[0] > 2 * SAMPLE_EVERY_S or max(abs(yaw - last[1]), abs(pitch - last[2])) > STEADY_DEG:
            return  # moving (or the first of a run): not a steady pose
        if openness is not None:
            self.lid_samples.append(openness)
            self.open_lids = float(np.clip(_with_prior(np.asarray(self.lid_samples), OPEN_PRIOR), *OPEN_RANGE))
        if not teach:
            return
        self.samples.append((yaw, pitch))
        lim = self.cfg.max_offset_deg
        self.neutral = self.fallback + np.clip(_with_prior(np.asarray(self.samples), self.fallback) - self.fallback, -lim, lim)
        if eye is not None:
            self.eye_samples.append((float(eye[0]), float(eye[1])))
            self.eye_neutral = np.clip(_with_prior(np.asarray(self.eye_samples), np.zeros(2)), -lim, lim)


def _with_prior(samples: np.ndarray, prior: np.ndarray | float) -> np.ndarray:
    """The median of the samples and PRIOR_SAMPLES copies of the prior (per column)."""
    prior_rows = np.broadcast_to(np.asarray(prior, dtype=np.float64), (PRIOR_SAMPLES,) + samples.shape[1:])
    return np.median(np.concatenate([samples, prior_rows]), axis=0)
