"""The ``outputs:`` registry: output type → its config model and the module that builds it.

Adding an output is adding its file (a config model with ``type: Literal[...]`` and a
``build(cfg, ctx)`` function) and one line in ``OUTPUTS``. Implementation modules are imported
only when an output of their type is built, so validating a config never loads paho.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import Field

from .base import FanOut, Publisher
from .jsonl import JsonlConfig
from .mqtt_config import MqttConfig, MqttOutputConfig
from .outbox import OutboxConfig

OUTPUTS: dict[str, tuple[type, str]] = {
    "mqtt": (MqttOutputConfig, "daemon.publish.mqtt"),
    "jsonl": (JsonlConfig, "daemon.publish.jsonl"),
}

OutputConfig = Annotated[Union[tuple(model for model, _ in OUTPUTS.values())], Field(discriminator="type")]


@dataclass(frozen=True)
class OutputContext:
    """What outputs may need besides their own entry: the shared sections and the command hook."""

    device: str
    mqtt: MqttConfig
    outbox: OutboxConfig
    on_command: Callable[[str, bytes], dict] | None = None


def make_publisher(outputs: Sequence[Any], ctx: OutputContext) -> FanOut:
    """One publisher over every configured output, in config order."""
    built: list[Publisher] = []
    for cfg in outputs:
        _, module = OUTPUTS[cfg.type]
        built.append(importlib.import_module(module).build(cfg, ctx))
    return FanOut(built)
