"""Never lose an alert: events made while Mosquitto is down, across a SIGKILL of the daemon,
all reach a subscriber once the broker is back (duplicates allowed, losses not).

The clip alternates two seconds of the talking head with blank grey frames, played in real time
in a loop, and ``driver_absent`` is short, so the daemon raises and ends one alert per cycle:
a deterministic stream of events. What the daemon generated is read from its log (app.py logs
every event once it is committed to the outbox); what arrived is what a persistent-session
subscriber, connected before the outage, received.
"""

from __future__ import annotations

import json
import time

from broker import Collector, make_broker, needs_mosquitto
from daemon_helpers import DaemonProcess, alternating_clip, check_payload, daemon_config, prefix

pytestmark = needs_mosquitto


def received(sub: Collector, topic: str) -> set[tuple[str, str]]:
    return {(doc["phase"], doc["id"]) for doc in (check_payload("events", m.payload) for m in sub.on(topic))}


def generated(*procs: DaemonProcess) -> set[tuple[str, str]]:
    return {(phase, uid) for p in procs for kind, phase, uid in p.events() if kind == "driver_absent"}


def wait_more_events(proc: DaemonProcess, than: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(proc.events()) <= than:
        assert proc.running and time.monotonic() < deadline, f"no new event:\n{proc.log()[-3000:]}"
        time.sleep(0.05)


def test_every_event_survives_a_broker_outage_and_a_daemon_sigkill(tmp_path, emotion_model):
    broker = make_broker(tmp_path / "broker")  # persistence on: it keeps the subscriber's session
    device = "outage-car"
    topic = f"{prefix(device)}/events"
    sub = Collector(broker, [topic], client_id="outage-subscriber", persistent=True)
    clip = alternating_clip(tmp_path / "face_gap.mp4")
    cfg = daemon_config(tmp_path, broker, device, emotion_model,
                        source={"uri": str(clip), "loop": True, "realtime": True},
                        detector={"type": "haar", "every_n": 1},
                        rules=[{"type": "driver_absent", "after_s": 0.5, "confirm_s": 0.3}])
    first = DaemonProcess(cfg, tmp_path / "first.log")
    second = None
    try:
        assert sub.wait_for(lambda msgs: bool(msgs), timeout=30), f"no live event:\n{first.log()[-3000:]}"

        broker.stop()
        before_outage = generated(first)
        wait_more_events(first, len(first.events()))
        wait_more_events(first, len(first.events()))
        first.kill()
        lost_by_first = generated(first) - before_outage
        assert lost_by_first and not lost_by_first & received(sub, topic), "these events were made during the outage"

        second = DaemonProcess(cfg, tmp_path / "second.log")  # same state dir: same outbox
        second.wait_log(r"emotiond running")
        wait_more_events(second, 0)
        assert not second.log().count("MQTT connected"), "the broker is still down"

        broker.start()
        second.wait_log(r"MQTT connected")
        wait_more_events(second, len(second.events()))  # one more, made and sent live
        expected = generated(first, second)
        assert len(expected) >= 5  # 1 live, 2 before the SIGKILL, 1 by the second daemon offline, 1 live
        ok = sub.wait_for(lambda _msgs: received(sub, topic) >= expected, timeout=30)
        assert ok, f"lost events: {sorted(expected - received(sub, topic))}\n{second.log()[-3000:]}"
        assert second.terminate() == 0
    finally:
        first.kill()
        if second is not None:
            second.kill()
        sub.close()
        broker.stop()
    ids = [json.loads(m.payload)["id"] for m in sub.on(topic)]
    assert set(ids) >= {uid for _, uid in expected}
