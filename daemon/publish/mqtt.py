"""MQTT publishing on paho-mqtt 2.x: topics and QoS of design section 3, never losing an alert.

Threads: the pipeline calls ``publish_*``; paho's network thread runs the callbacks; a small
pump thread moves events from the durable outbox to paho and deletes them on PUBACK. The pump
exists because paho calls ``on_publish`` while holding its own message lock: doing outbox work
there (or calling ``publish`` from it) could deadlock against the pipeline thread.

Events are handed to paho only while connected and at most ``max_inflight`` at a time; paho
resends those few itself after a reconnect, everything else waits on disk in order.

Brokers (``mqtt.hosts``, a cluster's nodes): paho knows one host (paho.mqtt.python #477), so
``_Client`` moves to the next broker before every reconnect that follows a failed attempt or a
lost connection, and waits before it with **full jitter** (a random time between 0 and paho's
capped exponential delay; AWS Architecture Blog, "Exponential Backoff And Jitter"): when a node
dies, its devices neither wait on it nor come back to the cluster in the same second. The outbox
does not care which broker takes the events: they go out in order after the switch.
"""

from __future__ import annotations

import collections
import logging
import random
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .commands import CommandHandler, CommandRouter
from .ha_discovery import birth_topic, discovery_messages
from .mqtt_config import PASSWORD_ENV, MqttConfig, MqttOutputConfig, PublishConfig, TlsConfig
from .outbox import Outbox, OutboxConfig, Priority
from .payloads import SCHEMA_VERSION, encode

__all__ = ["MqttConfig", "MqttPublisher", "PublishConfig", "TlsConfig"]

log = logging.getLogger(__name__)

_AUTH_CODES = {4, 5, 134, 135}  # 3.1.1 bad credentials / not authorised; v5 0x86 / 0x87


def client_id(cfg: MqttConfig, device_id: str) -> str:
    """The MQTT client id: configured, else ``emotiond-<device_id>``."""
    return cfg.client_id or f"emotiond-{device_id}"


def protocol(cfg: MqttConfig) -> int:
    """paho's protocol constant for ``mqtt.protocol``."""
    return paho.MQTTv5 if cfg.protocol == 5 else paho.MQTTv311


class _Client(paho.Client):
    """paho's Client, remembering why the last connection attempt failed (paho swallows it),
    moving through ``brokers`` and waiting with full jitter (see the module docstring)."""

    attempts = 0
    failovers = 0  # switches to another broker
    last_error: BaseException | None = None
    brokers: list[tuple[str, int]] = []
    broker_index = 0
    _move_on = False  # the next attempt goes to the next broker

    def reconnect(self) -> paho.MQTTErrorCode:
        if self._move_on and len(self.brokers) > 1:
            self.broker_index = (self.broker_index + 1) % len(self.brokers)
            # paho's host/port setters refuse while the old socket is still open, and reconnect()
            # closes it first: set what reconnect() reads (paho 2.x, pinned <3).
            self._host, self._port = self.brokers[self.broker_index]
            self.failovers += 1
        # Set before the attempt: if it fails, or the connection it makes is lost later, the
        # attempt after it goes elsewhere.
        self._move_on = True
        self.attempts += 1
        try:
            return super().reconnect()
        except OSError as exc:
            self.last_error = exc
            raise

    def _reconnect_wait(self) -> None:
        # paho's own wait (client.py) with the delay drawn uniformly from [0, capped exponential]
        with self._reconnect_delay_mutex:
            if self._reconnect_delay is None:
                self._reconnect_delay = self._reconnect_min_delay
            else:
                self._reconnect_delay = min(self._reconnect_delay * 2, self._reconnect_max_delay)
            delay = random.uniform(0.0, float(self._reconnect_delay))
        end = time.monotonic() + delay
        idle = (paho._ConnectionState.MQTT_CS_DISCONNECTING, paho._ConnectionState.MQTT_CS_DISCONNECTED)
        while self._state not in idle and not self._thread_terminate:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.2))


