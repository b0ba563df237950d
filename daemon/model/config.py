"""The ``classifier:`` section: which emotion model runs, on what, with how many threads, how often."""

from __future__ import annotations

from pathlib import Path

from typing import Literal

from pydantic import Field

from ..configbase import Section


class ClassifierConfig(Section):
    model: Path = Field(Path("models/emotion_ferplus.tflite"), title="emotion model (.tflite); its manifest is the .json beside it")
    precision: Literal["auto", "file"] = Field(
        "auto", title='"auto": on x86 CPUs without VNNI/AMX, where float is faster than int8, run the float model <stem>_fp16.tflite beside an int8 model (daemon/model/precision.py); "file": the model as named'
    )
    threads: int = Field(1, ge=1, title="interpreter threads (1 leaves the other core to capture and detection)")
    delegate: str = Field("cpu", title='"cpu"; "gpu": LiteRT\'s GPU accelerator (WebGPU, over Vulkan on Linux; use the float16 model); or the path of a vendor delegate library (.so)')
    max_rate_hz: float = Field(
        10.0, ge=0.0, title="classifications per second per face at most, spread round-robin over frames (0 = every face on every frame)"
    )
    fallback: bool = Field(True, title="run on the CPU when the delegate cannot be loaded (else stop with an error); a delegate failing later always falls back, once")
