"""Broker failover (issue "A fleet on a real distributed broker", the daemon's part): ``mqtt.hosts``
tried in turn, reconnect delays with full jitter, the outbox's events delivered in order across
the switch, and ``stats`` naming the broker and counting failovers. Two real Mosquittos on
loopback stand in for two nodes: they share no sessions, so this proves the client side only."""

from __future__ import annotations

import json

import pytest

from broker import Collector, broker_factory, needs_mosquitto  # noqa: F401 (fixture)
from conftest import wait_until
from daemon import schemas
from daemon.publish.mqtt import _Client
from daemon.publish.mqtt_config import MqttConfig, parse_broker
from test_mqtt import DEVICE, PREFIX, alert, publisher_factory  # noqa: F401  (fixture)


def test_hosts_parse_with_default_ports_and_bad_entries_are_named():
    cfg = MqttConfig(hosts=["node1:1884", "node2", "[::1]:1885", " 10.0.0.3:1886 "], port=1999)
    assert cfg.brokers() == [("node1", 1884), ("node2", 1999), ("::1", 1885), ("10.0.0.3", 1886)]
    assert MqttConfig(host="b", port=1884).brokers() == [("b", 1884)]
    for bad, why in (("node1:0", "1-65535"), ("node1:x", "1-65535"), (":1883", "no host"), ("[::1", "IPv6")):
        with pytest.raises(ValueError, match=why):
            MqttConfig(hosts=[bad])
    assert parse_broker("h:1", 5) == ("h", 1)


def test_a_bad_host_entry_is_exit_78_with_the_key_path(tmp_path):
    from daemon.cli import main
    from daemon.config import ConfigError, load_config

    path = tmp_path / "config.yaml"
    path.write_text("mqtt: {hosts: ['node1:1883', 'node2:99999']}\n")
    with pytest.raises(ConfigError, match="mqtt"):
        load_config(path)
    assert main(["check", "--config", str(path)]) == 78


@needs_mosquitto
def test_a_broker_refusing_the_session_is_logged_and_the_next_is_tried(broker_factory, publisher_factory,  # noqa: F811
                                                                        caplog):
    import logging

    locked, open_ = broker_factory(users={"someone": "else"}), broker_factory()
    with caplog.at_level(logging.WARNING, logger="daemon.publish.mqtt"):
        pub = publisher_factory(MqttConfig(hosts=[f"{locked.host}:{locked.port}", f"{open_.host}:{open_.port}"],
                                           reconnect_min_s=1, reconnect_max_s=2))
        assert wait_until(lambda: pub.connected, 20), pub.last_error
    assert pub.health()["broker"] == f"{open_.host}:{open_.port}" and pub.failovers >= 1
    assert f"{locked.host}:{locked.port} broker refused the connection" in caplog.text


def test_reconnect_delays_are_drawn_between_zero_and_the_capped_exponential(monkeypatch):
    import daemon.publish.mqtt as mqtt

    drawn = []
    monkeypatch.setattr(mqtt.random, "uniform", lambda lo, hi: drawn.append((lo, hi)) or 0.0)
    client = _Client(mqtt.paho.CallbackAPIVersion.VERSION2, client_id="jitter")
    client.reconnect_delay_set(1, 8)
    for _ in range(6):
        client._reconnect_wait()
    assert drawn == [(0.0, 1.0), (0.0, 2.0), (0.0, 4.0), (0.0, 8.0), (0.0, 8.0), (0.0, 8.0)]


@needs_mosquitto
def test_a_dead_node_moves_the_device_to_the_next_and_no_event_is_lost(broker_factory, publisher_factory):  # noqa: F811
    a, b = broker_factory(), broker_factory()
    sub_a = Collector(a, [f"{PREFIX}/events"], client_id="sub-a", persistent=True)
    sub_b = Collector(b, [f"{PREFIX}/events"], client_id="sub-b", persistent=True)
    cfg = MqttConfig(hosts=[f"{a.host}:{a.port}", f"{b.host}:{b.port}"], reconnect_min_s=1, reconnect_max_s=2,
                     keepalive_s=5)
    pub = publisher_factory(cfg)
    assert wait_until(lambda: pub.connected, 15)
    assert pub.health()["broker"] == f"{a.host}:{a.port}" and pub.failovers == 0
    first = [alert(i) for i in range(10)]
    for ev in first:
        pub.publish_event(ev)
    assert sub_a.wait_for(lambda msgs: len({json.loads(m.payload)["id"] for m in msgs}) >= 10, timeout=20)
    assert wait_until(lambda: pub.backlog == 0)

    a.proc.kill()  # the node dies (SIGKILL: no clean goodbye)
    a.proc.wait()
    second = [alert(100 + i) for i in range(15)]
    for ev in second:  # logged while the device is moving: they wait in the outbox
        pub.publish_event(ev)
    assert wait_until(lambda: pub.connected and pub.health()["broker"] == f"{b.host}:{b.port}", 30)
    ids = [e["id"] for e in second]
    assert sub_b.wait_for(lambda msgs: {json.loads(m.payload)["id"] for m in msgs} >= set(ids), timeout=30)
    assert sub_b.ids(f"{PREFIX}/events") == ids, "the events logged during the switch arrive in order on the next broker"
    assert sub_a.ids(f"{PREFIX}/events") == [e["id"] for e in first]
    assert wait_until(lambda: pub.backlog == 0), "the next broker's PUBACKs empty the outbox"
    health = pub.health()
    assert health["broker_failovers"] >= 1

    # the stats payload carries which broker and how many failovers, valid against its schema
    from daemon.publish.payloads import stats_payload

    snap = {"fps": 1.0, "frames": 1, "skipped": 0, "faces": 0, "rss_mb": 1.0, "uptime_s": 1.0, "delegate": "cpu",
            "camera_online": True, "latency_ms": {}, **health}
    doc = stats_payload(snap, DEVICE)
    schemas.validator("stats").validate(json.loads(json.dumps(doc)))
    assert doc["broker"] == f"{b.host}:{b.port}"

    # and back: the first node returns, the second dies
    a.start()
    # the first subscriber goes first: its auto-reconnect with the same client id would otherwise
    # take the session over from the new one, back and forth, and get some of the messages
    sub_a.close()
    sub_a2 = Collector(a, [f"{PREFIX}/events"], client_id="sub-a", persistent=True)
    # its subscription is live once it gets a probe (SUBACK comes after CONNACK: on a loaded box
    # the device could otherwise publish first, to nobody)
    import paho.mqtt.publish as publish

    assert wait_until(lambda: publish.single(f"{PREFIX}/events", b'{"id": "probe"}', qos=1, hostname=a.host,
                                             port=a.port) or sub_a2.on(f"{PREFIX}/events"), 15)
    b.proc.kill()
    b.proc.wait()
    third = [alert(200 + i) for i in range(5)]
    for ev in third:
        pub.publish_event(ev)
    assert wait_until(lambda: pub.connected and pub.health()["broker"] == f"{a.host}:{a.port}", 30)
    got = sub_a2.wait_for(lambda msgs: {json.loads(m.payload)["id"] for m in msgs} >= {e["id"] for e in third},
                          timeout=30)
    assert got, (len(third), len(sub_a2.on(f"{PREFIX}/events")), pub.health(), pub.backlog)
    assert pub.failovers >= 2
    for s in (sub_b, sub_a2):
        s.close()