class MqttPublisher:
    """The MQTT output (``Publisher``): state, stats and camera status straight to paho, events
    through the durable outbox. ``owns_outbox``: ``stop`` closes it (else the caller does)."""

    name = "mqtt"

    def __init__(self, cfg: MqttConfig, device_id: str, outbox: Outbox | None = None,
                 on_command: CommandHandler | None = None, *, owns_outbox: bool = False) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self.prefix = cfg.topic_prefix.replace("{device_id}", device_id)
        if any(c in self.prefix for c in "+#\0"):
            raise ValueError(f"device id {device_id!r} makes topic prefix {self.prefix!r}: MQTT wildcards in a topic")
        self.client_id = client_id(cfg, device_id)
        self._own_outbox = outbox is None or owns_outbox
        self.outbox = outbox if outbox is not None else Outbox(OutboxConfig(persistent=False))
        self.commands = CommandRouter(device_id, on_command, cfg.command_max_bytes)
        self.connected = False
        self._connected_event = threading.Event()
        self.connect_failures = 0
        self.last_error: str | None = None
        self._v5 = cfg.protocol == 5
        self._last_state: bytes | None = None
        self._camera_online: bool | None = None
        self._last_update: bytes | None = None
        self._inflight: dict[int, int] = {}  # paho mid -> outbox row id (pump thread only)
        self._cursor = 0  # highest outbox row id handed to paho
        self._acked: collections.deque[int] = collections.deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pump_thread = threading.Thread(target=self._pump_loop, name="mqtt-outbox", daemon=True)
        self._props_state = self._publish_props(cfg.state_expiry_s)
        self._props_stats = self._publish_props(cfg.stats_expiry_s)
        self._props_json = self._publish_props(0)
        self._client = self._make_client()

    def topic(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    # -- public API ------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Events written to the outbox and not yet acknowledged by the broker."""
        return len(self.outbox)

    @property
    def connect_attempts(self) -> int:
        return self._client.attempts

    @property
    def broker(self) -> str:
        """The broker connected to (or being tried), ``host:port``."""
        return f"{self._client.host}:{self._client.port}"

    @property
    def failovers(self) -> int:
        return self._client.failovers

    def health(self) -> dict[str, Any]:
        """Publisher numbers for the stats payload."""
        return {"broker_connected": self.connected, "backlog": self.backlog, "outbox_dropped": self.outbox.dropped,
                "outbox_healthy": self.outbox.healthy, "commands_rejected": self.commands.rejected,
                "broker": self.broker if self.connected else None, "broker_failovers": self.failovers}

    def wait_connected(self, timeout: float) -> bool:
        """Block until the broker accepted us (for ``emotiond check``); False on timeout."""
        return self._connected_event.wait(timeout)

    def start(self) -> None:
        """Connect in the background; a broker that is down is retried with back-off, never raised."""
        props = None
        kwargs: dict[str, Any] = {}
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            # The session must outlive the connection at least as long as the will delay,
            # otherwise the broker sends the will as soon as the session ends.
            props.SessionExpiryInterval = (self.cfg.session_expiry_s if self.cfg.persistent_session
                                           else self.cfg.will_delay_s)
            kwargs["clean_start"] = not self.cfg.persistent_session
        host, port = self._client.brokers[0]
        self._client.connect_async(host, port, self.cfg.keepalive_s, properties=props, **kwargs)
        self._pump_thread.start()
        self._client.loop_start()

    def stop(self, timeout: float = 3.0) -> None:
        """Publish retained ``offline``, disconnect cleanly (so no Last Will) and stop the threads.

        Events queued just before (the ``end`` of open alerts) get a moment to be acknowledged,
        so they are not sent again, as duplicates, by the next start."""
        if not self._pump_thread.is_alive() and self._pump_thread.ident is None:  # never started
            if self._own_outbox:
                self.outbox.close()
            return
        deadline = time.monotonic() + timeout / 3
        while self.connected and self.backlog and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.02)
        self._stopping.set()
        self._wake.set()
        self._pump_thread.join(timeout / 3)
        if self.connected:
            info = self._client.publish(self.topic("status"), b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout / 3)
            except (RuntimeError, ValueError):
                pass
        self._client.disable_logger()  # paho 2.2 logs a spurious "not connected" error after disconnect
        self._client.disconnect()
        stopper = threading.Thread(target=self._client.loop_stop, daemon=True)
        stopper.start()
        stopper.join(timeout / 3)
        self.connected = False
        if self._own_outbox:
            self.outbox.close()

    def publish_state(self, payload: Mapping[str, Any]) -> None:
        self._last_state = encode(payload)
        if self.connected:
            self._client.publish(self.topic("state"), self._last_state, 0, True, self._props_state)

    def publish_stats(self, payload: Mapping[str, Any]) -> None:
        if self.connected:
            self._client.publish(self.topic("stats"), encode(payload), 0, False, self._props_stats)

    def publish_event(self, payload: Mapping[str, Any]) -> int | None:
        """Commit the event to the outbox (returns its row id), then let the pump send it."""
        kind = str(payload.get("type", ""))
        priority = Priority.SUMMARY if kind.endswith("summary") else Priority.ALERT
        row = self.outbox.put(self.topic("events"), encode(payload), 1, False, priority)
        self._wake.set()
        return row

    def publish_camera_status(self, online: bool) -> None:
        self._camera_online = online
        if self.connected:
            self._publish_camera()

    def publish_update(self, payload: Mapping[str, Any]) -> None:
        """The update status, retained, QoS 1 (sent again on every connect: the latest wins)."""
        self._last_update = encode(payload)
        if self.connected:
            self._client.publish(self.topic("update"), self._last_update, 1, True, self._props_json)

    # -- paho client -----------------------------------------------------------------------
    def _make_client(self) -> _Client:
        cfg = self.cfg
        kwargs: dict[str, Any] = {"protocol": protocol(cfg)}
        if not self._v5:
            kwargs["clean_session"] = not cfg.persistent_session
        client = _Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id, **kwargs)
        client.suppress_exceptions = True  # belt and braces: our callbacks catch their own errors
        client.enable_logger(logging.getLogger(__name__ + ".paho"))
        client.connect_timeout = cfg.connect_timeout_s
        client.max_inflight_messages_set(cfg.max_inflight)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
        client.brokers = cfg.brokers()
        _configure_transport(client, cfg)
        will_props = None
        if self._v5 and cfg.will_delay_s:
            will_props = Properties(PacketTypes.WILLMESSAGE)
            will_props.WillDelayInterval = cfg.will_delay_s
        client.will_set(self.topic("status"), b"offline", qos=1, retain=True, properties=will_props)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.message_callback_add(self.topic("cmd/+"), self._on_command)
        if cfg.ha_discovery.enabled:
            client.message_callback_add(birth_topic(cfg.ha_discovery), self._on_ha_birth)
        return client

    def _publish_props(self, expiry_s: int) -> Properties | None:
        """MQTT 5 properties of JSON payloads: schema version as a user property, optional expiry."""
        if not self._v5:
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("schema", str(SCHEMA_VERSION))]
        props.ContentType = "application/json"
        props.PayloadFormatIndicator = 1
        if expiry_s:
            props.MessageExpiryInterval = expiry_s
        return props

    def _publish_camera(self) -> None:
        if self._camera_online is not None:
            self._client.publish(self.topic("camera/status"), b"online" if self._camera_online else b"offline", 1, True)

    def _publish_discovery(self) -> None:
        for topic, config in discovery_messages(self.cfg.ha_discovery, self.prefix, self.device_id):
            self._client.publish(topic, encode(config), 1, True)

    # -- callbacks (paho's thread: they must never raise) ----------------------------------
    def _on_connect(self, client, _userdata, _flags, reason, _props) -> None:
        if reason.is_failure:
            self.connect_failures += 1
            self.last_error = f"broker refused the connection: {reason}"
            hint = (f" (check mqtt.username and the password: {PASSWORD_ENV} or mqtt.password_file)"
                    if reason.value in _AUTH_CODES else "")
            log.error("MQTT %s %s%s; retrying with back-off (at most every %d s)",
                      self.broker, self.last_error, hint, self.cfg.reconnect_max_s)
            return
        try:
            log.info("MQTT connected to %s as %s (prefix %s)%s", self.broker, self.client_id, self.prefix,
                     f"; failovers so far: {self.failovers}" if self.failovers else "")
            self.connected, self.last_error = True, None
            self._connected_event.set()
            client.publish(self.topic("status"), b"online", 1, True)
            if self._last_state is not None:
                client.publish(self.topic("state"), self._last_state, 0, True, self._props_state)
            self._publish_camera()
            if self._last_update is not None:
                client.publish(self.topic("update"), self._last_update, 1, True, self._props_json)
            client.subscribe(self.topic("cmd/+"), qos=1)
            if self.cfg.ha_discovery.enabled:
                client.subscribe(birth_topic(self.cfg.ha_discovery), qos=1)
                self._publish_discovery()
            self._wake.set()
        except Exception:
            log.exception("MQTT on_connect failed")

    def _on_connect_fail(self, client, _userdata) -> None:
        self.connect_failures += 1
        self.last_error = f"cannot connect: {client.last_error}"
        log.warning("MQTT %s %s; retrying with back-off (at most every %d s)%s",
                    self.broker, self.last_error, self.cfg.reconnect_max_s,
                    "; the next broker is tried" if len(self._client.brokers) > 1 else "")

    def _on_disconnect(self, _client, _userdata, _flags, reason, _props) -> None:
        if self.connected and not self._stopping.is_set():
            log.warning("MQTT connection to %s lost (%s); reconnecting with back-off%s", self.broker, reason,
                        " to the next broker" if len(self._client.brokers) > 1 else "")
        self.connected = False
        self._connected_event.clear()

    def _on_publish(self, _client, _userdata, mid, _reason, _props) -> None:
        # Runs under paho's message lock: only note the ack; the pump thread does the rest.
        self._acked.append(mid)
        self._wake.set()

    def _on_command(self, client, _userdata, msg: paho.MQTTMessage) -> None:
        try:
            name = msg.topic.rsplit("/", 1)[-1]
            reply = self.commands.handle(name, msg.payload)
            client.publish(self.topic("reply"), encode(reply), 1, False, self._props_json)
        except Exception:
            log.exception("MQTT command handling failed")

    def _on_ha_birth(self, _client, _userdata, msg: paho.MQTTMessage) -> None:
        if msg.payload == b"online":
            log.info("Home Assistant is online: republishing discovery configs")
            try:
                self._publish_discovery()
            except Exception:
                log.exception("publishing Home Assistant discovery failed")

    # -- outbox pump -----------------------------------------------------------------------
    def _pump_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                self._settle_acks()
                if self.connected:
                    self._send_backlog()
            except Exception:
                log.exception("MQTT outbox pump failed; retrying")

    def _settle_acks(self) -> None:
        while self._acked:
            row = self._inflight.pop(self._acked.popleft(), None)
            if row is not None:
                self.outbox.remove(row)

    def _send_backlog(self) -> None:
        room = self.cfg.max_inflight - len(self._inflight)
        if room <= 0:
            return
        for msg in self.outbox.peek(room, after=self._cursor):
            info = self._client.publish(msg.topic, msg.payload, msg.qos, msg.retain, self._props_json)
            if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
                log.warning("MQTT publish of outbox row %d failed (%s); will retry", msg.id, paho.error_string(info.rc))
                return
            self._inflight[info.mid] = msg.id
            self._cursor = msg.id


