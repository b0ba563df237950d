"""The output interface: what the daemon hands to every configured output, and a fan-out.

The runtime talks to one ``Publisher``; with several outputs configured it is a ``FanOut``,
which calls each in turn and keeps one faulty output from stopping the others.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """One output. ``publish_*`` are called from the pipeline thread and must not block on the
    network; ``publish_event`` must not lose an accepted event (alerts)."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None:
        """Flush, disconnect and release everything (files, outbox)."""

    def publish_state(self, payload: Mapping[str, Any]) -> None: ...

    def publish_event(self, payload: Mapping[str, Any]) -> Any: ...

    def publish_stats(self, payload: Mapping[str, Any]) -> None: ...

    def publish_camera_status(self, online: bool) -> None: ...

    def health(self) -> dict[str, Any]:
        """Numbers for the stats payload."""


# Stats fields that every daemon reports, even with no MQTT output configured.
MQTT_HEALTH_DEFAULTS = {"broker_connected": False, "backlog": 0}


class FanOut:
    """Several publishers behind one. MQTT's health stays at the top of the stats payload (its
    established fields); every other output's health goes under ``outputs.<name>``."""

    name = "fanout"

    def __init__(self, publishers: Sequence[Publisher]) -> None:
        self.publishers = list(publishers)

    def _each(self, method: str, *args: Any) -> None:
        for p in self.publishers:
            try:
                getattr(p, method)(*args)
            except Exception:  # one broken output must not silence the others
                log.exception("output %s: %s failed", p.name, method)

    def start(self) -> None:
        for p in self.publishers:
            p.start()

    def stop(self) -> None:
        self._each("stop")

    def publish_state(self, payload: Mapping[str, Any]) -> None:
        self._each("publish_state", payload)

    def publish_event(self, payload: Mapping[str, Any]) -> None:
        self._each("publish_event", payload)

    def publish_stats(self, payload: Mapping[str, Any]) -> None:
        self._each("publish_stats", payload)

    def publish_camera_status(self, online: bool) -> None:
        self._each("publish_camera_status", online)

    def publish_update(self, payload: Mapping[str, Any]) -> None:
        """The update status, to the outputs that carry it (MQTT, retained); optional for an output."""
        for p in self.publishers:
            if hasattr(p, "publish_update"):
                try:
                    p.publish_update(payload)
                except Exception:
                    log.exception("output %s: publish_update failed", p.name)

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(MQTT_HEALTH_DEFAULTS)
        others: dict[str, Any] = {}
        for p in self.publishers:
            if p.name == "mqtt":
                out.update(p.health())
            else:
                others[p.name] = p.health()
        if others:
            out["outputs"] = others
        return out

    def find(self, name: str) -> Publisher | None:
        return next((p for p in self.publishers if p.name == name), None)
