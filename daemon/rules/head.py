"""Where the driver looks, relative to their own "road" direction: the building block of
``driver_distraction`` and of glance-proof ``driver_fatigue``.

**What is judged.** Where the ``gaze`` face signal is readable (MediaPipe Iris, confidence at
least ``gaze_min_confidence``) and the eyes are open, the direction is the head pose plus the
eyes' direction in the head: a driver who looks at a mirror or the lap with the eyes only is
seen. Otherwise it is the head pose alone (``head_pose``: FaceMesh). What the eyes do (open,
shut, lowered; a closure or a look down) is ``rules/eyes.py``'s ``EyeJudge``: lowered lids with the
head pitched down more than ``look_down_deg`` below the road are a look down (zone ``down``);
a closure is never a look away, it is ``driver_fatigue``'s business, also when the head drops
with it.

**Calibration.** Cameras sit at different places in different cabins (on the column, the mirror,
the A-pillar, the passenger side), and people hold their heads differently, so "looking at the
road" is learned per driver, as openpilot's driver monitor does: running statistics from the
first second, with a prior. The road direction is the median of the samples together with
``PRIOR_SAMPLES`` pseudo-samples at the configured fallback (``road_yaw_deg``,
``road_pitch_deg``), so it moves to the driver's own pose within about a second of attentive
driving and a few odd samples cannot pull it. Samples are taken a few times a second while the
head is steady, confident and the driver attentive (the eyes are not seen shut or lowered: a
look down at notes, a phone or the lap lowers the lids and must not become "the road"; eyes
that cannot be read, behind sunglasses or on a face turned away from the camera, do not stop
it), and, once ``calibration_s`` of samples exist, only inside the road zone around the current
estimate, so a glance cannot move it. The direction is clamped around the fallback:
``max_yaw_offset_deg`` aside (a camera on the passenger side sees the driver at 40-55 degrees:
car_phone_in_lap), ``max_offset_deg`` up or down (a driver who stares at a phone from the start
does not make "down" the road). The eyes' own neutral direction is learned the same way. A face
absent for ``driver_change_s`` is a new driver: the calibration starts again; a shorter loss
(food, a hand) keeps it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..configbase import Section
from ..types import FaceState, Observation
from .eyes import MODEL_SURE_CLOSED, EyeJudge, EyeReading, model_reading

SAMPLE_EVERY_S = 0.1  # calibration samples at most 10 a second (a median over a bounded deque)
PRIOR_SAMPLES = 5  # the fallback direction counts as this many samples (0.5 s at 10 Hz) in the median
# Head moved less than this since the last sample: a steady pose. (A mesh of a face turned 45
# degrees jitters +-4 degrees in yaw between frames: car_phone_in_lap.)
STEADY_DEG = 5.0
CALIBRATION_SAMPLES_MAX = 600  # a minute of samples at 10 Hz
Zone = Literal["road", "left", "right", "down", "up"]


class HeadZoneConfig(Section):
    yaw_deg: float = Field(30.0, gt=0, le=90, title="head turned more than this (left or right of the road direction) is out of the zone")
    pitch_down_deg: float = Field(15.0, gt=0, le=90, title="head pitched down more than this is out of the zone")
    pitch_up_deg: float = Field(15.0, gt=0, le=90, title="head pitched up more than this is out of the zone")
    # 0.35: a driver seen at 45 degrees by a passenger-side camera reads 0.38-0.54 (car_phone_in_lap)
    min_confidence: float = Field(0.35, ge=0, le=1, title="head pose readings below this confidence are unknown")
    road_yaw_deg: float = Field(0.0, ge=-60, le=60, title="the road direction's yaw before calibration (0: facing the camera)")
    road_pitch_deg: float = Field(0.0, ge=-45, le=45, title="the road direction's pitch before calibration")
    calibrate: bool = Field(True, title="learn each driver's road direction from their steady attentive pose")
    calibration_s: float = Field(3.0, gt=0, title="seconds of steady attentive samples after which only poses inside the road zone teach")
    max_offset_deg: float = Field(20.0, ge=0, title="the learned direction's pitch stays within this of the fallback")
    max_yaw_offset_deg: float = Field(
        60.0, ge=0, title="the learned direction's yaw stays within this of the fallback (a camera on the passenger side: 40-55)")
    driver_change_s: float = Field(10.0, gt=0, title="no face for this long: a new driver, calibration starts again")
    gaze: bool = Field(True, title="judge the zone on gaze (head pose plus the eyes) where the gaze signal is readable")
    gaze_min_confidence: float = Field(0.3, ge=0, le=1, title="gaze readings below this confidence fall back to head pose")
    gaze_yaw_deg: float = Field(20.0, gt=0, le=90, title="gaze turned more than this (left or right of the road direction) is out of the zone")
    look_down_deg: float = Field(
        20.0, gt=0, le=90, title="lowered lids with the head pitched down more than this below the road direction are a look down, "
                                 "not a closure (unless the eyes shut first: a doze)")

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
    eyes: EyeReading | None = None  # what the eyes do (rules/eyes.py)
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
        self.eyes = EyeJudge(cfg.look_down_deg)
        self.samples: deque[tuple[float, float]] = deque(maxlen=CALIBRATION_SAMPLES_MAX)
        self.eye_samples: deque[tuple[float, float]] = deque(maxlen=CALIBRATION_SAMPLES_MAX)
        self._last_sample: tuple[float, float, float] | None = None  # t, yaw, pitch
        self._absent_since: float | None = None
        self.last_zone: Zone | None = None  # of the latest reading, for the live page
        self.last_eyes: str | None = None  # the eyes in the latest reading: open, shut, lowered (rules/eyes.py)
        self.last_eyes_as: str | None = None  # ... counted as: closure, look_down, yawn

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
            "eyes": self.last_eyes,
            "eyes_as": self.last_eyes_as,
        }

    def reset(self) -> None:
        self.samples.clear()
        self.eye_samples.clear()
        self.neutral = self.fallback.copy()
        self.eye_neutral = np.zeros(2)
        self.eyes.reset()
        self._last_sample = None

    def zone(self, dyaw: float, dpitch: float, yaw_deg: float | None = None) -> Zone:
        """Road inside an ellipse around the road direction (half-axes: the yaw limit aside, the
        pitch limits up and down), else the direction that is furthest out. An ellipse, not a
        rectangle: a head turned 20 degrees towards the centre console and pitched 12 degrees down
        looks at the lap (car_phone_in_lap), though neither angle alone leaves a rectangle."""
        c = self.cfg
        yaw_deg = c.yaw_deg if yaw_deg is None else yaw_deg
        ny = dyaw / yaw_deg
        np_ = dpitch / (c.pitch_down_deg if dpitch < 0 else c.pitch_up_deg)
        if ny * ny + np_ * np_ <= 1.0:
            return "road"
        if abs(np_) >= abs(ny):
            return "down" if dpitch < 0 else "up"
        return "left" if dyaw > 0 else "right"

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
            self.last_zone = self.last_eyes = self.last_eyes_as = None
            return self._shut_without_pose(face, t)
        c = self.cfg
        head = np.array([float(pose["yaw"]), float(pose["pitch"])])
        dhead = head - self.neutral
        eyes = self.eyes.update(face, pose, -float(dhead[1]), t)
        gaze = face.signal("gaze")
        eye: np.ndarray | None = None
        if c.gaze and eyes.state == "open" and isinstance(gaze, dict) and float(gaze["confidence"]) >= c.gaze_min_confidence:
            eye = np.array([float(gaze["yaw"]), float(gaze["pitch"])])
        d = dhead if eye is None else dhead + eye - self.eye_neutral
        zone = "down" if eyes.look_down else self.zone(float(d[0]), float(d[1]), c.gaze_yaw_deg if eye is not None else None)
        yawn_up = zone == "up" and self.eyes.mouth_wide(t)
        if yawn_up:
            zone = "road"  # a yawn tips the head back: not a look away (nor, squeezing the eyes, a closure)
        self.last_zone = zone
        self.last_eyes = eyes.state
        self.last_eyes_as = "yawn" if eyes.yawn else "look_down" if eyes.look_down else "closure" if eyes.closed else None
        # Attentive: the eyes are not seen closed or lowered. Unreadable eyes (sunglasses, a face
        # turned too far for the eye model and too small for the contour) teach too: the driver
        # still needs a road direction, and a steady confident pose is most of the time the road.
        if c.calibrate and eyes.state in ("open", None) and not yawn_up and self._learnable(head, zone):
            self._learn(t, head, eye)
        return HeadReading(float(d[0]), float(d[1]), zone, "head" if eye is None else "gaze", eyes, float(dhead[1]))

    def _shut_without_pose(self, face: FaceState, t: float) -> HeadReading | None:
        """A head pose too uncertain to judge (a small, tilted, dozing face seen from a dashcam)
        with lids the contour reads shut or the eye model is sure are closed: a closure all the
        same (shut lids are a closure wherever the head points). Anything else without a pose is
        unknown."""
        gaze = face.signal("gaze")
        contour_shut = isinstance(gaze, dict) and self.eyes.contour(float(gaze["openness"])) == "shut"
        p = model_reading(face)
        if not contour_shut and (p is None or p < MODEL_SURE_CLOSED):
            return None
        eyes = self.eyes.update(face, None, 0.0, t)
        if not eyes.closed:
            return None
        self.last_eyes, self.last_eyes_as = eyes.state, "closure"
        return HeadReading(0.0, 0.0, "road", "head", eyes, 0.0)

    def _learnable(self, head: np.ndarray, zone: Zone) -> bool:
        """Once calibrated, only poses in the road zone teach; before, any steady pose within the
        offset limits of the fallback does (a camera mounted off-axis puts a new driver outside
        the fallback's zone, and the median outvotes the glances)."""
        if self.calibrated:
            return zone == "road"
        off = np.abs(head - self.fallback)
        return bool(off[0] <= self.cfg.max_yaw_offset_deg and off[1] <= self.cfg.max_offset_deg)

    def _learn(self, t: float, head: np.ndarray, eye: np.ndarray | None) -> None:
        """One sample a SAMPLE_EVERY_S at most, of a steady head."""
        yaw, pitch = float(head[0]), float(head[1])
        last = self._last_sample
        if last is not None and t - last[0] < SAMPLE_EVERY_S - 1e-6:  # frame clocks are not exact
            return
        self._last_sample = (t, yaw, pitch)
        if last is None or t - last[0] > 2 * SAMPLE_EVERY_S or max(abs(yaw - last[1]), abs(pitch - last[2])) > STEADY_DEG:
            return  # moving (or the first of a run): not a steady pose
        self.samples.append((yaw, pitch))
        lim = np.array([self.cfg.max_yaw_offset_deg, self.cfg.max_offset_deg])
        self.neutral = self.fallback + np.clip(_with_prior(np.asarray(self.samples), self.fallback) - self.fallback, -lim, lim)
        if eye is not None:
            self.eye_samples.append((float(eye[0]), float(eye[1])))
            self.eye_neutral = np.clip(_with_prior(np.asarray(self.eye_samples), np.zeros(2)), -lim, lim)


def _with_prior(samples: np.ndarray, prior: np.ndarray | float) -> np.ndarray:
    """The median of the samples and PRIOR_SAMPLES copies of the prior (per column)."""
    prior_rows = np.broadcast_to(np.asarray(prior, dtype=np.float64), (PRIOR_SAMPLES,) + samples.shape[1:])
    return np.median(np.concatenate([samples, prior_rows]), axis=0)
