"""Driver fatigue from eye closure: PERCLOS and continuous closure, escalating in one alert.

Euro NCAP (Safety Assist, Occupant Status / driver monitoring) asks a system to detect
drowsiness and, from continuous eye closure, a *microsleep* (eyes closed for about 1 s and up to
3 s), *sleep* (eyes closed for 3 s or more) and an *unresponsive driver* (eyes closed for 6 s),
warning with rising urgency. PERCLOS (Wierwille et al.; P80: the share of time the eyelids cover
at least 80 % of the pupil) over a rolling minute is the drowsiness measure; the literature puts
the alert point between 0.10 and 0.20.

Like openpilot's driver monitor, the rule is a small state machine stepped by the observation
clock. One alert carries the levels: it starts at the first level reached, sends an ``update``
each time the level rises above anything it has reached, and ends once the eyes have stayed
open (and PERCLOS has dropped back) for ``release_s``.

The eye signal is the primary face's closed probability; ``None`` (no face, eyes not found) is
unknown: it is left out of PERCLOS and never counted as closed time.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum
from typing import Literal, Sequence

from pydantic import Field, model_validator

from ..types import Event, Observation
from .base import Held, Hysteresis, Rule, RuleBase, Seconds, Share

# Euro NCAP continuous-closure timings.
MICROSLEEP_S = 1.0  # eyes closed ~1 s (a blink is 0.1-0.4 s)
# One microsleep-length closure alone does not alert by default: an eye-state classifier cannot
# tell a 1-3 s downward glance with lowered lids (reading the dashboard) from a closure, and an
# awake driver does that often. Two within a minute is a drowsy pattern; sleep alerts at once.
MICROSLEEP_REPEAT = 2
MICROSLEEP_WINDOW_S = 60.0
SLEEP_S = 3.0  # eyes closed >= 3 s
UNRESPONSIVE_S = 6.0  # eyes closed >= 6 s
# PERCLOS.
PERCLOS_WINDOW_S = 60.0
PERCLOS_THRESHOLD = 0.15
PERCLOS_RELEASE = 0.03  # PERCLOS must fall this far below the threshold to count as recovered
PERCLOS_MIN_COVERAGE = 0.5  # share of the window with a known eye state before PERCLOS is trusted
# Eye state from the classifier's closed probability (two thresholds: no flicker at one value).
CLOSED_ON = 0.6
CLOSED_OFF = 0.4
RELEASE_S = 2.0  # eyes open this long (and PERCLOS recovered) ends the alert
# A frame stands for the time since the previous one, but never more than this: after a stall,
# the eye state in the gap is unknown, not "as last seen".
SAMPLE_HOLD_MAX_S = 0.5
# Unknown eye state for longer than this breaks a closure (the face or eyes were lost).
UNKNOWN_BREAK_S = 1.0


class FatigueLevel(IntEnum):
    NONE = 0
    DROWSY = 1  # PERCLOS over the threshold
    MICROSLEEP = 2
    SLEEP = 3
    UNRESPONSIVE = 4

    @property
    def label(self) -> str:
        return self.name.lower()


class DriverFatigueConfig(RuleBase):
    type: Literal["driver_fatigue"] = "driver_fatigue"
    perclos_window_s: float = Field(PERCLOS_WINDOW_S, gt=0, title="PERCLOS rolling window, seconds")
    perclos_threshold: Share = Field(PERCLOS_THRESHOLD, title="PERCLOS share that raises a drowsy alert (0..1)")
    perclos_release: Share = Field(PERCLOS_RELEASE, title="PERCLOS must fall this far below the threshold to recover")
    perclos_min_coverage: Share = Field(PERCLOS_MIN_COVERAGE, title="share of the window with a known eye state before PERCLOS counts")
    microsleep_s: Seconds = Field(MICROSLEEP_S, title="continuous closure that is a microsleep, seconds")
    microsleep_repeat: int = Field(
        MICROSLEEP_REPEAT, ge=1, title="microsleeps within microsleep_window_s before the microsleep level alerts (1 = the first)")
    microsleep_window_s: float = Field(MICROSLEEP_WINDOW_S, gt=0, title="window for counting repeated microsleeps, seconds")
    sleep_s: Seconds = Field(SLEEP_S, title="continuous closure that is sleep, seconds")
    unresponsive_s: Seconds = Field(UNRESPONSIVE_S, title="continuous closure that is an unresponsive driver, seconds")
    closed_on: Share = Field(CLOSED_ON, title="closed probability at which the eyes count as closed")
    closed_off: Share = Field(CLOSED_OFF, title="closed probability at which closed eyes count as open again")
    release_s: Seconds = Field(RELEASE_S, title="eyes open this long (and PERCLOS recovered) ends the alert")

    @model_validator(mode="after")
    def levels_escalate(self) -> "DriverFatigueConfig":
        if not self.microsleep_s < self.sleep_s < self.unresponsive_s:
            raise ValueError("closure levels must escalate: microsleep_s < sleep_s < unresponsive_s")
        if self.closed_off > self.closed_on:
            raise ValueError("closed_off must not be above closed_on")
        return self


class Perclos:
    """Share of the known-eye-state time in a rolling window with the eyes closed.

    Durations are kept as integer microseconds so the running sums never drift.
    """

    def __init__(self, window_s: float, min_coverage: float) -> None:
        self.window_us = round(window_s * 1e6)
        self.min_known_us = round(window_s * min_coverage * 1e6)
        self.samples: deque[tuple[float, int, bool]] = deque()
        self.known_us = 0
        self.closed_us = 0

    def add(self, t: float, dt: float, closed: bool) -> None:
        dt_us = round(dt * 1e6)
        self.samples.append((t, dt_us, closed))
        self.known_us += dt_us
        self.closed_us += dt_us if closed else 0

    def value(self, t: float) -> float | None:
        """PERCLOS at ``t``; None until the window holds enough known time."""
        while self.samples and (t - self.samples[0][0]) * 1e6 >= self.window_us:
            _, dt_us, closed = self.samples.popleft()
            self.known_us -= dt_us
            self.closed_us -= dt_us if closed else 0
        if self.known_us < max(1, self.min_known_us):
            return None
        return self.closed_us / self.known_us


class Closure:
    """Length of the current continuous eye closure: from the first frame seen closed to now.

    Measured on the frames' capture clock, not by adding up frame intervals: when frames are
    skipped under load, the interval before the first closed frame is not closed time, and a
    summed clock would stretch a 0.9 s glance into a 1 s "microsleep".
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.since: float | None = None
        self.unknown = Held()

    def update(self, closed: bool | None, t: float) -> float:
        if closed is None:
            if self.unknown.update(True, t) > UNKNOWN_BREAK_S:
                self.seconds, self.since = 0.0, None
            return self.seconds
        self.unknown.update(False, t)
        if not closed:
            self.seconds, self.since = 0.0, None
        else:
            if self.since is None:
                self.since = t
            self.seconds = t - self.since
        return self.seconds


