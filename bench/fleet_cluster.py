"""``python bench/fleet.py --cluster``: a fleet through a three-node NATS cluster into PostgreSQL,
side by side with the same fleet on one Mosquitto, in one run.

Both sides: N devices in this process (the daemon's real ``MqttPublisher`` with its on-disk
outbox, ``mqtt.hosts`` naming every node, each device starting on another), each logging one
alert step every ``--period-s`` for ``--seconds``; half-way through, the node most devices are on
is SIGKILLed (on the single Mosquitto: the broker is killed and restarted after ``--outage-s``).

* cluster: NATS Server 2.9 (JetStream + MQTT, streams and consumers on all three nodes), two
  ``fleet.ingest`` workers, a real PostgreSQL: delivered = rows in ``alert_steps``; latency =
  the row's ``received_at`` minus the event's ``ts`` (the moment the device logged it; one clock).
* Mosquitto: a subscriber with a persistent session; latency = arrival minus ``ts``.

Printed: events/s delivered, end-to-end latency p50/p99, failover time (kill to every device
connected again), events lost (logged but never delivered; must be 0). Needs nats-server,
mosquitto, PostgreSQL and the fleet extra; see docs/fleet/scale.md for what it implies for a fleet.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _devices(hosts_of, n: int, folder: Path):
    from daemon.publish.mqtt import MqttPublisher
    from daemon.publish.mqtt_config import MqttConfig
    from daemon.publish.outbox import Outbox, OutboxConfig

    devs = []
    for k in range(n):
        cfg = MqttConfig(hosts=hosts_of(k), protocol=3, persistent_session=True, reconnect_min_s=1,
                         reconnect_max_s=4, keepalive_s=5)
        pub = MqttPublisher(cfg, f"car-{k:04d}", Outbox(OutboxConfig(state_dir=folder / f"d{k}")))
        pub.start()
        devs.append(pub)
    return devs


def _step(device: str, alert_id: str, i: int) -> dict:
    from daemon.publish.payloads import event_payload
    from daemon.types import Event

    return event_payload(Event(alert_id, "driver_fatigue", "driver_fatigue", "update", time.time(), level="microsleep",
                               details={"i": i}), device)


def _drive(devs, seconds: float, period_s: float, kill) -> tuple[int, float | None]:
    """Every device logs one step per period; ``kill()`` half-way returns the node killed. Returns
    (events logged, seconds from the kill until every device was connected again)."""
    alerts = {d.device_id: str(uuid.uuid4()) for d in devs}
    logged, t0, killed_at, back = 0, time.monotonic(), None, None
    i = 0
    while time.monotonic() - t0 < seconds:
        for d in devs:
            d.publish_event(_step(d.device_id, alerts[d.device_id], i))
            logged += 1
        i += 1
        if killed_at is None and time.monotonic() - t0 >= seconds / 2:
            kill()
            killed_at = time.monotonic()
        if killed_at is not None and back is None and all(d.connected for d in devs) and time.monotonic() - killed_at > 0.5:
            back = time.monotonic() - killed_at
        time.sleep(period_s)
    deadline = time.monotonic() + 60
    while back is None and time.monotonic() < deadline:
        if all(d.connected for d in devs):
            back = time.monotonic() - killed_at
        time.sleep(0.05)
    return logged, back


def _iso_to_epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def run_cluster(n: int, seconds: float, period_s: float, folder: Path) -> dict:
    from nats_cluster import NatsCluster
    from postgres import Postgres

    cluster = NatsCluster(folder / "nats").start()
    pg = Postgres().init()
    pg.start()
    urls = ",".join(f"nats://127.0.0.1:{nd.client_port}" for nd in cluster.nodes)
    workers = [subprocess.Popen([sys.executable, "-m", "fleet.ingest", "--nats", urls, "--dsn", pg.dsn],
                                cwd=REPO, stdout=open(folder / f"w{i}.log", "w"), stderr=subprocess.STDOUT)
               for i in range(2)]
    devs = []
    try:
        deadline = time.monotonic() + 60
        while not all("consuming" in (folder / f"w{i}.log").read_text() for i in range(2)):
            if time.monotonic() > deadline:
                raise RuntimeError("ingest workers did not start: " + (folder / "w0.log").read_text()[-500:])
            time.sleep(0.2)
        ports = [nd.mqtt_port for nd in cluster.nodes]
        devs = _devices(lambda k: [f"127.0.0.1:{p}" for p in ports[k % 3:] + ports[:k % 3]], n, folder / "dev")
        while not all(d.connected for d in devs):
            time.sleep(0.1)

        def kill():
            busiest = max(cluster.nodes, key=lambda nd: sum(d._client.port == nd.mqtt_port for d in devs))
            cluster.kill(busiest)

        t0 = time.monotonic()
        logged, back = _drive(devs, seconds, period_s, kill)
        end = time.monotonic() + 120
        count = 0
        while time.monotonic() < end:
            count = pg.query("select count(*) from alert_steps")[0][0]
            if count >= logged:
                break
            time.sleep(0.5)
        took = time.monotonic() - t0
        lat = [r[0] for r in pg.query("select extract(epoch from received_at - ts) from alert_steps")]
        return {"backend": "3 NATS nodes -> 2 ingest workers -> PostgreSQL", "logged": logged, "delivered": count,
                "rate": count / took, "lat": np.array(lat, float) * 1000.0, "failover_s": back}
    finally:
        for d in devs:
            d.stop(timeout=0.3)
        for w in workers:
            w.send_signal(signal.SIGTERM)
            try:
                w.wait(10)
            except subprocess.TimeoutExpired:
                w.kill()
        cluster.stop()
        pg.remove()


def run_mosquitto(n: int, seconds: float, period_s: float, outage_s: float, folder: Path) -> dict:
    from broker import Collector, make_broker

    broker = make_broker(folder / "mosquitto")
    arrivals: dict[str, float] = {}
    lat: list[float] = []
    lock = threading.Lock()
    sub = Collector(broker, ["emotiond/+/events"], client_id="bench-sub", persistent=True)

    def on_message(_c, _u, msg) -> None:
        doc = json.loads(msg.payload)
        key = f"{doc['id']}/{doc['ts']}"
        with lock:
            if key not in arrivals:
                arrivals[key] = time.time()
                lat.append((arrivals[key] - _iso_to_epoch(doc["ts"])) * 1000.0)

    sub.client.on_message = on_message
    devs = _devices(lambda k: [f"{broker.host}:{broker.port}"], n, folder / "dev")
    try:
        while not all(d.connected for d in devs):
            time.sleep(0.1)

        def kill():
            broker.proc.kill()
            broker.proc.wait()
            threading.Timer(outage_s, broker.start).start()

        t0 = time.monotonic()
        logged, back = _drive(devs, seconds, period_s, kill)
        end = time.monotonic() + 120
        while time.monotonic() < end and len(arrivals) < logged:
            time.sleep(0.2)
        took = time.monotonic() - t0
        return {"backend": f"one Mosquitto (killed, back after {outage_s:g} s)", "logged": logged,
                "delivered": len(arrivals), "rate": len(arrivals) / took, "lat": np.array(lat), "failover_s": back}
    finally:
        for d in devs:
            d.stop(timeout=0.3)
        sub.close()
        broker.stop()


def main(devices: int, seconds: float, period_s: float, outage_s: float) -> int:
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO / "bench"))
    from _common import machine, table

    print(machine())
    print(f"{devices} devices, one alert step each every {period_s:g} s for {seconds:g} s; the busiest node "
          f"killed half-way")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in (lambda: run_cluster(devices, seconds, period_s, Path(tmp) / "c"),
                    lambda: run_mosquitto(devices, seconds, period_s, outage_s, Path(tmp) / "m")):
            r = run()
            lat = r["lat"]
            rows.append([r["backend"], str(r["logged"]), str(r["delivered"]), f"{r['rate']:.0f}",
                         f"{np.percentile(lat, 50):.0f} / {np.percentile(lat, 99):.0f}" if len(lat) else "-",
                         "-" if r["failover_s"] is None else f"{r['failover_s']:.1f}", str(r["logged"] - r["delivered"])])
    print(f"offered load: {devices / period_s:.0f} events/s")
    print(table(rows, ["backend", "events logged", "delivered (exactly once)", "events/s delivered",
                       "end-to-end p50 / p99 ms", "failover s (kill -> all connected)", "events lost"]))
    return 0
