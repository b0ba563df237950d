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

**What counts as a closure** is ``rules/eyes.py``'s (shared with ``driver_distraction``, so
the two rules never both claim a frame): the eye model where the face is turned towards the
camera, the eyelid contour (the ``gaze`` signal) everywhere, against the driver's own open
aperture. Lids seen **shut** count for everything: a microsleep at 1 s, sleep, PERCLOS, wherever
the head points (a driver asleep with his head hanging, tilted, or seen from a dashcam's angle
before any road direction was learned). **Lowered** lids near the road pitch (a closure behind
glasses, or a look down at notes: the picture cannot tell) are an *ambiguous* closure: they
count towards sleep (3 s) and beyond, not towards a microsleep (which needs the lids seen shut
on ``MICROSLEEP_SHUT_SHARE`` of the closure) or PERCLOS: the eyes have been off the road for 3 s either way, and an ambiguity
must not silence both rules. Lowered lids with the head pitched down beyond ``head.look_down_deg``
are a look down (``driver_distraction``'s), unless the eyes shut first and the head then sank:
a doze stays a closure. Eyes squeezed during a yawn are not a closure. Without the
``head_pose`` signal (no pose to read a glance from) the eye model's reading counts as it is.

**Drowsy level** (KSS-like, below the closure levels): PERCLOS over its threshold, or
``drowsy_yawns`` yawns within ``drowsy_window_s`` (5 min); long blinks (closures of
``long_blink_s`` to ``microsleep_s``) are counted in ``details`` and alert only when
``drowsy_long_blinks`` is set. A yawn is the mouth held open
(``yawn_mar``) for ``yawn_min_s`` while narrower than the driver's resting mouth
(``yawn_width_ratio``): a yawn stretches the mouth into a tall O, a shout or a laugh widens it
(measured on mouth_open_480x480.mp4: inner mouth width 0.45 of the eye-corner width in the
yawn, 0.50 at rest, 0.58 in the shout; the MAR and duration of the two are alike).
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum
from typing import ClassVar, Literal, Sequence

import numpy as np
from pydantic import Field, model_validator

from ..types import Event, Observation
from .base import Escalation, Held, Hysteresis, Rule, RuleBase, Seconds, Share
from .eyes import ESTABLISHED_S, MODEL_CLOSED, MODEL_OPEN, YAWN_MAR, YAWN_MIN_S
from .head import HeadTracker, HeadZoneConfig, has_pose_signal

# Euro NCAP continuous-closure timings.
MICROSLEEP_S = 1.0  # eyes closed ~1 s (a blink is 0.1-0.4 s)
# A microsleep needs the lids seen shut on at least this share of the closure's frames (the talking
# head's 1.4 s glance at her notes: 8 %, a blink as it began; eyes_shut_desk: most); an
# ambiguous closure (lowered lids: a look at notes reads the same) alerts from sleep_s only.
MICROSLEEP_SHUT_SHARE = 0.3
# Euro NCAP: the first microsleep alerts. (Before the head gate, a downward glance with lowered
# lids read as a closure and this had to be 2.)
MICROSLEEP_REPEAT = 1
MICROSLEEP_WINDOW_S = 60.0
SLEEP_S = 3.0  # eyes closed >= 3 s
UNRESPONSIVE_S = 6.0  # eyes closed >= 6 s
# PERCLOS.
PERCLOS_WINDOW_S = 60.0
PERCLOS_THRESHOLD = 0.15
PERCLOS_RELEASE = 0.03  # PERCLOS must fall this far below the threshold to count as recovered
PERCLOS_MIN_COVERAGE = 0.5  # share of the window with a known eye state before PERCLOS is trusted
# Eye state from the classifier's closed probability (two thresholds: no flicker at one value).
CLOSED_ON = MODEL_CLOSED  # one pair of thresholds for the eye model, wherever it is read
CLOSED_OFF = MODEL_OPEN
RELEASE_S = 2.0  # eyes open this long (and PERCLOS recovered) ends the alert
# A frame stands for the time since the previous one, but never more than this: after a stall,
# the eye state in the gap is unknown, not "as last seen".
SAMPLE_HOLD_MAX_S = 0.5
# Unknown eye state for longer than this breaks a closure (the face or eyes were lost).
UNKNOWN_BREAK_S = 1.0
# ... but an established closure (closed frames for rules/eyes.py's ESTABLISHED_S, the lids seen
# shut; not two shut frames with unknown ones between them, as a dashcam's head sweep gives) is a
# doze: the head that drops with it loses the face for a moment (about a second in a dozing
# driver's night cabin; 1.2 s in tests/test_eyes_any_angle.py's night doze, which began 0.95 s
# before the face was lost, under a microsleep), and the closure goes on through a gap up to this long.
DOZE_UNKNOWN_BREAK_S = 2.0
# ... and eyes read open for less than this inside a doze are a flutter, not an awakening: the
# closure goes on (its length is held while they read open). On a small dim face the eye cues
# misread a sleeper's shut lids as open on lone runs of 1-4 frames at 15 frames/s: the 40-px
# night dashcam sleeper of bench/asleep_views.py, runs of 67-200 ms every 1-2 s, each of which
# restarted the closure (a microsleep, never sleep). A driver who wakes keeps the eyes open for
# seconds; a blink is never a doze (ESTABLISHED_S of closure first).
FLUTTER_S = 0.25
# Drowsiness signs counted over a rolling window (KSS-like drowsy level).
DROWSY_WINDOW_S = 300.0
DROWSY_YAWNS = 3
# Long blinks are counted and published, not alerted on by default: at 25 frames/s the eye
# model's closure timing cannot tell a 0.4 s blink from a 0.5 s one reliably.
DROWSY_LONG_BLINKS = None
LONG_BLINK_S = 0.5
# Yawns from the mouth (head_pose signal's mar and mouth_width; YAWN_MAR and YAWN_MIN_S: rules/eyes.py).
YAWN_WIDTH_RATIO = 0.95
YAWN_NARROW_SHARE = 0.6  # share of the open stretch's frames narrower than the resting mouth
REST_MAR = 0.15  # a mouth this closed is at rest: its width is the driver's resting width
REST_WIDTH_FALLBACK = 0.50  # resting width before any is measured (the clips: 0.48-0.52)
REST_SAMPLES = 300


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
    needs_signals: ClassVar[tuple[str, ...]] = ("eyes", "head_pose")  # closures; head pose keeps glances from counting
    head: HeadZoneConfig = Field(HeadZoneConfig(), title="the driver's road direction, against which a look down is told from a closure")
    drowsy_window_s: float = Field(DROWSY_WINDOW_S, gt=0, title="window for counting yawns and long blinks, seconds")
    drowsy_yawns: int = Field(DROWSY_YAWNS, ge=1, title="yawns within drowsy_window_s that raise the drowsy level")
    drowsy_long_blinks: int | None = Field(
        DROWSY_LONG_BLINKS, ge=1, title="long blinks within drowsy_window_s that raise the drowsy level (null: counted, not alerted)")
    long_blink_s: Seconds = Field(LONG_BLINK_S, title="a closure at least this long (and shorter than microsleep_s) is a long blink")
    yawn_mar: float = Field(YAWN_MAR, gt=0, title="mouth aspect ratio from which the mouth is wide open")
    yawn_min_s: Seconds = Field(YAWN_MIN_S, title="wide open at least this long (and narrower than at rest) is a yawn")
    yawn_width_ratio: float = Field(YAWN_WIDTH_RATIO, gt=0, title="a yawning mouth is narrower than this share of the resting mouth's width")
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
    closed_on: Share = Field(CLOSED_ON, title="for a face without a head_pose reading at all (the Python API, a signal-less source): "
                                                              "the eye model's closed probability at which the eyes count as closed; with one, "
                                                              "rules/eyes.py fuses the cues")
    closed_off: Share = Field(CLOSED_OFF, title="for a face without a head_pose reading at all: the closed probability at which "
                                                                "closed eyes count as open again")
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
        self.opened = Held()  # eyes read open inside the closure (a flutter, or the end)

    def update(self, closed: bool | None, t: float, hold_s: float = UNKNOWN_BREAK_S, flutter_s: float = 0.0) -> float:
        """``hold_s``: how long an unknown stretch may last inside the closure; ``flutter_s``:
        how long eyes read open may (the length is held meanwhile, so a closure that ends there
        is not lengthened by them; one that goes on counts them)."""
        if closed is None:
            if self.unknown.update(True, t) > hold_s:
                self.seconds, self.since = 0.0, None
            return self.seconds
        self.unknown.update(False, t)
        opened_s = self.opened.update(not closed, t)
        if not closed:
            if self.since is not None and opened_s < flutter_s:
                return self.seconds
            self.seconds, self.since = 0.0, None
        else:
            if self.since is None:
                self.since = t
            self.seconds = t - self.since
        return self.seconds


class Yawns:
    """Counts yawns from the mouth: open wide (``mar``) for ``min_s`` with most of the stretch
    narrower than the driver's resting mouth (its width is learned while the mouth is closed)."""

    def __init__(self, mar_on: float, min_s: float, width_ratio: float) -> None:
        self.mar_on, self.min_s, self.width_ratio = mar_on, min_s, width_ratio
        self.rest: deque[float] = deque(maxlen=REST_SAMPLES)
        self.open_since: float | None = None
        self.frames = 0
        self.narrow = 0
        self.counted = False
        self.narrow_below = REST_WIDTH_FALLBACK * width_ratio  # set from the resting mouth at each opening

    def rest_width(self) -> float:
        return float(np.median(self.rest)) if len(self.rest) >= 10 else REST_WIDTH_FALLBACK

    def update(self, t: float, mar: float | None, width: float | None) -> bool:
        """True on the frame a yawn is recognised (once per mouth opening)."""
        if mar is None or width is None:
            self.open_since = None
            return False
        if mar < REST_MAR:
            self.rest.append(width)
        if mar < self.mar_on:
            self.open_since = None
            return False
        if self.open_since is None:  # the median of the resting widths once per opening, not per frame
            self.open_since, self.frames, self.narrow, self.counted = t, 0, 0, False
            self.narrow_below = self.width_ratio * self.rest_width()
        self.frames += 1
        self.narrow += width < self.narrow_below
        if (not self.counted and t - self.open_since >= self.min_s
                and self.narrow >= YAWN_NARROW_SHARE * self.frames):
            self.counted = True
            return True
        return False


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
        self.ladder = Escalation(self.alerts, urgent=FatigueLevel.SLEEP)
        self.head = HeadTracker(cfg.head)
        self._details: dict = {}
        self.head_away = False
        self._pending: list[tuple[float, float, bool]] = []  # closed frames of the closure going on (t, dt, shut)
        self._shut = False  # this frame's lids were seen shut
        self._frames = 0  # frames of the closure going on
        self._shut_frames = 0  # ... of which with the lids seen shut
        self._closed_s = 0.0  # ... and the time they stand for
        self.yawns = Yawns(cfg.yawn_mar, cfg.yawn_min_s, cfg.yawn_width_ratio)
        self.yawn_times: deque[float] = deque()
        self.long_blinks: deque[float] = deque()
        self._closure_prev = 0.0

    def closure_level(self, closure_s: float) -> FatigueLevel:
        c = self.cfg
        if closure_s >= c.unresponsive_s:
            return FatigueLevel.UNRESPONSIVE
        if closure_s >= c.sleep_s:
            return FatigueLevel.SLEEP
        if closure_s >= c.microsleep_s and len(self.microsleeps) >= c.microsleep_repeat and self.seen_shut():
            return FatigueLevel.MICROSLEEP
        return FatigueLevel.NONE

    def seen_shut(self) -> bool:
        """The closure going on saw the lids shut often enough to be a microsleep (not only
        lowered lids, which a look at notes gives too)."""
        return self._shut_frames >= MICROSLEEP_SHUT_SHARE * self._frames

    def count_microsleeps(self, closure_s: float, t: float) -> None:
        """Remember each closure that reached microsleep length, for ``microsleep_repeat``."""
        if closure_s >= self.cfg.microsleep_s and not self._counted and self.seen_shut():
            self.microsleeps.append(t)
            self._counted = True
        elif self.closure.since is None:
            self._counted = False
        while self.microsleeps and t - self.microsleeps[0] > self.cfg.microsleep_window_s:
            self.microsleeps.popleft()

    def live(self) -> dict:
        """PERCLOS and the closure so far, with this rule's (tighter) road zone."""
        return {**self._details, **self.head.live()}

    def eye_state(self, obs: Observation) -> bool | None:
        """True closed, False open, None unknown (no reading, the head unreadable, a look down).
        A look down sets ``self.head_away``; ``self._shut`` says whether the lids were seen shut."""
        face = obs.primary
        reading = self.head.update(obs)
        self.head_away = self._shut = False
        if face is None:
            return None
        if not has_pose_signal(face):
            closed = face.signal("eye_closed")  # no pose to tell a glance from: the eye model as it reads
            self._shut = closed is not None and self.eyes.update(closed)
            return None if closed is None else self._shut
        if reading is None or reading.eyes is None:
            return None  # the head cannot be read: neither a closure nor open eyes
        eyes = reading.eyes
        if eyes.look_down:
            self.head_away = True  # a look down with lowered lids: not an eye closure
            return None
        self._shut = eyes.shut
        return eyes.closed

    def add_to_perclos(self, t: float, dt: float, closed: bool | None) -> None:
        """Closed frames wait until the closure ends: a closure that ends with the eyes opening
        counts, one that ends with the head looking away was the lids dropping for a glance
        (they drop a few frames before the head moves far) and is left out. Only lids seen shut
        are PERCLOS's closed time (P80: the lids cover the pupil); ambiguous frames are left out."""
        if closed:
            self._pending.append((t, dt, self._shut))
            return
        if closed is False:
            for tp, dtp, shut in self._pending:
                if shut:
                    self.perclos.add(tp, dtp, True)
            self._pending.clear()
            self.perclos.add(t, dt, False)
        elif self.head_away:
            self._pending.clear()

    def count_signs(self, obs: Observation, closure_s: float) -> None:
        """Yawns and long blinks within the drowsy window."""
        t = obs.t
        face = obs.primary
        pose = face.signal("head_pose") if face is not None else None
        if isinstance(pose, dict) and self.yawns.update(t, pose.get("mar"), pose.get("mouth_width")):
            self.yawn_times.append(t)
        if closure_s == 0.0 and self.cfg.long_blink_s <= self._closure_prev < self.cfg.microsleep_s:
            self.long_blinks.append(t)
        self._closure_prev = closure_s
        for times in (self.yawn_times, self.long_blinks):
            while times and t - times[0] > self.cfg.drowsy_window_s:
                times.popleft()

    def drowsy_signs(self) -> bool:
        c = self.cfg
        return len(self.yawn_times) >= c.drowsy_yawns or (
            c.drowsy_long_blinks is not None and len(self.long_blinks) >= c.drowsy_long_blinks)

    def step(self, obs: Observation) -> list[Event]:
        t = obs.t
        dt = 0.0 if self.t_prev is None else min(max(0.0, t - self.t_prev), SAMPLE_HOLD_MAX_S)
        self.t_prev = t
        closed = self.eye_state(obs)
        self.add_to_perclos(t, dt, closed)
        # Looking away ends a closure at once (the lids dropped for the glance, not for sleep);
        # a merely unreadable frame leaves it running for up to UNKNOWN_BREAK_S.
        # a doze: closed frames (not unknown ones between two shut frames) for ESTABLISHED_S
        doze = self._closed_s >= ESTABLISHED_S and self.seen_shut()
        closure_s = self.closure.update(False if self.head_away else closed, t,
                                        DOZE_UNKNOWN_BREAK_S if doze else UNKNOWN_BREAK_S,
                                        FLUTTER_S if doze and not self.head_away else 0.0)
        if self.closure.since is None:
            self._frames = self._shut_frames = 0
            self._closed_s = 0.0
        elif closed:
            self._frames += 1
            self._shut_frames += self._shut
            self._closed_s += dt
        # A closure alerts only once its frames read closed stand for ESTABLISHED_S: a few lone
        # closed readings with unknown frames between them are not one (the mirrored street
        # clip: three shut frames of passers-by's faces across 1.2 s, 0.12 s of them closed,
        # made a microsleep).
        judged_s = closure_s if self._closed_s >= ESTABLISHED_S else 0.0
        self.count_microsleeps(judged_s, t)
        self.count_signs(obs, closure_s)
        perclos = self.perclos.value(t)
        drowsy = self.drowsy.update(perclos) or self.drowsy_signs()
        level = max(self.closure_level(judged_s), FatigueLevel.DROWSY if drowsy else FatigueLevel.NONE)
        details = {
            "perclos": None if perclos is None else round(perclos, 3),
            "closure_s": round(closure_s, 3),
            "microsleeps": len(self.microsleeps),
            "perclos_window_s": self.cfg.perclos_window_s,
            "yawns": len(self.yawn_times),
            "long_blinks": len(self.long_blinks),
        }
        self._details = details
        peak = {"level": level, "perclos": perclos, "closure_s": round(closure_s, 3)}
        recovered = self.recovered.update(closed is False and not drowsy, t) >= self.cfg.release_s
        # A cooldown never silences sleep: Euro NCAP wants it warned every time.
        return self.ladder.step(t, obs.t_wall, level, details, peak, recovered)
