"""Running the real daemon for a bench: a local Mosquitto, a config file, a subscriber.

The broker is tests/broker.py's (a real mosquitto on a free loopback port, the same one the
tests use); the config is the repository's config.yaml with the source, broker, device and
outbox overridden, so what is measured is the shipped configuration.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import yaml

from _common import REPO, peak_rss_mb  # noqa: F401  (re-exported: footprint.py takes it from here)

sys.path.insert(0, str(REPO / "tests"))
from broker import Broker, make_broker  # noqa: E402

__all__ = ["Broker", "make_broker", "daemon_config", "Subscriber", "start_daemon", "peak_rss_mb", "stop"]


def daemon_config(folder: Path, broker: Broker, device: str, source: dict, publish: dict | None = None) -> Path:
    """config.yaml with this bench's source, broker, device id and a private outbox."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["device_id"] = device
    cfg["source"] = {**cfg["source"], **source}
    cfg["mqtt"] = {**cfg["mqtt"], "host": broker.host, "port": broker.port}
    cfg["publish"] = {**cfg["publish"], **(publish or {})}
    cfg["outbox"] = {**(cfg.get("outbox") or {}), "state_dir": str(folder / f"outbox-{device}")}
    for section in ("classifier", "eyes", "head_pose"):
        cfg[section]["model"] = str(REPO / cfg[section]["model"])
    path = folder / f"{device}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Subscriber:
    """Records (arrival wall time, topic, decoded JSON or text) for every message on ``topics``."""

    def __init__(self, broker: Broker, topics: list[str]) -> None:
        self.messages: list[tuple[float, str, object]] = []
        self._cond = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, 30)
        for t in topics:
            self.client.subscribe(t, qos=1)
        self.client.loop_start()

    def _on_message(self, _c, _u, msg) -> None:
        now = time.time()
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = msg.payload.decode(errors="replace")
        with self._cond:
            self.messages.append((now, msg.topic, body))
            self._cond.notify_all()

    def first(self, topic: str, timeout: float) -> tuple[float, object] | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, top, body in self.messages:
                    if top == topic:
                        return t, body
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def on(self, topic: str) -> list[tuple[float, object]]:
        with self._cond:
            return [(t, b) for t, top, b in self.messages if top == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def start_daemon(config: Path, cpus: str | None = None, nice: int = 0) -> subprocess.Popen:
    """``python -m daemon run --config ...`` (under ``taskset -c cpus`` / ``nice -n`` when given)."""
    cmd = [sys.executable, "-m", "daemon", "run", "--config", str(config)]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
