"""Degraded monitoring: a face is there, but its eyes or its head pose cannot be read.

Euro NCAP asks that the driver be told within 10 s when the system cannot monitor them:
sunglasses that hide the eyes, a hand or a mask over the face, a head turned too far for the
landmarks, a face too small or too dim for the eyes. "Readable" is what the other driver rules
use, not whether some signal answered: the eyes are unreadable on every frame that
``rules/eyes.py``'s judge (the one ``driver_fatigue`` and ``driver_distraction`` step) cannot say
open, shut or lowered, whatever the reason (the eye model outside the poses it holds at, or
calling the eyes unreadable; the contour blind; the two cues disagreeing into nothing), and the
head pose is unreadable below ``min_pose_confidence``. When either stays unreadable for
``after_s`` while a face is present, the alert starts, and it ends once both are readable again
for ``confirm_s``. Signals that are not enabled are not required.

**A face lost while unreadable.** A face the monitor cannot read is often lost for a moment too
(a dim face turning or dropping, a hand): the monitor is no less blind, so a loss shorter than
``face_lost_s`` neither ends the alert nor restarts the unreadable stretch; it counts as
unreadable time. No face for ``face_lost_s`` ends it ("no face"): an empty seat is
``driver_absent``'s alert (its ``after_s`` is the same 5 s by default, so one hands over to the
other). A face lost while it was readable starts nothing here (food or a hand for 2 s is
neither a look away nor a blind monitor).
"""

from __future__ import annotations

from typing import Literal, Sequence

from pydantic import Field

from ..types import Event, Observation
from .base import Held, Rule, RuleBase, Seconds
from .driver_absent import ABSENT_AFTER_S
from .head import HeadTracker, HeadZoneConfig, has_pose_signal, pose_of

DEGRADED_AFTER_S = 5.0  # Euro NCAP: tell the driver within 10 s
READABLE_CONFIRM_S = 1.0
MIN_POSE_CONFIDENCE = 0.35  # as the head zone's: a driver seen at 45 degrees reads 0.38-0.54 (car_phone_in_lap)
# driver_absent's after_s: the face gone this long is an empty seat, that rule's alert. (The
# night dashcam car clip loses its unreadable face for 3.4 s mid-alert: bench/driver_scenarios.py.)
FACE_LOST_S = ABSENT_AFTER_S


class DriverMonitoringDegradedConfig(RuleBase):
    type: Literal["driver_monitoring_degraded"] = "driver_monitoring_degraded"
    after_s: float = Field(DEGRADED_AFTER_S, gt=0, le=10, title="face present but eyes or pose unreadable this long starts the alert (<= 10 s)")
    confirm_s: Seconds = Field(READABLE_CONFIRM_S, title="eyes and pose readable this long end the alert")
    min_pose_confidence: float = Field(MIN_POSE_CONFIDENCE, ge=0, le=1, title="head pose below this confidence is unreadable")
    face_lost_s: Seconds = Field(FACE_LOST_S, title="no face this long ends the alert (driver_absent's); a shorter loss "
                                                    "inside an unreadable stretch counts as unreadable")


class DriverMonitoringDegraded(Rule):
    type = "driver_monitoring_degraded"

    def __init__(self, cfg: DriverMonitoringDegradedConfig, labels: Sequence[str], loc: tuple = ("rules",)) -> None:
        super().__init__(cfg, labels, loc)
        self.cfg: DriverMonitoringDegradedConfig = cfg
        self.readable = Held()
        self.since: float | None = None  # first unreadable frame of the current stretch
        self.no_face = Held()  # how long the face has been lost
        # the same judge the fatigue and distraction rules step: "readable" means readable to them
        self.head = HeadTracker(HeadZoneConfig(min_confidence=cfg.min_pose_confidence))

    def what_is_unreadable(self, obs: Observation) -> list[str] | None:
        """The unreadable signals of the primary face ([] all readable); None: no face."""
        face = obs.primary
        reading = self.head.update(obs)
        if face is None:
            return None
        missing = []
        cues = [name for name in ("eye_closed", "gaze") if name in face.signals]
        if cues:
            if has_pose_signal(face):
                # what the judge made of the cues: a frame it cannot call open, shut or lowered
                known = reading is not None and reading.eyes is not None and reading.eyes.state is not None
            else:  # no pose to judge with: the eye model's reading as it is
                known = any(face.signal(name) is not None for name in cues)
            if not known:
                missing.append("eyes")
        if has_pose_signal(face) and pose_of(face, self.cfg.min_pose_confidence) is None:
            missing.append("head_pose")
        return missing

    def step(self, obs: Observation) -> list[Event]:
        t = obs.t
        missing = self.what_is_unreadable(obs)
        good_s = self.readable.update(missing == [], t)
        lost_s = self.no_face.update(missing is None, t)
        gone = missing is None and lost_s >= self.cfg.face_lost_s
        # A stretch of unreadable sensing survives readable blips shorter than confirm_s (one
        # lucky frame through dark glasses does not restart the clock) and a face lost for less
        # than face_lost_s (the monitor is as blind without it); a face gone that long ends it.
        if missing:
            self.since = t if self.since is None else self.since
        elif gone or (missing == [] and good_s >= self.cfg.confirm_s):
            self.since = None
        bad_s = 0.0 if self.since is None else t - self.since
        unreadable = ["face"] if missing is None else missing
        details = {"unreadable": unreadable if self.since is not None else [], "unreadable_s": round(bad_s, 3)}
        alerts = self.alerts
        if alerts.active is None:
            # started while a face is there (a lost one may still be an empty seat)
            if missing is not None and bad_s >= self.cfg.after_s and not alerts.cooling_down(t):
                return [alerts.start(t, obs.t_wall, "degraded", details, {"unreadable_s": round(bad_s, 3)})]
            return []
        alerts.raise_peak(unreadable_s=round(bad_s, 3))
        if good_s >= self.cfg.confirm_s or gone:
            return [alerts.end(t, obs.t_wall, {**details, "reason": "no face" if gone else "readable"})]
        return []
