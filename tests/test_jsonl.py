"""The JSON-lines output: every payload as one line in a file (or stdout), rotated by size,
durable for events, never a crash on a failing disk; and a daemon with both outputs publishes
the same events to the broker and the file."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest

from broker import Collector, needs_mosquitto
from daemon.config import ConfigError, parse_config
from daemon.publish.base import FanOut
from daemon.publish.jsonl import JsonlConfig, JsonlPublisher
from daemon.publish.payloads import event_payload, state_payload, stats_payload
from daemon.types import Event, FaceState, Observation
from daemon_helpers import DaemonProcess, alternating_clip, check_payload, daemon_config, prefix

LABELS = ("happy", "neutral")


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def an_event(phase: str = "start") -> dict:
    ev = Event(str(uuid.uuid4()), "driver_absent", "driver_absent", phase, time.time(), level="absent",
               details={"absent_s": 3.0})
    return event_payload(ev, "dev1")


def a_state() -> dict:
    face = FaceState(3, (1, 2, 30, 30), np.array([0.8, 0.2]), "happy", 0.8, primary=True, eye_closed=0.25)
    return state_payload(Observation(1.0, time.time(), [face], LABELS), "dev1")


def test_events_state_stats_and_camera_lines_carry_valid_payloads(tmp_path):
    path = tmp_path / "out" / "emotiond.jsonl"
    pub = JsonlPublisher(JsonlConfig(path=str(path)), "dev1")
    pub.start()
    ev = an_event()
    pub.publish_event(ev)
    pub.publish_state(a_state())
    pub.publish_stats(stats_payload({"fps": 1.0, "frames": 2, "skipped": 0, "latency_ms": {}, "rss_mb": 50.0,
                                     "uptime_s": 1.0, "delegate": "cpu", "broker_connected": False, "backlog": 0,
                                     "camera_online": True}, "dev1"))
    pub.publish_camera_status(True)
    pub.stop()
    got = lines(path)
    assert [g["topic"] for g in got] == ["events", "state", "stats", "camera/status"]
    assert got[0]["payload"] == json.loads(json.dumps(ev))
    check_payload("events", json.dumps(got[0]["payload"]).encode())
    state = check_payload("state", json.dumps(got[1]["payload"]).encode())
    assert state["primary"]["eye_closed"] == 0.25 and state["primary"]["emotion"] == "happy"
    check_payload("stats", json.dumps(got[2]["payload"]).encode())
    assert got[3]["payload"]["online"] is True and got[3]["payload"]["device"] == "dev1"
    assert pub.health() == {"written": 4, "errors": 0, "rotations": 0}


def test_appends_across_restarts_and_writes_only_the_chosen_topics(tmp_path):
    path = tmp_path / "e.jsonl"
    for _ in range(2):
        pub = JsonlPublisher(JsonlConfig(path=str(path), topics=["events"]), "dev1")
        pub.start()
        pub.publish_event(an_event())
        pub.publish_state(a_state())
        pub.stop()
    assert [g["topic"] for g in lines(path)] == ["events", "events"]


def test_rotates_by_size_keeping_the_configured_backups(tmp_path):
    path = tmp_path / "e.jsonl"
    one = len(json.dumps({"topic": "events", "payload": an_event()}, separators=(",", ":"))) + 1
    pub = JsonlPublisher(JsonlConfig(path=str(path), max_bytes=3 * one + 10, backups=2), "dev1")
    pub.start()
    sent = [an_event() for _ in range(10)]
    for ev in sent:
        pub.publish_event(ev)
    pub.stop()
    files = [path.with_name("e.jsonl.2"), path.with_name("e.jsonl.1"), path]
    assert not path.with_name("e.jsonl.3").exists()
    kept = [g["payload"]["id"] for f in files for g in lines(f)]
    assert kept == [ev["id"] for ev in sent][-len(kept):]  # the newest, in order, nothing torn
    assert all(f.stat().st_size <= 3 * one + 10 for f in files)
    assert pub.rotations == 3 and len(kept) == 7


def test_a_failing_file_is_counted_and_the_next_line_reopens_it(tmp_path):
    folder = tmp_path / "gone"
    path = folder / "e.jsonl"
    pub = JsonlPublisher(JsonlConfig(path=str(path)), "dev1")
    pub.start()
    pub.publish_event(an_event())
    path.unlink()
    folder.rmdir()
    folder.write_text("now a file: the folder cannot be created")  # every reopen fails
    pub._drop_handle()  # as after a failed write: the next line reopens the path
    pub.publish_event(an_event())
    assert pub.errors == 1 and pub.written == 1
    folder.unlink()
    ev = an_event()
    pub.publish_event(ev)  # space is back: written again
    pub.stop()
    assert pub.errors == 1 and [g["payload"]["id"] for g in lines(path)] == [ev["id"]]


def test_stdout_output(capfdbinary):
    pub = JsonlPublisher(JsonlConfig(), "dev1")
    pub.start()
    ev = an_event()
    pub.publish_event(ev)
    pub.stop()
    out = capfdbinary.readouterr().out.decode().splitlines()
    assert json.loads(out[-1]) == {"topic": "events", "payload": json.loads(json.dumps(ev))}


def test_fanout_keeps_publishing_when_one_output_fails(tmp_path):
    class Broken:
        name = "broken"

        def publish_event(self, payload):
            raise OSError("disk on fire")

        def health(self):
            return {"errors": 1}

    path = tmp_path / "e.jsonl"
    good = JsonlPublisher(JsonlConfig(path=str(path)), "dev1")
    fan = FanOut([Broken(), good])
    fan.publish_event(an_event())
    assert len(lines(path)) == 1
    assert fan.health() == {"broker_connected": False, "backlog": 0,
                            "outputs": {"broken": {"errors": 1}, "jsonl": {"written": 1, "errors": 0, "rotations": 0}}}


def test_outputs_config_default_and_validation(tmp_path):
    model = {"classifier": {"model": "m.tflite"}}
    (tmp_path / "m.tflite").write_bytes(b"x")
    base = {**model, "eyes": {"enabled": False}}
    assert [o.type for o in parse_config(base, base_dir=tmp_path).outputs] == ["mqtt"]
    cfg = parse_config({**base, "outputs": [{"type": "mqtt"}, {"type": "jsonl", "path": "log/e.jsonl"}]}, base_dir=tmp_path)
    assert cfg.outputs[1].path == "log/e.jsonl"
    with pytest.raises(ConfigError) as err:
        parse_config({**base, "outputs": [{"type": "jsonl"}, {"type": "jsonl", "max_bytes": -1}]}, base_dir=tmp_path)
    assert any(p.startswith("outputs[1].max_bytes:") for p in err.value.problems), err.value.problems
    with pytest.raises(ConfigError) as err:
        parse_config({**base, "outputs": [{"type": "jsonl"}, {"type": "jsonl"}]}, base_dir=tmp_path)
    assert "jsonl named more than once" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({**base, "outputs": [{"type": "kafka"}]}, base_dir=tmp_path)
    assert "outputs[0]" in str(err.value)


@needs_mosquitto
def test_a_daemon_with_both_outputs_publishes_the_same_events_to_both(broker, emotion_model, tmp_path):
    clip = alternating_clip(tmp_path / "alternating.mp4", cycles=2)
    device = "jsonl-both"
    pfx = prefix(device)
    out = tmp_path / "events.jsonl"
    sub = Collector(broker, [f"{pfx}/#"])
    cfg = daemon_config(tmp_path, broker, device, emotion_model, source={"uri": str(clip), "realtime": True},
                        rules=[{"type": "driver_absent", "after_s": 0.5, "confirm_s": 0.2}],
                        outputs=[{"type": "mqtt"}, {"type": "jsonl", "path": str(out)}])
    proc = DaemonProcess(cfg)
    try:
        assert proc.wait(60) == 0, proc.log()[-3000:]
    finally:
        proc.kill()
    logged = {ev_id for _, _, ev_id in proc.events()}
    assert logged, proc.log()[-2000:]
    sub.wait_for(lambda msgs: {json.loads(m.payload)["id"] for m in msgs if m.topic == f"{pfx}/events"} >= logged)
    sub.close()
    mqtt_events = [check_payload("events", m.payload) for m in sub.messages if m.topic == f"{pfx}/events"]
    got = lines(out)
    file_events = [g["payload"] for g in got if g["topic"] == "events"]
    assert {(e["id"], e["phase"]) for e in file_events} == {(e["id"], e["phase"]) for e in mqtt_events}
    assert {e["id"] for e in file_events} == logged
    assert {g["topic"] for g in got} >= {"events", "state", "camera/status"}
