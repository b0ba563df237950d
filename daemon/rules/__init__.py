"""The event rules engine: per-frame observations in, alert events out.

Each rule type is one module holding its config model (``type: Literal[...]`` picks it in
``rules:`` of config.yaml) and its rule class. To add a type, add a module and list its config
and class below.
"""

from __future__ import annotations

from typing import Annotated, Any, Mapping, Sequence

from pydantic import Field

from ..types import Event, Observation
from .base import Rule, RuleError
from .driver_absent import DriverAbsent, DriverAbsentConfig
from .driver_distraction import DistractionLevel, DriverDistraction, DriverDistractionConfig
from .driver_fatigue import DriverFatigue, DriverFatigueConfig, FatigueLevel
from .driver_monitoring_degraded import DriverMonitoringDegraded, DriverMonitoringDegradedConfig
from .emotion_summary import EmotionSummary, EmotionSummaryConfig
from .sustained_emotion import SustainedEmotion, SustainedEmotionConfig
from .visitors import Visitors, VisitorsConfig

RuleConfig = Annotated[
    DriverFatigueConfig | DriverDistractionConfig | DriverMonitoringDegradedConfig | DriverAbsentConfig
    | SustainedEmotionConfig | EmotionSummaryConfig | VisitorsConfig,
    Field(discriminator="type"),
]

# The rules of the documented default configuration (config.yaml's ``rules:``): a config that
# names no rules gets these, so the built-in defaults and config.yaml never differ.
DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    {"type": "driver_fatigue"},
    {"type": "driver_distraction"},
    {"type": "driver_monitoring_degraded"},
    {"type": "driver_absent", "after_s": 5.0},
    {"type": "sustained_emotion", "emotion": "angry", "threshold": 0.6, "duration_s": 3.0, "cooldown_s": 30.0},
)

RULE_TYPES: dict[str, type[Rule]] = {
    cls.type: cls for cls in (DriverFatigue, DriverDistraction, DriverMonitoringDegraded, DriverAbsent,
                              SustainedEmotion, EmotionSummary, Visitors)
}


def make_rules(configs: Sequence[RuleConfig], labels: Sequence[str], zones: Mapping[str, Any] | None = None) -> list[Rule]:
    """Build the rules, checking what needs the model (labels) and the whole list (unique names).

    Raises RuleError whose ``loc`` is the key path, e.g. ``rules.2.emotion``.
    """
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, cfg in enumerate(configs):
        loc = ("rules", i)
        cls = RULE_TYPES[cfg.type]
        rule = cls(cfg, labels, loc, zones=zones) if cls.needs_zones else cls(cfg, labels, loc)
        if rule.name in seen:
            raise RuleError((*loc, "name"), f"rule name {rule.name!r} is already used by rules[{seen[rule.name]}]; give each rule a distinct name")
        seen[rule.name] = i
        rules.append(rule)
    return rules


class RulesEngine:
    """All configured rules, stepped in config order on the observation clock."""

    def __init__(self, rules: Sequence[RuleConfig], labels: Sequence[str], zones: Mapping[str, Any] | None = None) -> None:
        self.rules = make_rules(rules, labels, zones)

    def step(self, obs: Observation) -> list[Event]:
        return [event for rule in self.rules for event in rule.step(obs)]

    def close(self, t: float, t_wall: float) -> list[Event]:
        """End every open alert (and flush partial summaries) at shutdown."""
        return [event for rule in self.rules for event in rule.close(t, t_wall)]

    def overlay(self) -> list[str]:
        """The rules' running figures for the live preview."""
        return [line for rule in self.rules for line in rule.overlay()]

    def live(self) -> dict[str, dict[str, Any]]:
        """Each rule's running figures for the live page, by rule name (rules with none left out)."""
        return {rule.name: {"type": rule.type, **figures} for rule in self.rules if (figures := rule.live())}

    def active(self) -> list[str]:
        """Ids of the alerts open now."""
        return [alert_id for rule in self.rules for alert_id in rule.active_ids()]


__all__ = [
    "DEFAULT_RULES", "RuleConfig", "RuleError", "RulesEngine", "make_rules", "RULE_TYPES", "FatigueLevel", "DistractionLevel",
    "DriverFatigueConfig", "DriverDistractionConfig", "DriverMonitoringDegradedConfig", "DriverAbsentConfig", "SustainedEmotionConfig", "EmotionSummaryConfig", "VisitorsConfig",
]