class DriverFatigue(Rule):
    type = "driver_fatigue"

    def __init__(self, cfg: DriverFatigueConfig, labels: Sequence[str], loc: tuple = ("rules",)) -> None:
        super().__init__(cfg, labels, loc)
        self.cfg: DriverFatigueConfig = cfg
        self.eyes = Hysteresis(on=cfg.closed_on, off=cfg.closed_off)
        self.perclos = Perclos(cfg.perclos_window_s, cfg.perclos_min_coverage)
        self.drowsy = Hysteresis(on=cfg.perclos_threshold, off=max(0.0, cfg.perclos_threshold - cfg.perclos_release))
        self.closure = Closure()
        self.microsleeps: deque[float] = deque()  # when recent closures reached microsleep_s
        self._counted = False  # the current closure is already in self.microsleeps
        self.recovered = Held()
        self.t_prev: float | None = None
        self.reached = FatigueLevel.NONE  # highest level of the open alert

    def closure_level(self, closure_s: float) -> FatigueLevel:
        c = self.cfg
        if closure_s >= c.unresponsive_s:
            return FatigueLevel.UNRESPONSIVE
        if closure_s >= c.sleep_s:
            return FatigueLevel.SLEEP
        if closure_s >= c.microsleep_s and len(self.microsleeps) >= c.microsleep_repeat:
            return FatigueLevel.MICROSLEEP
        return FatigueLevel.NONE

    def count_microsleeps(self, closure_s: float, t: float) -> None:
        """Remember each closure that reached microsleep length, for ``microsleep_repeat``."""
        if closure_s >= self.cfg.microsleep_s and not self._counted:
            self.microsleeps.append(t)
            self._counted = True
        elif self.closure.since is None:
            self._counted = False
        while self.microsleeps and t - self.microsleeps[0] > self.cfg.microsleep_window_s:
            self.microsleeps.popleft()

    def eye_state(self, obs: Observation) -> bool | None:
        """True closed, False open, None unknown."""
        face = obs.primary
        closed = None if face is None else face.signal("eye_closed")
        if closed is None:
            return None
        return self.eyes.update(closed)

    def step(self, obs: Observation) -> list[Event]:
        t = obs.t
        dt = 0.0 if self.t_prev is None else min(max(0.0, t - self.t_prev), SAMPLE_HOLD_MAX_S)
        self.t_prev = t
        closed = self.eye_state(obs)
        if closed is not None:
            self.perclos.add(t, dt, closed)
        closure_s = self.closure.update(closed, t)
        self.count_microsleeps(closure_s, t)
        perclos = self.perclos.value(t)
        drowsy = self.drowsy.update(perclos)
        level = max(self.closure_level(closure_s), FatigueLevel.DROWSY if drowsy else FatigueLevel.NONE)
        details = {
            "perclos": None if perclos is None else round(perclos, 3),
            "closure_s": round(closure_s, 3),
            "microsleeps": len(self.microsleeps),
            "perclos_window_s": self.cfg.perclos_window_s,
        }
        peak = {"level": level, "perclos": perclos, "closure_s": round(closure_s, 3)}
        alerts = self.alerts
        if alerts.active is None:
            if level == FatigueLevel.NONE or alerts.cooling_down(t) and level < FatigueLevel.SLEEP:
                return []  # a cooldown never silences sleep: Euro NCAP wants it warned every time
            self.reached = level
            self.recovered.update(False, t)
            return [alerts.start(t, obs.t_wall, level.label, details, peak)]
        alerts.raise_peak(**peak)
        if level > self.reached:
            self.reached = level
            return [alerts.update(level.label, details)]
        if self.recovered.update(closed is False and not drowsy, t) >= self.cfg.release_s:
            self.reached = FatigueLevel.NONE
            return [alerts.end(t, obs.t_wall, details)]
        return []
