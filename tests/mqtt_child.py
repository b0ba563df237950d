"""A publisher in its own process, so tests can SIGKILL it (Last Will, restart with a backlog).

Usage: python tests/mqtt_child.py '<json>' with keys mqtt (MqttConfig dict), device,
state_dir, events (list of UUIDs to publish as driver_absent starts). Prints "queued N" once
every event is committed to the outbox, then runs until SIGTERM (clean stop, exit 0).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.publish.mqtt import MqttConfig, MqttPublisher  # noqa: E402
from daemon.publish.outbox import Outbox, OutboxConfig  # noqa: E402
from daemon.publish.payloads import event_payload  # noqa: E402
from daemon.types import Event  # noqa: E402


def main() -> int:
    args = json.loads(sys.argv[1])
    outbox = Outbox(OutboxConfig(state_dir=Path(args["state_dir"])))
    pub = MqttPublisher(MqttConfig(**args["mqtt"]), args["device"], outbox)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    pub.start()
    pub.publish_camera_status(True)
    for uid in args.get("events", []):
        pub.publish_event(event_payload(Event(uid, "driver_absent", "absent", "start", time.time()), args["device"]))
    print(f"queued {len(args.get('events', []))}", flush=True)
    done.wait()
    pub.stop()
    outbox.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