def _configure_transport(client: paho.Client, cfg: MqttConfig) -> None:
    """Credentials and TLS, shared by the publisher and ``probe_broker``."""
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password_value())
    if cfg.tls is not None:
        client.tls_set_context(_tls_context(cfg.tls))


def probe_broker(cfg: MqttConfig, device_id: str, timeout: float = 5.0) -> tuple[bool, str]:
    """Connect once to each broker and disconnect, publishing nothing (``emotiond check`` must not
    flip the retained status of a daemon that is running with the same config). OK when one
    answers; the detail names each."""
    results = [_probe_one(cfg, host, port, device_id, timeout) for host, port in cfg.brokers()]
    if len(results) == 1:
        return results[0]
    up = sum(ok for ok, _ in results)
    return up > 0, f"{up} of {len(results)} brokers: " + "; ".join(("" if ok else "DOWN ") + d for ok, d in results)


def _probe_one(cfg: MqttConfig, host: str, port: int, device_id: str, timeout: float) -> tuple[bool, str]:
    result: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(_c, _u, _f, reason, _p) -> None:
        result["reason"] = reason
        done.set()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{client_id(cfg, device_id)}-check",
                         protocol=protocol(cfg))
    client.on_connect = on_connect
    where = f"{host}:{port}"
    try:
        _configure_transport(client, cfg)
        client.connect_timeout = timeout
        client.connect(host, port, keepalive=max(5, int(timeout)))
    except (OSError, ssl.SSLError, ValueError) as exc:
        return False, f"{where}: {exc}"
    client.loop_start()
    try:
        if not done.wait(timeout):
            return False, f"{where}: no CONNACK within {timeout:g} s"
        reason = result["reason"]
        if reason.is_failure:
            return False, f"{where}: refused: {reason}"
        return True, f"{where} ({'TLS' if cfg.tls else 'plain'}, MQTT {'5' if cfg.protocol == 5 else '3.1.1'})"
    finally:
        client.disconnect()
        client.loop_stop()


def _tls_context(cfg: TlsConfig) -> ssl.SSLContext:
    """Verify the broker against ``ca_file`` (or the system CAs), hostname included by default."""
    ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    if cfg.cert_file is not None:
        ctx.load_cert_chain(str(cfg.cert_file), str(cfg.key_file) if cfg.key_file else None)
    if cfg.insecure:
        log.warning("mqtt.tls.insecure is set: the broker's hostname is not checked")
        ctx.check_hostname = False
    return ctx


def build(cfg: MqttOutputConfig, ctx) -> MqttPublisher:
    """The ``outputs: [{type: mqtt}]`` entry: the broker of ``ctx.mqtt`` with its own outbox."""
    return MqttPublisher(ctx.mqtt, ctx.device, Outbox(ctx.outbox), on_command=ctx.on_command, owns_outbox=True)
