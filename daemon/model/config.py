"""The ``classifier:`` section: which emotion model runs, on what, with how many threads."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ..configbase import Section


class ClassifierConfig(Section):
    model: Path = Field(Path("models/emotion.tflite"), title="emotion model (.tflite); its manifest is the .json beside it")
    threads: int = Field(1, ge=1, title="interpreter threads (1 leaves the other core to capture and detection)")
    delegate: str = Field("cpu", title='"cpu", "gpu", or the path of a TFLite delegate library (.so)')
    fallback: bool = Field(True, title="run on the CPU when the delegate cannot be loaded (else stop with an error)")
    max_rate_hz: float = Field(
        0.0, ge=0.0,
        title="classify each tracked face at most this often (round-robin over faces, smoothing carries the state "
              "between; 0 = every frame). Bounds the per-frame cost with many faces")
