"""What a face signal is: one small object with one method, ``measure``, run on a tracked face.

A signal declares, as class attributes, everything the rest of the daemon needs to show what
it returns, so that payloads, the state JSON Schema, annotations and the ``analyze`` timeline
carry a new signal without code of their own:

* ``name``: its key in ``FaceState.signals``, in the state payload's ``primary`` object and
  (with ``fields``) in the timeline's columns;
* ``fields``: ``()`` for a single number, else the keys of the flat mapping it returns;
* ``schema``: the JSON Schema of one value (``null``, meaning "not readable", is always allowed);
* ``config_key`` and ``Config``: its section in config.yaml (a ``SignalConfig`` with ``enabled``);
* ``stage``: its name in the per-stage latency stats;
* ``primary_only``: measured on the primary face only (the driver), or on every face;
* ``describe(value)``: one short annotation line, or None.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from ...configbase import Section
from ...types import FaceState, SignalValue


class SignalConfig(Section):
    enabled: bool = Field(True, title="measure this signal")
    max_hz: float = Field(0.0, ge=0, title="at most this many readings per second of a face (0: every frame); "
                                           "between two, the face carries its last reading")


class FaceSignal(ABC):
    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]] = ()
    schema: ClassVar[dict[str, Any]] = {"type": "number"}
    config_key: ClassVar[str]
    Config: ClassVar[type[SignalConfig]]
    title: ClassVar[str] = ""
    stage: ClassVar[str]
    primary_only: ClassVar[bool] = True
    # Signals measured before this one on the same face whose results it reads (gaze crops the
    # eyes from head_pose's mesh): off with them, see ``daemon.config``.
    needs_signals: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def measure(self, frame_bgr: np.ndarray, face: FaceState) -> SignalValue:
        """This signal on one face of one frame; None when it cannot be read."""

    def forget(self) -> None:
        """Drop what this signal keeps per face between frames (track ids start again)."""

    @classmethod
    def describe(cls, value: SignalValue) -> str | None:
        """One annotation line for a value (None: nothing to draw)."""
        return None

    @classmethod
    def columns(cls) -> list[str]:
        """Flat column names for tables: ``name`` or ``name.field`` for each field."""
        return [cls.name] if not cls.fields else [f"{cls.name}.{f}" for f in cls.fields]

    @classmethod
    def flatten(cls, value: SignalValue) -> list[float | None]:
        """A value as one entry per column (None where unknown)."""
        if not cls.fields:
            return [None if value is None else float(value)]  # type: ignore[arg-type]
        if not isinstance(value, dict):
            return [None] * len(cls.fields)
        return [value.get(f) for f in cls.fields]

    @classmethod
    def json_value(cls, value: SignalValue) -> Any:
        """A value as it goes into a JSON payload (rounded to 4 digits)."""
        if value is None:
            return None
        if not cls.fields:
            return round(float(value), 4)  # type: ignore[arg-type]
        return {f: None if (v := value.get(f)) is None else round(float(v), 4) for f in cls.fields}  # type: ignore[union-attr]
