"""Driver distraction from where the driver looks: long distraction and visual attention time sharing.

Euro NCAP (Safety Assist, driver state monitoring) and the EU ADDW regulation judge two
patterns of looking away from the road:

* **long distraction**: away from the road zone for ``long_s`` (3 s) without a break;
* **visual attention time sharing (VATS)**: repeated short glances adding up to ``vats_s``
  (10 s) away within ``vats_window_s`` (30 s); the count restarts once the driver has looked at
  the road for ``vats_reset_s`` (2 s) without a break.

Like openpilot's monitor, one alert escalates through ordered levels while the driver stays
away: ``time_sharing`` → ``distracted`` (long distraction) → ``prompt`` (``prompt_s``) →
``unresponsive`` (``unresponsive_s``, 6 s). It ends once the head has been back in the road zone
for ``release_s``. Looking down (a phone, the lap) counts as away like any other direction.

Where the driver looks is ``rules/head.py``'s: gaze (head pose plus the eyes, from the iris)
where it is readable, else head pose; lowered lids with the head pitched down more than
``head.look_down_deg`` are a look down. A closure (``rules/eyes.py``) is not a look away (a driver
dozing off drops the head with the eyes shut: that is ``driver_fatigue``'s sleep, never a
distraction). Lowered lids (not shut) in the middle of a look away, the head still out of the
road zone, continue the look away: an ambiguous closure silences neither rule.

A look away is one stretch, as the eyes make it, not as single frames read it:

* a return to the road shorter than ``back_min_s`` (a few frames of a head that bobs while the
  eyes stay on the lap) does not end it (a real glance back at the road takes longer);
* an unknown stretch (no face, a low-confidence mesh) right after being away continues it for
  up to ``lost_hold_s`` (a head turned far enough to lose the face mesh is still turned away).

Longer unknown stretches are not counted as away; they are ``driver_monitoring_degraded``'s
business.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum
from typing import ClassVar, Literal, Sequence

from pydantic import Field, model_validator

from ..types import Event, Observation
from .base import Escalation, Held, Rule, RuleBase, Seconds
from .head import HeadTracker, HeadZoneConfig

LONG_DISTRACTION_S = 3.0
PROMPT_S = 4.5
UNRESPONSIVE_S = 6.0
VATS_S = 10.0
VATS_WINDOW_S = 30.0
VATS_RESET_S = 2.0
RELEASE_S = 1.0
LOST_HOLD_S = 1.5
BACK_MIN_S = 0.3  # a glance back at the road takes a saccade and a fixation: 0.3 s at least
SAMPLE_HOLD_MAX_S = 0.5  # a frame stands for at most this long (after a stall: unknown)


class DistractionLevel(IntEnum):
    NONE = 0
    TIME_SHARING = 1
    DISTRACTED = 2
    PROMPT = 3
    UNRESPONSIVE = 4


class DriverDistractionConfig(RuleBase):
    type: Literal["driver_distraction"] = "driver_distraction"
    needs_signals: ClassVar[tuple[str, ...]] = ("head_pose",)  # gaze is used where it is on, not required
    head: HeadZoneConfig = Field(HeadZoneConfig(), title="the road zone and its per-driver calibration")
    long_s: Seconds = Field(LONG_DISTRACTION_S, title="continuously away this long is a long distraction")
    prompt_s: Seconds = Field(PROMPT_S, title="continuously away this long raises the level to prompt")
    unresponsive_s: Seconds = Field(UNRESPONSIVE_S, title="continuously away this long: unresponsive driver")
    vats_s: Seconds = Field(VATS_S, title="time away, summed over glances within vats_window_s, that alerts (time sharing)")
    vats_window_s: float = Field(VATS_WINDOW_S, gt=0, title="window of the time-sharing sum, seconds")
    vats_reset_s: Seconds = Field(VATS_RESET_S, title="eyes on the road this long without a break restart the time-sharing sum")
    release_s: Seconds = Field(RELEASE_S, title="back in the road zone this long ends the alert")
    lost_hold_s: Seconds = Field(LOST_HOLD_S, title="pose lost right after being away still counts as away this long")
    back_min_s: Seconds = Field(BACK_MIN_S, title="a return to the road shorter than this does not end a look away")

    @model_validator(mode="after")
    def levels_escalate(self) -> DriverDistractionConfig:
        if not self.long_s <= self.prompt_s <= self.unresponsive_s:
            raise ValueError("levels must escalate: long_s <= prompt_s <= unresponsive_s")
        if self.vats_s > self.vats_window_s:
            raise ValueError("vats_s must fit in vats_window_s")
        return self


class DriverDistraction(Rule):
    type = "driver_distraction"

    def __init__(self, cfg: DriverDistractionConfig, labels: Sequence[str], loc: tuple = ("rules",)) -> None:
        super().__init__(cfg, labels, loc)
        self.cfg: DriverDistractionConfig = cfg
        self.head = HeadTracker(cfg.head)
        self.away = Held()  # continuous time away
        self.glances: deque[tuple[float, float]] = deque()  # (t, seconds away) since the last reset
        self._flicker: list[tuple[float, float]] = []  # road frames inside a look away, not yet known to be one
        self.t_prev: float | None = None
        self._was_away_t: float | None = None  # last frame read away, while the look away lasts
        self._road_since: float | None = None
        self.source = "head"
        self.ladder = Escalation(self.alerts, urgent=DistractionLevel.UNRESPONSIVE)
        self.zone = "road"
        self._details: dict = {}

    def _away_now(self, obs: Observation) -> bool | None:
        """True away, False in the road zone, None unknown."""
        t = obs.t
        reading = self.head.update(obs)
        if reading is not None and reading.eyes is not None and reading.eyes.closed:
            if reading.eyes.state == "lowered" and self._was_away_t is not None and reading.zone != "road":
                # Lowered lids, not shut, in the middle of a look away: an ambiguous closure, and
                # "an ambiguity silences neither" (rules/eyes.py). A driver reading a phone in his
                # lap lowers his lids while his head is still turning down: ending the look away
                # there restarted a 2.9 s look from zero on the car clip (13.17-13.33 s).
                self.zone = reading.zone
                self._was_away_t, self._road_since = t, None
                return True
            # a closure (shut lids; lowered lids near the road pitch; a doze whose head sank):
            # driver_fatigue's, never a look away (and no hold)
            self._was_away_t = self._road_since = None
            return None
        if reading is not None:
            self.source = reading.source
            if reading.zone != "road":
                self.zone = reading.zone
                self._was_away_t, self._road_since = t, None
                return True
            if self._road_since is None:
                self._road_since = t
            if self._was_away_t is not None and t - self._road_since < self.cfg.back_min_s:
                return True  # a flicker back, inside the look away
            self._was_away_t = None
            self.zone = "road"
            return False
        self._road_since = None
        if self._was_away_t is not None and t - self._was_away_t <= self.cfg.lost_hold_s:
            return True
        self._was_away_t = None
        return None

    def live(self) -> dict:
        """The road zone and its calibration, with the latest step's figures."""
        return {**self._details, **self.head.live()}

    def vats_sum(self, t: float) -> float:
        while self.glances and t - self.glances[0][0] > self.cfg.vats_window_s:
            self.glances.popleft()
        return sum(dt for _, dt in self.glances)

    def step(self, obs: Observation) -> list[Event]:
        t = obs.t
        dt = 0.0 if self.t_prev is None else min(max(0.0, t - self.t_prev), SAMPLE_HOLD_MAX_S)
        self.t_prev = t
        away = self._away_now(obs)
        away_s = self.away.update(away is True, t)
        # Time back on the road counts from the first road frame, flicker included: a return
        # that lasts is a return from its start.
        back_s = 0.0 if self._road_since is None else t - self._road_since
        if away and self._road_since is not None:
            self._flicker.append((t, dt))  # away only if the look away goes on
        elif away:
            self.glances.extend(self._flicker)
            self._flicker.clear()
            self.glances.append((t, dt))
        else:
            self._flicker.clear()
        if back_s >= self.cfg.vats_reset_s:
            self.glances.clear()
        vats = self.vats_sum(t)
        c = self.cfg
        level = DistractionLevel.NONE
        if away_s >= c.unresponsive_s:
            level = DistractionLevel.UNRESPONSIVE
        elif away_s >= c.prompt_s:
            level = DistractionLevel.PROMPT
        elif away_s >= c.long_s:
            level = DistractionLevel.DISTRACTED
        elif vats >= c.vats_s:
            level = DistractionLevel.TIME_SHARING
        details = {
            "away_s": round(away_s, 3),
            "time_sharing_s": round(vats, 3),
            "direction": self.zone if away else None,
            "judged_on": self.source,
            "calibrated": self.head.calibrated,
            "road_yaw_deg": round(float(self.head.neutral[0]), 1),
            "road_pitch_deg": round(float(self.head.neutral[1]), 1),
        }
        self._details = details
        peak = {"level": level, "away_s": round(away_s, 3), "time_sharing_s": round(vats, 3)}
        recovered = back_s >= c.release_s and vats < c.vats_s
        return self.ladder.step(t, obs.t_wall, level, details, peak, recovered)
