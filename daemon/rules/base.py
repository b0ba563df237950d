"""What every rule shares: its config fields, the alert lifecycle and two small timing helpers.

An alert is one UUID from ``start`` through any ``update`` to ``end``, so a consumer of the
QoS-1 (at-least-once) event stream can drop duplicates and join the phases. A rule holds at most
one alert at a time; after it ends, the rule's cooldown keeps a new one from starting at once.
Time is only ever the observation's monotonic ``t`` (injected in tests); wall-clock times are
carried for payloads and never used to measure durations.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Annotated, Any, ClassVar, Sequence

from pydantic import Field

from ..configbase import Section, key_path
from ..types import Event, Observation

Seconds = Annotated[float, Field(ge=0.0)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]


class RuleError(ValueError):
    """A rule config that is valid on its own but not for this model (e.g. an unknown label).

    ``loc`` is the key path inside the config file, as pydantic reports it for its own errors.
    """

    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        self.loc = loc
        self.msg = msg
        super().__init__(f"{key_path(loc)}: {msg}")


class RuleBase(Section):
    # The face signals' config sections this rule reads (``eyes``, ``head_pose``): a config that
    # turns one of them off while naming the rule is refused (exit 78), not silently degraded.
    needs_signals: ClassVar[tuple[str, ...]] = ()
    name: str | None = Field(None, min_length=1, title="name carried in events (default: the rule type)")
    cooldown_s: Seconds = Field(0.0, title="after an alert ends, seconds before this rule may start another")


@dataclass
class Alert:
    id: str
    t_start: float  # monotonic
    started_at: float  # wall clock
    level: str | None
    peak: dict[str, Any] = field(default_factory=dict)


class AlertLifecycle:
    """One rule's alerts: start → update* → end under one UUID, then cooldown."""

    def __init__(self, rule_type: str, rule_name: str, cooldown_s: float) -> None:
        self.rule_type = rule_type
        self.rule_name = rule_name
        self.cooldown_s = cooldown_s
        self.active: Alert | None = None
        self._ended_t: float | None = None

    def cooling_down(self, t: float) -> bool:
        return self._ended_t is not None and t - self._ended_t < self.cooldown_s

    def raise_peak(self, **values: Any) -> None:
        """Keep the highest value seen of each measure while the alert is open."""
        peak = self.active.peak
        for key, value in values.items():
            if value is not None and (peak.get(key) is None or value > peak[key]):
                peak[key] = value

    def start(self, t: float, t_wall: float, level: str | None, details: dict, peak: dict | None = None) -> Event:
        self.active = Alert(str(uuid.uuid4()), t, t_wall, level)
        self.raise_peak(**(peak or {}))
        return self._event("start", level, details)

    def update(self, level: str | None, details: dict) -> Event:
        self.active.level = level
        return self._event("update", level, details)

    def end(self, t: float, t_wall: float, details: dict) -> Event:
        alert = self.active
        event = self._event("end", alert.level, {**details, "duration_s": round(t - alert.t_start, 3)})
        event.ended_at = t_wall
        self.active = None
        self._ended_t = t
        return event

    def _event(self, phase: str, level: str | None, details: dict) -> Event:
        alert = self.active
        return Event(
            id=alert.id,
            type=self.rule_type,
            rule=self.rule_name,
            phase=phase,
            started_at=alert.started_at,
            level=level,
            details={**details, "peak": {k: _plain(v) for k, v in alert.peak.items()}},
        )


def _plain(value: Any) -> Any:
    """Ordered levels (IntEnum) go into payloads by name."""
    return value.name.lower() if isinstance(value, IntEnum) else value


class Escalation:
    """One alert that carries ordered levels (openpilot's awareness ladder): it starts at the
    first level above zero, sends an ``update`` each time the level rises above anything it has
    reached, and ends when the rule says the driver has recovered. A cooldown holds back a new
    alert, except from ``urgent`` up: those are warned every time."""

    def __init__(self, alerts: AlertLifecycle, urgent: IntEnum) -> None:
        self.alerts = alerts
        self.urgent = urgent
        self.reached = 0

    def step(self, t: float, t_wall: float, level: IntEnum, details: dict, peak: dict, recovered: bool) -> list[Event]:
        alerts = self.alerts
        if alerts.active is None:
            if level == 0 or (alerts.cooling_down(t) and level < self.urgent):
                return []
            self.reached = level
            return [alerts.start(t, t_wall, level.name.lower(), details, peak)]
        alerts.raise_peak(**peak)
        if level > self.reached:
            self.reached = level
            return [alerts.update(level.name.lower(), details)]
        if recovered:
            self.reached = 0
            return [alerts.end(t, t_wall, details)]
        return []


class Held:
    """How long a condition has held without a break, on the injected clock."""

    def __init__(self) -> None:
        self.since: float | None = None

    def update(self, condition: bool, t: float) -> float:
        if not condition:
            self.since = None
            return 0.0
        if self.since is None:
            self.since = t
        return t - self.since


class Hysteresis:
    """A two-threshold switch: on at ``value >= on``, off at ``value <= off``, unchanged between
    (and when the value is unknown), so a signal hovering at one threshold cannot flap."""

    def __init__(self, on: float, off: float) -> None:
        if off > on:
            raise ValueError(f"hysteresis off threshold {off} is above the on threshold {on}")
        self.on, self.off = on, off
        self.state = False

    def update(self, value: float | None) -> bool:
        if value is not None:
            if value >= self.on:
                self.state = True
            elif value <= self.off:
                self.state = False
        return self.state

    def reset(self) -> bool:
        self.state = False
        return False


class Rule(ABC):
    """One configured rule: fed every observation, returns the events it caused."""

    type: ClassVar[str]
    needs_zones: ClassVar[bool] = False  # True: built with ``zones=`` (the config's named zones)

    def __init__(self, cfg: RuleBase, labels: Sequence[str], loc: tuple[str | int, ...] = ("rules",)) -> None:
        self.cfg = cfg
        self.name = cfg.name or self.type
        self.alerts = AlertLifecycle(self.type, self.name, cfg.cooldown_s)

    @abstractmethod
    def step(self, obs: Observation) -> list[Event]: ...

    def close(self, t: float, t_wall: float) -> list[Event]:
        """End the open alert (daemon shutdown), so no consumer is left with a dangling start."""
        if self.alerts.active is None:
            return []
        return [self.alerts.end(t, t_wall, {"reason": "shutdown"})]

    def active_ids(self) -> list[str]:
        return [self.alerts.active.id] if self.alerts.active else []

    def overlay(self) -> list[str]:
        """Text lines this rule shows on the live preview (running figures); none by default."""
        return []

    def live(self) -> dict[str, Any]:
        """This rule's running figures for the live page (plain JSON values); none by default.
        Called from the pipeline thread, at most a few times a second and only while a page
        is open."""
        return {}
