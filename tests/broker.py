"""A real Mosquitto for tests: free loopback port, generated config, optional users and TLS.

``make_broker(tmp_path, users=..., tls=True)`` returns a started :class:`Broker` that can be
stopped and restarted on the same port (outage tests); the ``mqtt_broker`` fixture wraps it.
Persistence is on, so a subscriber with a persistent session gets what was published while
it was reconnecting. ``Collector`` is a subscriber that records messages and waits for them.
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
needs_mosquitto = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TlsFiles:
    ca: Path  # the CA that signed the broker's certificate
    other_ca: Path  # an unrelated CA: a client trusting only this one must fail
    cert: Path
    key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """A test CA and a server certificate for 127.0.0.1/localhost, made with the openssl CLI."""
    folder.mkdir(parents=True, exist_ok=True)

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    for name in ("ca", "other_ca"):
        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=emotiond test {name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.ext", "-out", "server.crt")
    return TlsFiles(folder / "ca.crt", folder / "other_ca.crt", folder / "server.crt", folder / "server.key")


@dataclass
class Broker:
    folder: Path
    port: int
    users: dict[str, str] = field(default_factory=dict)
    tls: TlsFiles | None = None
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.folder / "mosquitto.conf"

    @property
    def log(self) -> Path:
        return self.folder / "mosquitto.log"

    def write_conf(self) -> None:
        # ``user``: mosquitto started as root would otherwise drop to "mosquitto" and could
        # not read the 0700 pytest tmp dir.
        lines = [f"user {getpass.getuser()}", f"listener {self.port} {self.host}", "persistence true", f"persistence_location {self.folder}/",
                 f"log_dest file {self.log}", "log_type all", "max_queued_messages 100000"]
        if self.users:
            pw = self.folder / "passwd"
            pw.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.cert}", f"keyfile {self.tls.key}"]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()} {self.log_text()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout} s")

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file and exits; clients see the drop."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def make_broker(folder: Path, users: dict[str, str] | None = None, tls: bool = False) -> Broker:
    folder.mkdir(parents=True, exist_ok=True)
    broker = Broker(folder, free_port(), users or {}, make_tls_files(folder / "tls") if tls else None)
    broker.write_conf()
    broker.start()
    return broker


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """``broker_factory(users={...}, tls=True)`` -> started Broker; all are killed at teardown."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    made: list[Broker] = []

    def make(users: dict[str, str] | None = None, tls: bool = False) -> Broker:
        made.append(make_broker(tmp_path / f"broker{len(made)}", users, tls))
        return made[-1]

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def mqtt_broker(broker_factory) -> Broker:
    return broker_factory()


class Collector:
    """A subscriber that records (topic, payload, retain, properties) and waits for conditions."""

    def __init__(self, broker: Broker, topics: list[str], *, v5: bool = False, client_id: str | None = None,
                 persistent: bool = False) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self._cond = threading.Condition()
        self._topics = topics
        kwargs = {"protocol": paho.MQTTv5} if v5 else {"clean_session": not persistent}
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or "", **kwargs)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        if broker.users:
            user, password = next(iter(broker.users.items()))
            self.client.username_pw_set(user, password)
        if broker.tls:
            self.client.tls_set(ca_certs=str(broker.tls.ca))
        self.connected = threading.Event()
        self.client.connect(broker.host, broker.port, 30)
        self.client.loop_start()
        assert self.connected.wait(10), "test subscriber could not connect"

    def _on_connect(self, client, _u, _f, reason, _p) -> None:
        if not reason.is_failure:
            for t in self._topics:
                client.subscribe(t, qos=1)
            self.connected.set()

    def _on_message(self, _c, _u, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def on(self, topic: str) -> list[paho.MQTTMessage]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def ids(self, topic: str) -> list[str]:
        """The distinct ``id`` of the JSON payloads on ``topic``, in order of first arrival
        (QoS 1 may deliver one twice)."""
        seen: list[str] = []
        for m in self.on(topic):
            i = json.loads(m.payload)["id"]
            if i not in seen:
                seen.append(i)
        return seen

    def wait_for(self, predicate: Callable[[list[paho.MQTTMessage]], bool], timeout: float = 15.0) -> bool:
        """Poll the predicate every 50 ms rather than on every message: a predicate that scans all
        messages would otherwise cost O(n²) during a flood and starve paho's receiving thread."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                if predicate(self.messages):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            time.sleep(0.05)

    def wait_topic(self, topic: str, payload: bytes | None = None, timeout: float = 15.0) -> paho.MQTTMessage:
        found: list[paho.MQTTMessage] = []

        def match(msgs: list[paho.MQTTMessage]) -> bool:
            found[:] = [m for m in msgs if m.topic == topic and (payload is None or m.payload == payload)]
            return bool(found)

        assert self.wait_for(match, timeout), f"nothing on {topic} (payload {payload!r}) within {timeout} s"
        return found[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
