"""Rule timing on an injected clock: synthetic observation streams at 25 fps, exact times."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from daemon.rules import RuleConfig, RuleError, RulesEngine
from daemon.types import Event, FaceState, Observation

LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
FPS = 25
WALL0 = 1_700_000_000.0  # wall clock at t = 0
OPEN, CLOSED = 0.05, 0.95  # eye-closed probabilities the classifier gives for clear frames
RULES = TypeAdapter(list[RuleConfig])


def face(eye_closed: float | None = OPEN, emotion: str = "neutral", conf: float = 0.9, track_id: int = 1, primary: bool = True) -> FaceState:
    probs = np.full(len(LABELS), (1.0 - conf) / (len(LABELS) - 1), dtype=np.float32)
    probs[LABELS.index(emotion)] = conf
    return FaceState(track_id, (100, 100, 120, 120), probs, emotion, conf, primary=primary, eye_closed=eye_closed)


@dataclass
class Seen:
    t: float  # observation clock when the engine returned the event
    event: Event


class Drive:
    """Feeds an engine frame by frame on a 25 fps clock and records what it returns."""

    def __init__(self, *rules: dict) -> None:
        self.engine = RulesEngine(RULES.validate_python(list(rules)), LABELS)
        self.frame = 0
        self.seen: list[Seen] = []

    @property
    def t(self) -> float:
        return self.frame / FPS

    def hold(self, seconds: float, *faces: FaceState) -> "Drive":
        """The same faces in every frame for ``seconds``."""
        for _ in range(round(seconds * FPS)):
            obs = Observation(self.t, WALL0 + self.t, list(faces), LABELS)
            self.seen += [Seen(self.t, e) for e in self.engine.step(obs)]
            self.frame += 1
        return self

    def eyes(self, seconds: float, closed_prob: float | None) -> "Drive":
        return self.hold(seconds, face(closed_prob))

    def cycle(self, seconds: float, period_s: float, closed_s: float) -> "Drive":
        """Eyes closed for ``closed_s`` at the start of every ``period_s``."""
        for _ in range(round(seconds / period_s)):
            self.eyes(closed_s, CLOSED).eyes(period_s - closed_s, OPEN)
        return self

    def events(self, phase: str | None = None) -> list[Event]:
        return [s.event for s in self.seen if phase is None or s.event.phase == phase]

    def time_of(self, phase: str, level: str | None = None) -> float:
        return next(s.t for s in self.seen if s.event.phase == phase and (level is None or s.event.level == level))


# Euro NCAP timings exactly: alert on the first microsleep (the default again since the head gate).
FATIGUE = {"type": "driver_fatigue", "microsleep_repeat": 1}
DEFAULT_FATIGUE = {"type": "driver_fatigue"}
# The former default, still available for cameras without head pose: wait for a second microsleep.
TWO_MICROSLEEPS = {"type": "driver_fatigue", "microsleep_repeat": 2}


def test_blinks_of_150_ms_never_alert():
    # 20 blinks a minute (a high normal rate) for three minutes: PERCLOS 5 %, no closure over 1 s.
    d = Drive(FATIGUE).cycle(180, 3.0, 0.16)
    assert d.events() == []


def test_one_and_a_half_second_closure_is_a_microsleep():
    d = Drive(FATIGUE).eyes(10, OPEN).eyes(1.5, CLOSED).eyes(5, OPEN)
    start, end = d.events()
    assert (start.phase, start.level, end.phase) == ("start", "microsleep", "end")
    assert start.id == end.id
    assert 10.9 <= d.time_of("start") <= 11.05  # about 1 s after the eyes closed at 10 s
    assert end.details["peak"]["level"] == "microsleep"
    assert 1.4 <= end.details["peak"]["closure_s"] <= 1.55
    assert d.time_of("end") == pytest.approx(11.5 + 2.0, abs=0.05)  # release_s of open eyes
    assert end.ended_at == pytest.approx(WALL0 + d.time_of("end"))
    assert end.started_at == start.started_at


def test_by_default_one_microsleep_alerts_at_one_second():
    d = Drive(DEFAULT_FATIGUE).eyes(10, OPEN).eyes(1.5, CLOSED).eyes(5, OPEN)
    start, end = d.events()
    assert (start.phase, start.level, end.phase) == ("start", "microsleep", "end")
    assert 10.9 <= d.time_of("start") <= 11.05


def test_with_microsleep_repeat_2_one_microsleep_is_not_an_alert_but_a_second_within_a_minute_is():
    d = Drive(TWO_MICROSLEEPS).eyes(10, OPEN).eyes(1.5, CLOSED).eyes(20, OPEN)
    assert d.events() == []  # one 1.5 s closure: as likely a downward glance as a microsleep
    d.eyes(1.5, CLOSED).eyes(5, OPEN)
    start, end = d.events()
    assert (start.phase, start.level, end.phase) == ("start", "microsleep", "end")
    assert start.details["microsleeps"] == 2
    assert 32.4 <= d.time_of("start") <= 32.55  # 1 s into the second closure at 31.5 s


def test_with_microsleep_repeat_2_microsleeps_a_minute_apart_do_not_add_up():
    d = Drive(TWO_MICROSLEEPS).eyes(5, OPEN).eyes(1.5, CLOSED).eyes(70, OPEN).eyes(1.5, CLOSED).eyes(5, OPEN)
    assert d.events() == []


def test_with_microsleep_repeat_2_sleep_alerts_on_the_first_closure():
    d = Drive(TWO_MICROSLEEPS).eyes(10, OPEN).eyes(4.0, CLOSED).eyes(5, OPEN)
    assert [(e.phase, e.level) for e in d.events()] == [("start", "sleep"), ("end", "sleep")]
    assert 12.9 <= d.time_of("start") <= 13.05  # 3 s after the eyes closed: within Euro NCAP's 10 s


def test_four_second_closure_escalates_to_sleep_in_the_same_alert():
    d = Drive(FATIGUE).eyes(10, OPEN).eyes(4.0, CLOSED).eyes(5, OPEN)
    phases = [(e.phase, e.level) for e in d.events()]
    assert phases == [("start", "microsleep"), ("update", "sleep"), ("end", "sleep")]
    assert len({e.id for e in d.events()}) == 1
    assert 12.9 <= d.time_of("update", "sleep") <= 13.05
    assert d.events("end")[0].details["peak"]["level"] == "sleep"


def test_seven_second_closure_reaches_unresponsive():
    d = Drive(FATIGUE).eyes(5, OPEN).eyes(7.0, CLOSED)
    assert [e.level for e in d.events()] == ["microsleep", "sleep", "unresponsive"]
    assert 10.9 <= d.time_of("update", "unresponsive") <= 11.05


def test_noisy_probability_inside_the_hysteresis_band_does_not_break_a_closure():
    d = Drive(FATIGUE).eyes(5, OPEN)
    for _ in range(20):  # 4 s closed; every fifth frame the classifier wavers to 0.5
        d.eyes(0.16, CLOSED).eyes(0.04, 0.5)
    assert [e.level for e in d.events()] == ["microsleep", "sleep"]


def test_unknown_eye_state_is_never_counted_as_closed():
    # No face for 10 s right after a 0.8 s closure: neither a microsleep nor closed PERCLOS time.
    d = Drive(FATIGUE).eyes(40, OPEN).eyes(0.8, CLOSED).hold(10).eyes(0.3, CLOSED).eyes(30, OPEN)
    assert d.events() == []


def test_perclos_over_the_threshold_raises_a_drowsy_alert():
    # 0.8 s of every 4 s closed = PERCLOS 0.20, with no single closure reaching a microsleep.
    d = Drive(FATIGUE).cycle(120, 4.0, 0.8)
    (start,) = d.events()
    assert (start.phase, start.level) == ("start", "drowsy")
    assert start.details["perclos"] >= 0.15
    # PERCLOS is trusted once half the 60 s window is covered.
    assert 29.0 <= d.time_of("start") <= 31.0


def test_perclos_under_the_threshold_stays_quiet():
    d = Drive(FATIGUE).cycle(180, 4.0, 0.4)  # PERCLOS 0.10
    assert d.events() == []


def test_perclos_hovering_at_the_threshold_does_not_flap_then_recovers():
    d = Drive(FATIGUE).cycle(90, 5.0, 0.8)  # 0.16
    d.cycle(90, 5.0, 0.7).cycle(90, 5.0, 0.8).cycle(90, 5.0, 0.7)  # 0.14, 0.16, 0.14
    assert [e.phase for e in d.events()] == ["start"]
    d.eyes(90, OPEN)
    assert [e.phase for e in d.events()] == ["start", "end"]
    assert d.events("end")[0].details["peak"]["perclos"] >= 0.15


def test_absence_starts_after_after_s_and_ends_with_the_same_uuid():
    d = Drive({"type": "driver_absent", "after_s": 5}).hold(3, face()).hold(12)
    assert d.time_of("start") == pytest.approx(3 + 5, abs=0.05)
    d.hold(0.04, face()).hold(2)  # one stray detection does not end it
    assert [e.phase for e in d.events()] == ["start"]
    d.hold(3, face())
    start, end = d.events()
    assert end.phase == "end" and end.id == start.id
    assert d.time_of("end") == pytest.approx(15.04 + 2 + 1.0, abs=0.05)  # confirm_s after the face came back at 17.04 s
    assert end.details["peak"]["absent_s"] >= 11.0
    assert d.engine.active() == []


def test_cooldown_holds_back_a_second_alert():
    d = Drive({"type": "driver_absent", "after_s": 2, "cooldown_s": 30})
    d.hold(1, face()).hold(3).hold(2, face())  # first absence: start and end
    d.hold(5).hold(2, face())  # second absence inside the cooldown: nothing
    assert [e.phase for e in d.events()] == ["start", "end"]
    d.hold(25, face()).hold(5)  # after the cooldown: a new alert with a new id
    assert [e.phase for e in d.events()] == ["start", "end", "start"]
    assert d.events()[2].id != d.events()[0].id
    assert d.engine.active() == [d.events()[2].id]


def test_sustained_anger_for_three_seconds_with_hysteresis_and_cooldown():
    d = Drive({"type": "sustained_emotion", "emotion": "angry", "threshold": 0.6, "duration_s": 3, "cooldown_s": 20})
    d.hold(2, face(emotion="angry", conf=0.8)).hold(1, face()).hold(5, face(emotion="angry", conf=0.7))
    assert [e.phase for e in d.events()] == ["start"]
    assert d.time_of("start") == pytest.approx(3 + 3, abs=0.05)  # the 2 s burst did not count
    d.hold(5, face(emotion="angry", conf=0.55))  # below the threshold, above the release level
    assert [e.phase for e in d.events()] == ["start"]
    d.hold(2, face(emotion="angry", conf=0.3))
    start, end = d.events()
    assert end.id == start.id and end.details["peak"]["confidence"] == pytest.approx(0.7)
    assert d.time_of("end") == pytest.approx(13 + 1.0, abs=0.05)  # release_s below 0.5
    d.hold(10, face(emotion="angry", conf=0.9))  # inside the 20 s cooldown
    assert len(d.events()) == 2
    d.hold(10, face(emotion="angry", conf=0.9))
    assert [e.phase for e in d.events()] == ["start", "end", "start"]


def test_summary_counts_each_track_once_under_its_dominant_emotion():
    d = Drive({"type": "emotion_summary", "period_s": 10})
    d.hold(6, face(emotion="happy"), face(emotion="angry", track_id=2, primary=False))
    d.hold(3, face(emotion="neutral"))  # track 1 is happy for 6 s, neutral for 3 s
    d.hold(1.04)  # the frame at t = 10 s closes the first period
    (summary,) = d.events()
    assert summary.type == "emotion_summary" and summary.phase == "end"
    counts = summary.details["counts"]
    assert counts["happy"] == 1 and counts["angry"] == 1 and sum(counts.values()) == 2
    assert summary.details["faces"] == 2 and summary.details["frames"] == 250
    assert summary.details["face_frames"]["neutral"] == 75
    assert (summary.started_at, summary.ended_at) == (pytest.approx(WALL0), pytest.approx(WALL0 + 10))
    (partial,) = d.engine.close(d.t, WALL0 + d.t)
    assert partial.details["partial"] and partial.details["frames"] == 1 and partial.details["faces"] == 0


def test_close_ends_open_alerts_at_shutdown():
    d = Drive(FATIGUE, {"type": "driver_absent"}).eyes(5, OPEN).eyes(2, CLOSED)
    (open_id,) = d.engine.active()
    (end,) = d.engine.close(d.t, WALL0 + d.t)
    assert (end.id, end.phase, end.details["reason"]) == (open_id, "end", "shutdown")
    assert d.engine.active() == []


@pytest.mark.parametrize(
    ("rule", "loc", "error"),
    [
        ({"type": "driver_sleepy"}, (0,), "union_tag_invalid"),
        ({"type": "driver_absent", "after_s": -1}, (0, "driver_absent", "after_s"), "greater_than"),
        ({"type": "sustained_emotion", "duration_s": -3}, (0, "sustained_emotion", "duration_s"), "greater_than_equal"),
        ({"type": "sustained_emotion", "threshold": 1.2}, (0, "sustained_emotion", "threshold"), "less_than_equal"),
        ({"type": "driver_fatigue", "perclos_threshold": -0.1}, (0, "driver_fatigue", "perclos_threshold"), "greater_than_equal"),
        ({"type": "driver_fatigue", "sleep_s": 0.5}, (0, "driver_fatigue"), "value_error"),
        ({"type": "emotion_summary", "period": 60}, (0, "emotion_summary", "period"), "extra_forbidden"),
    ],
)
def test_bad_rule_configs_are_rejected_with_their_key_path(rule, loc, error):
    with pytest.raises(ValidationError) as exc:
        RULES.validate_python([rule])
    (problem,) = exc.value.errors()
    assert (problem["loc"], problem["type"]) == (loc, error)


def test_unknown_emotion_and_duplicate_names_are_rejected_at_engine_construction():
    with pytest.raises(RuleError, match=r"rules\[1\]\.emotion: 'anger' is not a label of the model") as exc:
        RulesEngine(RULES.validate_python([FATIGUE, {"type": "sustained_emotion", "emotion": "anger"}]), LABELS)
    assert exc.value.loc == ("rules", 1, "emotion")
    with pytest.raises(RuleError, match=r"rules\[1\]\.name") as exc:
        RulesEngine(RULES.validate_python([FATIGUE, FATIGUE]), LABELS)
