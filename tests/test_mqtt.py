"""MqttPublisher against a real Mosquitto: retained topics, Last Will, outages, restarts, MQTT 5,
TLS, passwords, Home Assistant discovery and a command fuzz. Every JSON payload is validated."""

from __future__ import annotations

import json
import logging
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from daemon import schemas
from daemon.publish.mqtt import MqttConfig, MqttPublisher, TlsConfig
from daemon.publish.outbox import Outbox, OutboxConfig
from daemon.publish.payloads import event_payload, reply_payload, state_payload, stats_payload
from daemon.types import Event, FaceState, Observation
from broker import Broker, Collector, broker_factory, mqtt_broker  # noqa: F401 (fixtures)
from conftest import wait_until

LABELS = ("angry", "happy", "neutral", "sad")
DEVICE = "car-7"
PREFIX = f"emotiond/{DEVICE}"
CHILD = Path(__file__).with_name("mqtt_child.py")
VALIDATORS = {name: schemas.validator(name) for name in schemas.NAMES}


def check(kind: str, payload: bytes | dict) -> dict:
    doc = json.loads(payload) if isinstance(payload, bytes) else payload
    VALIDATORS[kind].validate(doc)
    return doc


def cfg_for(broker: Broker, **kw) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port, **kw)


def observation(faces: int = 1) -> Observation:
    probs = np.array([0.1, 0.7, 0.15, 0.05], dtype=np.float32)
    states = [FaceState(track_id=3 + i, box=(10, 10, 80, 80), probs=probs, label="happy", confidence=0.7,
                        primary=i == 0, eye_closed=0.12 if i == 0 else None) for i in range(faces)]
    return Observation(t=1.0, t_wall=time.time(), faces=states, labels=LABELS)


def alert(i: int = 0) -> dict:
    ev = Event(str(uuid.uuid4()), "driver_absent", "absent", "start", time.time(), details={"n": i, "x": np.float32(0.5)})
    return check("event", event_payload(ev, DEVICE))


def stats() -> dict:
    snap = {"fps": 29.5, "frames": 300, "skipped": 2, "faces": 1, "rss_mb": 80.0, "peak_rss_mb": 90.0,
            "uptime_s": 10.0, "delegate": "cpu", "camera_online": True, "broker_connected": True, "backlog": 0,
            "latency_ms": {"classify": {"p50": 1.1, "p99": 2.0}, "total": {"p50": 9.0, "p99": 20.0}}}
    return check("stats", stats_payload(snap, DEVICE))


@pytest.fixture
def publisher_factory(tmp_path):
    made: list[MqttPublisher] = []

    def make(cfg: MqttConfig, state_dir: Path | None = None, on_command=None) -> MqttPublisher:
        box = Outbox(OutboxConfig(state_dir=state_dir or tmp_path / f"state{len(made)}"))
        pub = MqttPublisher(cfg, DEVICE, box, on_command)
        pub.start()
        made.append(pub)
        return pub

    yield make
    for p in made:
        p.stop()
        p.outbox.close()


