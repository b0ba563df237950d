"""Home Assistant MQTT discovery: retained config messages that make emotiond appear as a device.

Entities read the normal emotiond topics (no extra traffic): the primary emotion from
``state``, fatigue from ``events`` and availability from the ``status`` Last Will topic. The
configs are republished whenever Home Assistant announces ``online`` on its birth topic.
"""

from __future__ import annotations

import re

from pydantic import Field

from .. import __version__
from ..configbase import Section

# Events other than driver_fatigue render an empty string, which Home Assistant ignores,
# so the fatigue entity only changes on its own alerts.
FATIGUE_TEMPLATE = ("{% if value_json.type == 'driver_fatigue' %}"
                    "{{ 'OFF' if value_json.phase == 'end' else 'ON' }}{% endif %}")
EMOTION_TEMPLATE = "{{ value_json.primary.emotion if value_json.primary else 'none' }}"


class HaDiscoveryConfig(Section):
    enabled: bool = Field(False, title="publish Home Assistant MQTT discovery configs")
    prefix: str = Field("homeassistant", title="Home Assistant discovery prefix (its birth topic is <prefix>/status)")
    name: str | None = Field(None, title="device name shown in Home Assistant (default: emotiond <device_id>)")


def birth_topic(cfg: HaDiscoveryConfig) -> str:
    return f"{cfg.prefix}/status"


def discovery_messages(cfg: HaDiscoveryConfig, topic_prefix: str, device_id: str) -> list[tuple[str, dict]]:
    """(topic, config) pairs to publish retained, QoS 1."""
    node = "emotiond_" + re.sub(r"[^A-Za-z0-9_-]", "_", device_id)
    device = {
        "identifiers": [node],
        "name": cfg.name or f"emotiond {device_id}",
        "manufacturer": "emotiond",
        "model": "emotiond edge daemon",
        "sw_version": __version__,
    }
    available = {
        "availability_topic": f"{topic_prefix}/status",
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    entities = {
        ("sensor", "emotion"): {
            "name": "Emotion",
            "icon": "mdi:emoticon-outline",
            "state_topic": f"{topic_prefix}/state",
            "value_template": EMOTION_TEMPLATE,
            "json_attributes_topic": f"{topic_prefix}/state",
            "json_attributes_template": "{{ (value_json.primary or {}) | tojson }}",
            **available,
        },
        ("binary_sensor", "fatigue"): {
            "name": "Driver fatigue",
            "icon": "mdi:sleep",
            "state_topic": f"{topic_prefix}/events",
            "value_template": FATIGUE_TEMPLATE,
            "payload_on": "ON",
            "payload_off": "OFF",
            **available,
        },
        ("binary_sensor", "online"): {
            "name": "Online",
            "device_class": "connectivity",
            "entity_category": "diagnostic",
            "state_topic": f"{topic_prefix}/status",
            "payload_on": "online",
            "payload_off": "offline",
        },
    }
    return [
        (f"{cfg.prefix}/{component}/{node}/{object_id}/config",
         {**body, "unique_id": f"{node}_{object_id}", "device": device})
        for (component, object_id), body in entities.items()
    ]
