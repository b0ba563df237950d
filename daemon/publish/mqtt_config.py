"""Config models of the MQTT publisher (the ``mqtt`` and ``publish`` sections of config.yaml)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from ..configbase import Section
from .ha_discovery import HaDiscoveryConfig

PASSWORD_ENV = "EMOTIOND_MQTT_PASSWORD"


class TlsConfig(Section):
    ca_file: Path | None = Field(None, title="CA certificate(s) that signed the broker's certificate (default: system CAs)")
    cert_file: Path | None = Field(None, title="client certificate, for brokers that require one")
    key_file: Path | None = Field(None, title="private key of the client certificate")
    insecure: bool = Field(False, title="skip the broker hostname check (testing only; the chain is still verified)")

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self


def parse_broker(entry: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6 address]:port`` as (host, port)."""
    text = entry.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"mqtt.hosts entry {entry!r}: write an IPv6 address as [address]:port")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"mqtt.hosts entry {entry!r} has no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"mqtt.hosts entry {entry!r}: the port must be 1-65535")
    return host, int(port_text)


class MqttConfig(Section):
    host: str = Field("127.0.0.1", title="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, title="broker port (8883 is usual with TLS)")
    hosts: list[str] = Field(
        [], title="brokers of a cluster as host:port, tried in turn: a lost connection or a failed attempt "
                  "moves to the next (replaces host/port; the port defaults to mqtt.port)")
    topic_prefix: str = Field("emotiond/{device_id}", title="prefix of every topic; {device_id} is replaced")
    client_id: str | None = Field(None, title="MQTT client id (default: emotiond-<device_id>)")
    username: str | None = Field(None, title="user name for the broker")
    password: SecretStr | None = Field(None, title=f"password (better: env {PASSWORD_ENV} or password_file)")
    password_file: Path | None = Field(None, title="file whose first line is the password")
    tls: TlsConfig | None = Field(None, title="TLS settings; omit for plain TCP")
    protocol: Literal[3, 5] = Field(3, title="3 = MQTT 3.1.1, 5 = MQTT 5 (expiry, will delay, user properties)")
    keepalive_s: int = Field(30, ge=5, title="seconds between keepalive pings")
    connect_timeout_s: float = Field(5.0, gt=0, title="seconds to wait for one TCP/TLS connection attempt")
    reconnect_min_s: int = Field(1, ge=1, title="first reconnect delay; doubles after each failure")
    reconnect_max_s: int = Field(60, ge=1, title="cap of the reconnect delay")
    persistent_session: bool = Field(False, title="ask the broker to keep our session (subscriptions, QoS 1) across drops")
    session_expiry_s: int = Field(3600, ge=0, title="MQTT 5: how long the broker keeps a persistent session")
    will_delay_s: int = Field(5, ge=0, title="MQTT 5: broker waits this long before sending 'offline' (no flap on quick restarts)")
    state_expiry_s: int = Field(3600, ge=0, title="MQTT 5: message expiry of state (0 = never)")
    stats_expiry_s: int = Field(60, ge=0, title="MQTT 5: message expiry of stats (0 = never)")
    max_inflight: int = Field(20, ge=1, title="events handed to paho before their PUBACK arrives")
    command_max_bytes: int = Field(4096, ge=0, title="largest accepted command payload")
    ha_discovery: HaDiscoveryConfig = Field(HaDiscoveryConfig(), title="Home Assistant discovery")

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("password must be provided with username")
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        for entry in self.hosts:
            parse_broker(entry, self.port)
        probe = self.topic_prefix.replace("{device_id}", "x")
        if not probe or re.search(r"[+#{}\x00]", probe) or probe.startswith("/") or probe.endswith("/"):
            raise ValueError(f"topic_prefix {self.topic_prefix!r}: no wildcards, braces (other than "
                             "{device_id}) or leading/trailing '/'")
        return self

    def brokers(self) -> list[tuple[str, int]]:
        """The brokers to try, in order: ``hosts``, else ``host``:``port``."""
        return [parse_broker(h, self.port) for h in self.hosts] or [(self.host, self.port)]

    def password_value(self) -> str | None:
        """The secret from the config, else the environment, else password_file (read now)."""
        if self.password is not None:
            return self.password.get_secret_value()
        if env := os.environ.get(PASSWORD_ENV):
            return env
        if self.password_file is not None:
            lines = self.password_file.read_text(encoding="utf-8").splitlines()
            return lines[0] if lines else ""
        return None


class MqttOutputConfig(Section):
    """An ``outputs:`` entry for MQTT; its settings are the ``mqtt:``, ``publish:`` and ``outbox:``
    sections (one broker per daemon; a second broker is a second daemon instance)."""

    type: Literal["mqtt"] = Field("mqtt", title="the broker of the mqtt: section (topics, outbox, commands)")


class PublishConfig(Section):
    state_interval_s: float = Field(1.0, ge=0, title="state at most this often (and only when it changed); 0 = every processed frame")
    stats_interval_s: float = Field(10.0, gt=0, title="seconds between stats messages")