def run_child(broker: Broker, state_dir: Path, events: list[str]) -> subprocess.Popen:
    args = {"mqtt": {"host": broker.host, "port": broker.port, "keepalive_s": 5}, "device": DEVICE,
            "state_dir": str(state_dir), "events": events}
    proc = subprocess.Popen([sys.executable, str(CHILD), json.dumps(args)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == f"queued {len(events)}"
    return proc


def test_retained_topics_live_topics_and_schemas(mqtt_broker, publisher_factory):
    live = Collector(mqtt_broker, [f"{PREFIX}/#"])
    pub = publisher_factory(cfg_for(mqtt_broker))
    assert pub.wait_connected(15)
    pub.publish_state(check("state", state_payload(observation(2), DEVICE, tracks=3)))
    pub.publish_camera_status(True)
    ev = alert()
    pub.publish_event(ev)
    pub.publish_stats(stats())

    got = live.wait_topic(f"{PREFIX}/events")
    assert check("event", got.payload)["id"] == ev["id"] and got.qos == 1
    check("stats", live.wait_topic(f"{PREFIX}/stats").payload)
    assert wait_until(lambda: pub.backlog == 0), "the PUBACK should empty the outbox"

    late = Collector(mqtt_broker, [f"{PREFIX}/#"])  # joins afterwards: sees only retained messages
    assert late.wait_topic(f"{PREFIX}/status", b"online").retain
    state = late.wait_topic(f"{PREFIX}/state")
    doc = check("state", state.payload)
    assert state.retain and doc["faces"] == 2 and doc["tracks"] == 3 and doc["device"] == DEVICE
    assert doc["primary"]["emotion"] == "happy" and set(doc["primary"]["probs"]) == set(LABELS)
    assert late.wait_topic(f"{PREFIX}/camera/status", b"online").retain
    late.close()

    pub.stop()
    assert live.wait_topic(f"{PREFIX}/status", b"offline")
    live.close()


def test_last_will_offline_after_sigkill(mqtt_broker, tmp_path):
    sub = Collector(mqtt_broker, [f"{PREFIX}/status"])
    child = run_child(mqtt_broker, tmp_path / "state", [])
    sub.wait_topic(f"{PREFIX}/status", b"online")
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert sub.wait_topic(f"{PREFIX}/status", b"offline", timeout=20)
    late = Collector(mqtt_broker, [f"{PREFIX}/status"])
    assert late.wait_topic(f"{PREFIX}/status", b"offline").retain, "the will must be retained"
    sub.close()
    late.close()


def test_events_survive_broker_outage_in_order(mqtt_broker, publisher_factory):
    sub = Collector(mqtt_broker, [f"{PREFIX}/events"], client_id="outage-sub", persistent=True)
    pub = publisher_factory(cfg_for(mqtt_broker, reconnect_max_s=2))
    assert wait_until(lambda: pub.connected)
    pub.publish_state(state_payload(observation(), DEVICE))
    mqtt_broker.stop()
    assert wait_until(lambda: not pub.connected)
    sent = [alert(i) for i in range(25)]
    for ev in sent:
        pub.publish_event(ev)
    assert pub.backlog == 25
    mqtt_broker.start()

    ids = [e["id"] for e in sent]
    assert sub.wait_for(lambda msgs: {json.loads(m.payload)["id"] for m in msgs} >= set(ids), timeout=30)
    received = []
    for m in sub.on(f"{PREFIX}/events"):
        i = check("event", m.payload)["id"]
        if i not in received:
            received.append(i)
    assert received == ids, "the backlog is delivered in the order it was queued"
    assert wait_until(lambda: pub.backlog == 0)
    sub.close()


def test_events_survive_publisher_restart_during_outage(mqtt_broker, tmp_path):
    sub = Collector(mqtt_broker, [f"{PREFIX}/events"], client_id="restart-sub", persistent=True)
    state = tmp_path / "state"
    mqtt_broker.stop()
    ids = [str(uuid.uuid4()) for _ in range(10)]
    first = run_child(mqtt_broker, state, ids)  # broker down: all 10 wait in SQLite
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = run_child(mqtt_broker, state, [])  # restarted daemon, still no broker
    mqtt_broker.start()
    try:
        assert sub.wait_for(lambda msgs: {json.loads(m.payload)["id"] for m in msgs} >= set(ids), timeout=30)
        for m in sub.on(f"{PREFIX}/events"):
            check("event", m.payload)
        view = Outbox(OutboxConfig(state_dir=state))  # a second connection sees the child's commits
        assert wait_until(lambda: len(view) == 0), "acknowledged events are deleted from SQLite"
        view.close()
    finally:
        second.terminate()
        assert second.wait(10) == 0
        sub.close()


def test_mqtt5_properties_visible_to_v5_subscriber(mqtt_broker, publisher_factory):
    sub = Collector(mqtt_broker, [f"{PREFIX}/#"], v5=True)
    pub = publisher_factory(cfg_for(mqtt_broker, protocol=5, state_expiry_s=600, stats_expiry_s=30))
    assert wait_until(lambda: pub.connected)
    pub.publish_state(state_payload(observation(), DEVICE))
    pub.publish_stats(stats())
    pub.publish_event(alert())
    state = sub.wait_topic(f"{PREFIX}/state")
    stats_msg = sub.wait_topic(f"{PREFIX}/stats")
    event = sub.wait_topic(f"{PREFIX}/events")
    for msg in (state, stats_msg, event):
        assert ("schema", "1") in msg.properties.UserProperty
        assert msg.properties.ContentType == "application/json"
    assert 0 < state.properties.MessageExpiryInterval <= 600
    assert 0 < stats_msg.properties.MessageExpiryInterval <= 30
    assert not hasattr(event.properties, "MessageExpiryInterval"), "alerts never expire"
    sub.close()


def test_tls_with_test_ca_connects_and_wrong_ca_fails_clearly(broker_factory, publisher_factory, caplog):
    broker = broker_factory(tls=True)
    good = publisher_factory(cfg_for(broker, tls=TlsConfig(ca_file=broker.tls.ca)))
    assert wait_until(lambda: good.connected), good.last_error
    with caplog.at_level(logging.WARNING, logger="daemon.publish.mqtt"):
        bad = publisher_factory(cfg_for(broker, tls=TlsConfig(ca_file=broker.tls.other_ca)))
        assert not bad.wait_connected(2)
    assert bad.connect_failures >= 1 and not bad.connected
    assert "certificate verify failed" in bad.last_error
    assert "certificate verify failed" in caplog.text


def test_password_right_connects_wrong_is_reported_and_backed_off(broker_factory, publisher_factory, caplog,
                                                                   monkeypatch):
    broker = broker_factory(users={"car": "s3cret-pw"})
    monkeypatch.setenv("EMOTIOND_MQTT_PASSWORD", "s3cret-pw")
    good = publisher_factory(cfg_for(broker, username="car"))
    assert wait_until(lambda: good.connected), good.last_error
    monkeypatch.delenv("EMOTIOND_MQTT_PASSWORD")

    pw_file = broker.folder / "wrong.txt"
    pw_file.write_text("not-the-password\n")
    with caplog.at_level(logging.WARNING, logger="daemon.publish.mqtt"):
        bad = publisher_factory(cfg_for(broker, username="car", password_file=pw_file, reconnect_min_s=1,
                                        reconnect_max_s=60))
        time.sleep(4.5)  # observation window: waits drawn from [0, 1], [0, 2], [0, 4] s (full jitter)
    assert not bad.connected
    assert "Not authorized" in bad.last_error or "Bad user name" in bad.last_error
    # retrying at once would be hundreds of attempts; the doubling caps them (the draws: test_mqtt_failover)
    assert 2 <= bad.connect_attempts <= 7, f"{bad.connect_attempts} attempts in 4.5 s: not backing off"
    assert "check mqtt.username" in caplog.text
    assert "not-the-password" not in caplog.text and "s3cret-pw" not in caplog.text


def test_home_assistant_discovery_and_republish_on_birth(mqtt_broker, publisher_factory):
    sub = Collector(mqtt_broker, ["homeassistant/+/+/+/config"])
    pub = publisher_factory(cfg_for(mqtt_broker, ha_discovery={"enabled": True}))
    assert wait_until(lambda: pub.connected)
    assert sub.wait_for(lambda msgs: len(msgs) >= 3)
    configs = {m.topic: json.loads(m.payload) for m in sub.messages}
    sensor = configs["homeassistant/sensor/emotiond_car-7/emotion/config"]
    assert sensor["state_topic"] == f"{PREFIX}/state" and sensor["availability_topic"] == f"{PREFIX}/status"
    fatigue = configs["homeassistant/binary_sensor/emotiond_car-7/fatigue/config"]
    assert fatigue["state_topic"] == f"{PREFIX}/events" and "driver_fatigue" in fatigue["value_template"]
    assert len({c["unique_id"] for c in configs.values()}) == 3

    before = len(sub.messages)
    sub.client.publish("homeassistant/status", b"online", qos=1)
    assert sub.wait_for(lambda msgs: len(msgs) >= before + 3), "configs are republished on HA birth"
    sub.close()


def fuzz_messages(rng: random.Random, n: int):
    """Random and malformed command messages; the valid ones carry a request id."""
    # (no U+0000 in names: the broker itself disconnects a client that sends one)
    names = ["ping", "stats", "reload", "boom", "nope", "", "PING", "a" * 40, "ünïcode", "x y", "stats\u200b",
             "cmd", "ping/extra", "../reply"]
    for i in range(n):
        name = rng.choice(names)
        kind = rng.randrange(8)
        if kind == 0:
            payload = rng.randbytes(rng.randrange(0, 300))
        elif kind == 1:
            payload = b"[" * rng.randrange(1, 5000)
        elif kind == 2:
            payload = json.dumps({"id": f"r{i}", "pad": "x" * rng.randrange(0, 6000)}).encode()
        elif kind == 3:
            payload = json.dumps(rng.choice([1, "s", None, [1, 2], 3.5, True])).encode()
        elif kind == 4:
            payload = b"\xff\xfe" + rng.randbytes(20)
        elif kind == 5:
            payload = json.dumps({"id": rng.choice([5, None, "y" * 100, {"a": 1}]), "arg": 1}).encode()
        else:
            payload = json.dumps({"id": f"r{i}"}).encode() if rng.random() < 0.5 else b""
        yield name, payload


def test_command_fuzz_keeps_publisher_up_and_answers_valid_commands(mqtt_broker, publisher_factory):
    def on_command(name: str, payload: bytes) -> dict:
        if name == "stats":
            pub.publish_stats(stats())
            return {"ok": True}
        if name == "reload":
            return {"ok": False, "error": "invalid config, kept the running one", "problems": ["x: unknown key"]}
        if name == "boom":
            raise RuntimeError("handler bug")
        return {"ok": False, "error": f"unknown command {name!r}"}

    sub = Collector(mqtt_broker, [f"{PREFIX}/reply", f"{PREFIX}/stats", f"{PREFIX}/state"])
    pub = publisher_factory(cfg_for(mqtt_broker), on_command=on_command)
    assert wait_until(lambda: pub.connected)
    sender = Collector(mqtt_broker, [])
    rng = random.Random(5)
    expected_ok: set[str] = set()
    for i, (name, payload) in enumerate(fuzz_messages(rng, 10_000)):
        if name in ("ping", "stats") and len(payload) <= 4096 and payload.startswith(b'{"id": "r'):
            expected_ok.add(json.loads(payload)["id"])
        sender.client.publish(f"{PREFIX}/cmd/{name}", payload, qos=1 if i % 2 else 0)

    ok_ids = lambda msgs: {json.loads(m.payload).get("request_id") for m in msgs  # noqa: E731
                           if m.topic.endswith("/reply") and json.loads(m.payload)["ok"]}
    assert len(expected_ok) > 200
    assert sub.wait_for(lambda msgs: ok_ids(msgs) >= expected_ok, timeout=60), \
        f"{len(expected_ok - ok_ids(sub.messages))} valid commands got no reply"

    replies = [check("reply", m.payload) for m in sub.on(f"{PREFIX}/reply")]
    errors = {r["error"] for r in replies if not r["ok"]}
    assert any("unknown command" in e for e in errors)
    assert any("payload too large" in e for e in errors)
    assert any("not valid UTF-8 JSON" in e or "nested too deeply" in e for e in errors)
    assert "internal error (RuntimeError)" in errors
    assert pub.commands.rejected > 1000 and pub.connected
    check("stats", sub.wait_topic(f"{PREFIX}/stats").payload)

    pub.publish_state(state_payload(observation(), DEVICE))  # still publishing after the storm
    check("state", sub.wait_topic(f"{PREFIX}/state").payload)
    sender.close()
    sub.close()


def test_reply_payload_shape():
    ok = check("reply", reply_payload(DEVICE, "ping", True, result={"pong": True}, request_id="a"))
    assert ok["ts"].endswith("Z")
    with pytest.raises(Exception):
        check("reply", {**ok, "ok": False})  # an error reply must say why


def test_config_rejects_bad_combinations_and_resolves_password(tmp_path, monkeypatch):
    from pydantic import ValidationError

    for bad, message in [({"password": "x"}, "password must be provided with username"),
                         ({"topic_prefix": "fleet/+/{device_id}"}, "no wildcards"),
                         ({"topic_prefix": "/{device_id}"}, "leading/trailing"),
                         ({"tls": {"key_file": "/k.pem"}}, "key_file needs cert_file"),
                         ({"reconnect_min_s": 10, "reconnect_max_s": 5}, "reconnect_max_s")]:
        with pytest.raises(ValidationError, match=message):
            MqttConfig(**bad)
    monkeypatch.delenv("EMOTIOND_MQTT_PASSWORD", raising=False)
    pw = tmp_path / "pw"
    pw.write_text("from-file\nignored\n")
    cfg = MqttConfig(username="u", password_file=pw)
    assert cfg.password_value() == "from-file"
    monkeypatch.setenv("EMOTIOND_MQTT_PASSWORD", "from-env")
    assert cfg.password_value() == "from-env"
    assert "hunter2" not in repr(MqttConfig(username="u", password="hunter2"))
    assert MqttPublisher(MqttConfig(), "cam-1").prefix == "emotiond/cam-1"
    with pytest.raises(ValueError, match="wildcards"):
        MqttPublisher(MqttConfig(), "cam#1")
