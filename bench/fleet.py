"""Fleet traffic: N devices against one Mosquitto; messages and bytes per device per hour by topic.

Two kinds of device:
  --mode sim     (default) N publisher processes using the real MqttPublisher and payload
                 builders on the daemon's cadence: state on change (at most every
                 state_interval_s), stats every stats_interval_s, an alert start/end pair
                 every --alert-every-s, camera status and status on connect.
  --mode daemon  N real ``emotiond run`` processes from --config (device_id and mqtt host/port
                 are overridden per device), e.g. on a looping video file.

A subscriber on ``emotiond/#`` counts every message and its bytes (payload + topic + the MQTT
fixed/variable header estimate); rates are scaled to one hour. See docs/fleet/scale.md for the
extrapolation to 10,000 devices.

    python bench/fleet.py --devices 20 --seconds 60
    python bench/fleet.py --mode daemon --config config.yaml --devices 20 --seconds 120
    python bench/fleet.py --cluster --devices 50 --seconds 30     # three NATS nodes -> PostgreSQL vs one Mosquitto
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402

from broker import make_broker  # noqa: E402  (tests/broker.py: a real mosquitto on a free port)

LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def simulated_device(args: argparse.Namespace) -> None:
    """One device process: the daemon's publishing schedule with real payloads."""
    from daemon.publish.mqtt import MqttConfig, MqttPublisher
    from daemon.publish.outbox import Outbox, OutboxConfig
    from daemon.publish.payloads import event_payload, state_payload, stats_payload
    from daemon.types import Event, FaceState, Observation

    rng = random.Random(args.device)
    device = f"dev{args.device:05d}"
    pub = MqttPublisher(MqttConfig(host="127.0.0.1", port=args.port, protocol=args.protocol), device,
                        Outbox(OutboxConfig(state_dir=Path(args.state_dir) / device)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pub.start()
    pub.publish_camera_status(True)
    t0 = time.monotonic()
    next_stats = next_change = t0
    next_alert = t0 + rng.uniform(0, args.alert_every_s)  # devices are not in lock-step
    last_state = 0.0
    label, published = "neutral", None
    while not stop.wait(0.1):
        now = time.monotonic()
        if now >= next_change:  # the primary face's label changes (Poisson process)
            label = rng.choice(LABELS)
            next_change = now + rng.expovariate(args.changes_per_min / 60.0)
        if now - last_state >= args.state_interval_s and label != published:
            probs = np.full(len(LABELS), 0.05, np.float32)
            probs[LABELS.index(label)] = 0.7
            face = FaceState(1, (100, 80, 160, 160), probs, label, 0.7, primary=True, eye_closed=0.1)
            pub.publish_state(state_payload(Observation(now, time.time(), [face], LABELS), device))
            published, last_state = label, now
        if now >= next_stats:
            snap = {"fps": 30.0, "frames": int((now - t0) * 30), "skipped": 0, "faces": 1, "rss_mb": 120.0,
                    "peak_rss_mb": 130.0, "uptime_s": round(now - t0, 1), "delegate": "cpu",
                    "broker_connected": pub.connected, "backlog": pub.backlog, "camera_online": True,
                    "latency_ms": {s: {"p50": 1.0, "p99": 3.0} for s in ("detect", "track", "classify", "eyes",
                                                                         "rules", "total", "latency")}}
            pub.publish_stats(stats_payload(snap, device))
            next_stats = now + args.stats_interval_s
        if now >= next_alert:
            ev = Event(str(uuid.uuid4()), "driver_fatigue", "fatigue", "start", time.time(), level="warning",
                       details={"perclos": 0.18, "closed_s": 1.2})
            pub.publish_event(event_payload(ev, device))
            ev.phase, ev.ended_at = "end", time.time() + 5
            pub.publish_event(event_payload(ev, device))
            next_alert = now + args.alert_every_s
    pub.stop()


def daemon_process(args: argparse.Namespace, i: int, folder: Path) -> subprocess.Popen:
    import yaml

    cfg = yaml.safe_load(Path(args.config).read_text()) or {}
    cfg["device_id"] = f"dev{i:05d}"
    cfg.setdefault("mqtt", {}).update(host="127.0.0.1", port=args.port)
    cfg.setdefault("outbox", {})["state_dir"] = str(folder / cfg["device_id"])
    path = folder / f"{cfg['device_id']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    # cwd = the original config's folder, for the relative paths it names (model, video).
    return subprocess.Popen([sys.executable, "-m", "daemon", "run", "--config", str(path)], cwd=Path(args.config).parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def mqtt_bytes(topic: str, payload: bytes, qos: int) -> int:
    """On-the-wire size of one PUBLISH (fixed header + topic + packet id) plus its PUBACK."""
    body = 2 + len(topic.encode()) + (2 if qos else 0) + len(payload)
    header = 1 + (1 if body < 128 else 2 if body < 16384 else 3)
    return header + body + (4 if qos else 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("sim", "daemon"), default="sim")
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0, help="measurement window after warm-up")
    ap.add_argument("--config", help="daemon mode: the config.yaml to run each daemon with")
    ap.add_argument("--protocol", type=int, choices=(3, 5), default=3)
    ap.add_argument("--state-interval-s", type=float, default=1.0)
    ap.add_argument("--stats-interval-s", type=float, default=10.0)
    ap.add_argument("--changes-per-min", type=float, default=6.0, help="sim: label changes of the primary face")
    ap.add_argument("--alert-every-s", type=float, default=600.0, help="sim: one start/end alert pair per period")
    ap.add_argument("--device", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--state-dir", help=argparse.SUPPRESS)
    ap.add_argument("--cluster", action="store_true",
                    help="the fleet through three NATS nodes into PostgreSQL, beside one Mosquitto (bench/fleet_cluster.py)")
    ap.add_argument("--period-s", type=float, default=0.5, help="cluster: seconds between a device's alert steps")
    ap.add_argument("--outage-s", type=float, default=3.0, help="cluster: the single Mosquitto is back after this")
    args = ap.parse_args()
    if args.cluster:
        sys.path.insert(0, str(REPO / "bench"))
        from fleet_cluster import main as cluster_main

        return cluster_main(args.devices, args.seconds, args.period_s, args.outage_s)
    if args.device is not None:
        simulated_device(args)
        return 0

    folder = Path(tempfile.mkdtemp(prefix="fleet-"))
    broker = make_broker(folder / "broker")
    args.port = broker.port
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    counting = threading.Event()
    online: set[str] = set()

    def on_message(_c, _u, msg: paho.MQTTMessage) -> None:
        if msg.topic.count("/") == 2 and msg.topic.endswith("/status") and msg.payload == b"online":
            online.add(msg.topic)
        if counting.is_set():
            parts = msg.topic.split("/")
            kind = "/".join(parts[2:]) if len(parts) > 2 else msg.topic
            c = counts[(parts[1] if len(parts) > 1 else "?", kind)]
            c[0] += 1
            c[1] += mqtt_bytes(msg.topic, msg.payload, msg.qos)

    sub = paho.Client(paho.CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.subscribe("emotiond/#", qos=1)
    sub.loop_start()

    procs = []
    for i in range(args.devices):
        if args.mode == "daemon":
            procs.append(daemon_process(args, i, folder))
        else:
            procs.append(subprocess.Popen([sys.executable, __file__, "--device", str(i), "--port", str(args.port),
                                           "--state-dir", str(folder), "--protocol", str(args.protocol),
                                           "--state-interval-s", str(args.state_interval_s),
                                           "--stats-interval-s", str(args.stats_interval_s),
                                           "--changes-per-min", str(args.changes_per_min),
                                           "--alert-every-s", str(args.alert_every_s)]))
    deadline = time.monotonic() + 120  # warm-up: every device connected and sent its retained topics
    while len(online) < args.devices and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)
    counting.set()
    t0 = time.monotonic()
    time.sleep(args.seconds)
    counting.clear()
    window = time.monotonic() - t0
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(15)
    sub.loop_stop()
    broker.stop()

    devices = {d for d, _ in counts} or {"-"}
    per_kind: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for (_, kind), (n, b) in counts.items():
        per_kind[kind][0] += n
        per_kind[kind][1] += b
    scale = 3600.0 / window / len(devices)
    print(f"{args.mode}: {len(devices)} devices reporting, {window:.0f} s window, MQTT {args.protocol}")
    print(f"{'topic':<16}{'msgs/device/h':>16}{'kB/device/h':>14}")
    total_n = total_b = 0.0
    for kind, (n, b) in sorted(per_kind.items()):
        print(f"{kind:<16}{n * scale:>16.0f}{b * scale / 1000:>14.1f}")
        total_n, total_b = total_n + n * scale, total_b + b * scale
    print(f"{'total':<16}{total_n:>16.0f}{total_b / 1000:>14.1f}")
    fleet = 10_000
    print(f"10,000 devices: {total_n * fleet / 3600:.0f} msg/s, {total_b * fleet / 3600 / 1e6:.2f} MB/s "
          f"({total_b * fleet * 24 / 1e9:.1f} GB/day) at the broker ingress")
    json.dump({"mode": args.mode, "devices": len(devices), "window_s": window,
               "per_device_hour": {k: {"messages": n * scale, "bytes": b * scale} for k, (n, b) in per_kind.items()}},
              sys.stderr)
    print(file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
