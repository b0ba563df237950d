"""The ``classifier:`` section: which emotion model runs, on what, with how many threads, how often."""

from __future__ import annotations

from pathlib import Path

from typing import Literal

from pydantic import Field

from ..configbase import Section


class ClassifierConfig(Section):
    model: Path = Field(Path("models/emotion_wild.tflite"),
                        title="emotion model (.tflite); its manifest is the .json beside it. Shipped: emotion_wild.tflite "
                              "(the default), emotion_ferplus.tflite (int8 only; README's models table); a removed model's "
                              "name is refused with its replacement")
    precision: Literal["auto", "file", "float"] = Field(
        "auto", title='"auto": where float is faster than int8 (x86 CPUs without VNNI/AMX, Arm without dot products), run the float model <stem>_fp16.tflite beside an int8 model, else the int8 one, with the reason in the log (daemon/model/precision.py); "file": the model as named; "float": always the float sibling, an error when it is not there'
    )
    threads: int = Field(1, ge=1, title="interpreter threads (1 leaves the other core to capture and detection)")
    delegate: str = Field("cpu", title='"cpu"; "gpu": LiteRT\'s GPU accelerator (WebGPU, over Vulkan on Linux; use the float16 model); or the path of a vendor delegate library (.so)')
    max_rate_hz: float = Field(
        10.0, ge=0.0, title="classifications per second per face at most, spread round-robin over frames (0 = every face on every frame)"
    )
    upright: bool = Field(True, title="turn a face whose eyes are tilted by 8° or more upright before classifying it, by its track's eye points (a followed face's FaceMesh; else YuNet's, which read only part of a roll): the model learnt upright faces. CK+48 at 4x rolled by 20°/30°: 74.4/61.8 % as is, 78.3/76.6 % turned; upright faces untouched (80.3 %): bench/emotion_roll.py")
    fallback: bool = Field(True, title="run on the CPU when the delegate cannot be loaded (else stop with an error); a delegate failing later always falls back, once")
