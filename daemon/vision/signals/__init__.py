"""Face signal plug-ins: per-face measurements beside the emotion (eye closure, ...).

Adding a signal is adding its file here (a ``FaceSignal`` subclass with its ``Config``) and one
entry in ``SIGNALS``. The config section, the pipeline stage, the state payload and its JSON
Schema, the annotations and the ``analyze`` timeline all follow from that entry.

Signal files import OpenCV and LiteRT inside the code that runs: ``daemon.config`` imports
this registry for the config models, and validating a config must not load them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import FaceSignal, SignalConfig
from .eyes import EyeClosure
from .gaze import Gaze
from .head_pose import HeadPose

# Order matters where one signal reads another's work: the eye model and gaze crop the eyes from
# head_pose's mesh.
SIGNALS: tuple[type[FaceSignal], ...] = (HeadPose, EyeClosure, Gaze)

__all__ = ["SIGNALS", "FaceSignal", "SignalConfig", "build_signals", "describe", "signal_cells",
           "signal_columns", "signals_json", "state_schema_properties"]


def build_signals(sections: Mapping[str, SignalConfig], threads: int = 1) -> list[FaceSignal]:
    """The enabled signals for the config sections named by each signal's ``config_key``."""
    out: list[FaceSignal] = []
    for cls in SIGNALS:
        cfg = sections.get(cls.config_key) or cls.Config()
        if cfg.enabled:
            out.append(cls(cfg, threads=threads))  # type: ignore[call-arg]
    return out


def state_schema_properties() -> dict[str, Any]:
    """JSON Schema properties of every signal, as they appear in a face of the state payload."""
    return {s.name: {"oneOf": [{"type": "null"}, s.schema]} for s in SIGNALS}


def signals_json(signals: Mapping[str, Any]) -> dict[str, Any]:
    """Every registered signal by name, as JSON values (None where not measured): the same keys
    in every payload and timeline, whichever signals are enabled."""
    return {cls.name: cls.json_value(signals.get(cls.name)) for cls in SIGNALS}


def signal_columns() -> list[str]:
    """Column names of every registered signal, for tables (analyze's CSV timeline)."""
    return [c for cls in SIGNALS for c in cls.columns()]


def signal_cells(signals: Mapping[str, Any]) -> list[float | None]:
    """One face's signals as cells under ``signal_columns()``."""
    return [v for cls in SIGNALS for v in cls.flatten(signals.get(cls.name))]


def describe(signals: Mapping[str, Any]) -> list[str]:
    """Annotation lines of the signals measured on one face, in registry order."""
    lines = []
    for cls in SIGNALS:
        value = signals.get(cls.name)
        if value is not None and (text := cls.describe(value)):
            lines.append(text)
    return lines
