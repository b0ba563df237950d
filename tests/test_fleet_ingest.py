"""Fleet ingest into PostgreSQL (issue "A fleet on a real distributed broker"): a three-node NATS
Server cluster (JetStream, MQTT) on loopback, 50 simulated devices (the daemon's real publisher,
``mqtt.hosts`` naming the three nodes, each device starting on another) and one real
``emotiond run`` (the talking head looped, a summary a second), two ingest workers
(``python -m fleet.ingest``, a shared durable consumer) and a real PostgreSQL.

During the run a node is SIGKILLed, an ingest worker is SIGKILLed, and the database is restarted.
Then every event any device logged is in the database exactly once (the table's key), alerts'
steps are kept together, the operator's views answer, devices stopped cleanly are offline from
their retained status, and the Last Will of a SIGKILLed device reaches the ingest.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import REPO, TALKING_HEAD, shared_file, wait_until
from daemon_helpers import DaemonProcess, daemon_config
from daemon.publish.mqtt import MqttPublisher
from daemon.publish.mqtt_config import MqttConfig
from daemon.publish.outbox import Outbox, OutboxConfig
from daemon.publish.payloads import event_payload
from daemon.types import Event
from nats_cluster import NatsCluster, needs_nats
from postgres import Postgres, needs_postgres
from test_mqtt import run_child

pytest.importorskip("nats", reason="the fleet extra (nats-py) is not installed")
pytest.importorskip("psycopg", reason="the fleet extra (psycopg) is not installed")
pytestmark = [needs_nats, needs_postgres, pytest.mark.slow]
N_DEVICES = 50


def step(device: str, alert_id: str, phase: str, i: int) -> dict:
    now = time.time()
    ev = Event(alert_id, "driver_fatigue", "driver_fatigue", phase, now - i, ended_at=now if phase == "end" else None,
               level="drowsy" if phase == "end" else "microsleep", details={"n": i})
    return event_payload(ev, device)


def worker(cluster: NatsCluster, pg: Postgres, log) -> subprocess.Popen:
    urls = ",".join(f"nats://127.0.0.1:{n.client_port}" for n in cluster.nodes)
    return subprocess.Popen([sys.executable, "-m", "fleet.ingest", "--nats", urls, "--dsn", pg.dsn, "--batch", "32"],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def test_every_event_of_the_fleet_lands_once_through_a_node_a_worker_and_the_database_failing(tmp_path, emotion_model):
    clip = shared_file(TALKING_HEAD)
    cluster = NatsCluster(tmp_path / "nats").start()
    pg = Postgres().init()
    pg.start()
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(3)]
    workers = []
    devices: list[MqttPublisher] = []
    real = None
    try:
        workers = [worker(cluster, pg, logs[0]), worker(cluster, pg, logs[1])]
        # the ingest first: $MQTT_msgs keeps a message while a consumer has interest in it
        consuming = lambda i: "consuming $MQTT_msgs" in (tmp_path / f"worker{i}.log").read_text()  # noqa: E731
        assert wait_until(lambda: consuming(0) and consuming(1), 60), (tmp_path / "worker0.log").read_text()[-2000:]
        ports = [n.mqtt_port for n in cluster.nodes]
        # one real daemon in the fleet: the talking head looped, a summary event every second
        real = DaemonProcess(daemon_config(
            tmp_path / "daemon", None, "cam-real", emotion_model,
            source={"uri": str(clip), "loop": True, "realtime": True}, head_pose={"enabled": False},
            rules=[{"type": "emotion_summary", "period_s": 1.0}],
            mqtt={"hosts": [f"127.0.0.1:{p}" for p in ports], "protocol": 3, "persistent_session": True,
                  "reconnect_max_s": 4}))
        real.wait_log(r"emotiond running", timeout=60)
        for k in range(N_DEVICES):
            hosts = [f"127.0.0.1:{p}" for p in ports[k % 3:] + ports[:k % 3]]  # spread over the nodes
            cfg = MqttConfig(hosts=hosts, protocol=3, persistent_session=True, reconnect_min_s=1, reconnect_max_s=4,
                             keepalive_s=5)
            pub = MqttPublisher(cfg, f"car-{k:03d}", Outbox(OutboxConfig(state_dir=tmp_path / "state" / str(k))))
            pub.start()
            devices.append(pub)
        assert wait_until(lambda: all(d.connected for d in devices), 60)
        alerts = {d.device_id: str(uuid.uuid4()) for d in devices}
        sent: set[tuple[str, str]] = set()  # (alert id, phase) sent

        def emit(phase: str, i: int) -> None:
            for d in devices:
                d.publish_event(step(d.device_id, alerts[d.device_id], phase, i))
                sent.add((alerts[d.device_id], phase))

        emit("start", 0)
        cluster.kill(cluster.nodes[0])  # a node dies mid-stream
        emit("update", 1)
        workers[0].send_signal(signal.SIGKILL)  # an ingest worker dies with messages in hand
        workers[0].wait()
        pg.stop("fast")  # the database goes away ...
        emit("update", 2)
        time.sleep(3)
        pg.start()  # ... and comes back
        emit("end", 3)
        # a malformed message on the bus: kept out of the table (dead-letter), the workers go on
        import paho.mqtt.publish as publish

        publish.single("emotiond/car-bad/events", b"{not json", qos=1, hostname="127.0.0.1", port=ports[1])
        workers.append(worker(cluster, pg, logs[2]))  # a replacement joins the shared consumer
        expected = 4 * N_DEVICES

        def rows() -> int:
            try:
                return pg.query("select count(*) from alert_steps where device like 'car-%'")[0][0]
            except Exception:  # noqa: BLE001 - the database restarting
                return -1

        assert wait_until(lambda: rows() >= expected and all(d.backlog == 0 for d in devices), 120), \
            f"{rows()} of {expected} rows; backlogs {sum(d.backlog for d in devices)}"
        time.sleep(2)  # redeliveries of unacknowledged messages arrive: they must not add rows
        assert rows() == expected
        got = set(pg.query("select id::text, phase from alert_steps"))
        assert {(a, p) for a, p in got} >= {(a, p) for a, p in sent if p != "update"}
        # the real daemon's summaries: every one it logged (its log names each once the outbox
        # holds it) is in the database, once
        logged = {i for _t, _p, i in real.events()}
        assert len(logged) >= 5, real.log()[-2000:]
        in_db = lambda: {r[0] for r in pg.query("select id::text from alert_steps where device = 'cam-real'")}  # noqa: E731
        assert wait_until(lambda: in_db() >= logged, 60), f"{len(logged - in_db())} of {len(logged)} missing"
        assert pg.query("select count(*) = count(distinct id) from alert_steps where device = 'cam-real'")[0][0]
        real.terminate(15)
        per_alert = pg.query("select steps, ended, last_level from alerts where type = 'driver_fatigue'")
        assert len(per_alert) == N_DEVICES and all(s == 4 and ended and lvl == "drowsy" for s, ended, lvl in per_alert)
        assert pg.query("select count(*) from open_alerts")[0][0] == 0
        assert wait_until(lambda: pg.query("select payload from rejected_messages") == [("{not json",)], 30)
        assert all(w.poll() is None for w in workers[1:]), "a malformed message must not crash a worker"
        assert pg.query("select sum(alerts) from alerts_per_hour where type = 'driver_fatigue'")[0][0] == N_DEVICES

        # five devices stop cleanly (retained offline), one real publisher is SIGKILLed (its Last Will)
        for d in devices[:5]:
            d.stop(timeout=9.0)  # up to 3 s for the retained offline's PUBACK on a loaded cluster
        child = run_child(cluster.nodes[1], tmp_path / "child", [])
        assert wait_until(lambda: ("car-7",) in pg.query("select device from devices where status = 'online'"), 60)
        child.send_signal(signal.SIGKILL)
        child.wait()
        offline = {f"car-{k:03d}" for k in range(5)} | {"car-7"}
        assert wait_until(lambda: {r[0] for r in pg.query("select device from devices_offline")} >= offline, 90), \
            pg.query("select device, status from devices")
    finally:
        if real is not None and real.running:
            real.kill()
        for d in devices:
            d.stop(timeout=0.5)
        for w in workers:
            if w.poll() is None:
                w.terminate()
                try:
                    w.wait(10)
                except subprocess.TimeoutExpired:
                    w.kill()
        for f in logs:
            f.close()
        cluster.stop()
        pg.remove()
