"""A real three-node NATS Server cluster with JetStream and its MQTT listener, on loopback.

``NatsCluster(folder).start()`` writes one config per node (client, cluster-route and MQTT
ports free on 127.0.0.1, a JetStream store each, routes to the other two), starts the three
``nats-server`` processes and waits until every node's MQTT listener accepts a real MQTT 3.1.1
session (JetStream must have elected its meta leader first: before that a CONNECT is refused).
Nodes can be SIGKILLed, SIGSTOPped/SIGCONTed and restarted on the same ports and store.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from broker import free_port

NATS = shutil.which("nats-server") or ("/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
needs_nats = pytest.mark.skipif(NATS is None, reason="nats-server is not installed (apt-get install nats-server)")


@dataclass
class Node:
    name: str
    folder: Path
    client_port: int
    route_port: int
    mqtt_port: int
    proc: subprocess.Popen | None = None
    host: str = "127.0.0.1"
    users = {}  # noqa: RUF012  (the test Collector's Broker interface: no users, no TLS)
    tls = None

    @property
    def port(self) -> int:  # what an MQTT client connects to
        return self.mqtt_port

    @property
    def log(self) -> Path:
        return self.folder / "nats.log"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class NatsCluster:
    def __init__(self, folder: Path, size: int = 3) -> None:
        self.folder = folder
        self.nodes = [Node(f"n{i + 1}", folder / f"n{i + 1}", free_port(), free_port(), free_port()) for i in range(size)]

    def _write(self, node: Node) -> Path:
        node.folder.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(f"nats-route://127.0.0.1:{n.route_port}" for n in self.nodes if n is not node)
        conf = node.folder / "nats.conf"
        conf.write_text(f"""
server_name: {node.name}
listen: 127.0.0.1:{node.client_port}
log_file: "{node.log}"
jetstream {{ store_dir: "{node.folder / 'js'}", max_memory_store: 64MB, max_file_store: 512MB }}
cluster {{ name: emotiond-test, listen: 127.0.0.1:{node.route_port}, routes: [{routes}] }}
# every MQTT stream and consumer on all three nodes: with the default a QoS 1 consumer or the
# retained-messages stream may sit on the node that dies alone (measured: "NO quorum, stalled")
mqtt {{ listen: 127.0.0.1:{node.mqtt_port}, stream_replicas: {len(self.nodes)}, consumer_replicas: {len(self.nodes)} }}
""")
        return conf

    def start_node(self, node: Node) -> None:
        node.proc = subprocess.Popen([NATS, "-c", str(self._write(node))], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def start(self, timeout: float = 60.0) -> NatsCluster:
        for node in self.nodes:
            self.start_node(node)
        for node in self.nodes:
            self.wait_mqtt(node, timeout)
        return self

    def wait_mqtt(self, node: Node, timeout: float = 60.0) -> None:
        """Until a real MQTT session is accepted there (JetStream ready on this node)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(f"nats-server {node.name} exited: {node.log_text()[-2000:]}")
            ok, last = probe(node)
            if ok:
                return
            time.sleep(0.3)
        raise RuntimeError(f"{node.name}: MQTT not ready within {timeout} s ({last}): {node.log_text()[-2000:]}")

    def kill(self, node: Node) -> None:
        if node.proc and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait()

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGCONT)
                node.proc.terminate()
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()

    def by_port(self, port: int) -> Node:
        return next(n for n in self.nodes if n.mqtt_port == port)


def probe(node: Node, timeout: float = 3.0) -> tuple[bool, str]:
    result: dict = {}
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}",
                         protocol=paho.MQTTv311)
    client.on_connect = lambda _c, _u, _f, reason, _p: result.setdefault("reason", reason)
    try:
        client.connect(node.host, node.mqtt_port, keepalive=5)
    except OSError as exc:
        return False, str(exc)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while "reason" not in result and time.monotonic() < deadline:
            time.sleep(0.05)
        reason = result.get("reason")
        if reason is None:
            return False, "no CONNACK"
        return not reason.is_failure, str(reason)
    finally:
        client.disconnect()
        client.loop_stop()
