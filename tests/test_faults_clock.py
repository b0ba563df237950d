"""Clock steps: the wall clock jumps an hour forward, then two hours back, while alerts are open
(a unit without a real-time clock when NTP arrives). Alert durations and rule timing run on the
monotonic clock and do not notice; payload timestamps follow the new wall clock; every alert
the rule opened is ended by the rule.

The daemon's wall clock is stepped through ``tests/clock/sitecustomize.py`` (an injected
clock: ``time.time`` plus an offset read from a file); see there why not libfaketime.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from broker import Collector, needs_mosquitto
from conftest import REPO
from daemon_helpers import DaemonProcess, alternating_clip, check_payload, daemon_config, prefix

pytestmark = needs_mosquitto

HOUR = 3600.0
AFTER_S = 1.0  # driver_absent: seconds without a face before the alert starts
SLACK_S = 30.0  # wall-clock comparisons: an hour's step must show, a second's delivery must not


def wall(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def stepped_clock(tmp_path, monkeypatch):
    """Write an offset (seconds) to step the daemon's wall clock; 0 at start."""
    path = tmp_path / "wall_offset"
    path.write_text("0")
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests" / "clock"))
    monkeypatch.setenv("EMOTIOND_TEST_WALL_OFFSET_FILE", str(path))

    def step(offset: float) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(offset))
        tmp.replace(path)  # atomic: the daemon never reads half a number

    return step


def test_wall_clock_steps_leave_alert_timing_alone(tmp_path, broker, emotion_model, stepped_clock):
    device = "clock-step"
    topic = f"{prefix(device)}/events"
    sub = Collector(broker, [topic])
    clip = alternating_clip(tmp_path / "face_gap.mp4", face_s=2.0, blank_s=2.5, cycles=3)
    cfg = daemon_config(tmp_path, broker, device, emotion_model,
                        source={"uri": str(clip), "loop": True, "realtime": True},
                        detector={"type": "haar", "every_n": 1},
                        rules=[{"type": "driver_absent", "after_s": AFTER_S, "confirm_s": 0.3}])
    proc = DaemonProcess(cfg, tmp_path / "daemon.log")
    arrivals: dict[tuple[str, str], float] = {}  # (phase, id) -> real time.time() at arrival here

    def events() -> list[dict]:
        docs = [check_payload("events", m.payload) for m in sub.on(topic)]
        for d in docs:
            arrivals.setdefault((d["phase"], d["id"]), time.time())
        return docs

    def wait(phase: str, n: int) -> dict:
        """The n-th (1-based) event of this phase."""
        ok = sub.wait_for(lambda _m: len([d for d in events() if d["phase"] == phase]) >= n, timeout=30)
        assert ok, f"no {phase} #{n}:\n{proc.log()[-3000:]}"
        return [d for d in events() if d["phase"] == phase][n - 1]

    try:
        first = wait("start", 1)
        stepped_clock(+HOUR)  # NTP arrives: an hour forward while the alert is open
        first_end = wait("end", 1)
        second = wait("start", 2)
        stepped_clock(-HOUR)  # and two hours back while the next one is open
        second_end = wait("end", 2)
        third, third_end = wait("start", 3), wait("end", 3)
        assert proc.terminate(10) == 0
    finally:
        proc.kill()
        sub.close()

    offsets = {first["id"]: (0, HOUR), second["id"]: (HOUR, -HOUR), third["id"]: (-HOUR, -HOUR)}
    for start, end in ((first, first_end), (second, second_end), (third, third_end)):
        assert end["id"] == start["id"], "alerts end in order, each by the rule"
        at_start, at_end = offsets[start["id"]]
        # Rule timing and durations: monotonic, untouched by the steps.
        assert AFTER_S <= start["details"]["absent_s"] < AFTER_S + 1.0, start
        assert 0 < end["details"]["duration_s"] < 10, end
        assert "present_s" in end["details"], "ended by the rule, not by the shutdown"
        # Payload timestamps: the wall clock of the moment, stepped or not.
        for doc, offset in ((start, at_start), (end, at_end)):
            real = arrivals[(doc["phase"], doc["id"])]
            assert abs(wall(doc["ts"]) - (real + offset)) < SLACK_S, (doc["phase"], doc["ts"], offset)
        assert abs(wall(start["started_at"]) - (arrivals[("start", start["id"])] + at_start)) < SLACK_S
        assert abs(wall(end["ended_at"]) - (arrivals[("end", end["id"])] + at_end)) < SLACK_S
        # So the wall span shows the step and the duration does not.
        span = wall(end["ended_at"]) - wall(start["started_at"])
        assert abs(span - (at_end - at_start) - end["details"]["duration_s"]) < 1.0, (span, end)
    starts = {d["id"] for d in events() if d["phase"] == "start"}
    ends = {d["id"] for d in events() if d["phase"] == "end"}
    assert starts <= ends, "no alert stays open"
