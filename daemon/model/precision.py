"""Which variant of the emotion model a CPU runs faster: int8, or the float model beside it.

XNNPACK's int8 kernels are fast where the CPU has 8-bit dot products: x86 with VNNI
(``avx512_vnni``, ``avx_vnni``) or AMX (earlier sessions' Xeon: int8 about 3× float), and Arm
with ``asimddp``/``i8mm`` (on Arm int8 also halves the memory traffic; not measured here, so int8
stays the choice on every non-x86 CPU). On an x86 CPU with AVX2 and FMA but no VNNI
(most x86 edge boxes and older servers), its float32 kernels are *faster* than its int8 ones:
measured on an AMD EPYC (AVX2, 1 thread, a face and its mirror per invoke, side by side), one
MobileNetV2-96 3.08 ms in float against 3.79 ms in int8, and the three-network ensemble 9.7 ms
against 11.0 ms (`bench/precision.py`). The float model is also the one the figures were measured on (int8
changes the class of about 5 % of faces). So with ``classifier.precision: auto`` (the default) an
int8 model is swapped for its float sibling ``<stem>_fp16.tflite`` (float16 weights, float32
arithmetic on the CPU) on such CPUs, when that file and its manifest are there.

Pure Python: reads ``/proc/cpuinfo`` once; no new dependency.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

FLOAT_SUFFIX = "_fp16"
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # x86: 8-bit dot products


@dataclass(frozen=True)
class Choice:
    """The model file to run and why (for the log, ``emotiond check`` and stats)."""

    path: Path
    reason: str | None = None  # None: the configured file, nothing to explain


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first processor in a ``/proc/cpuinfo`` text (x86 ``flags``,
    Arm ``Features``)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


@functools.lru_cache(maxsize=1)
def _host() -> tuple[str, frozenset[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    return platform.machine().lower(), frozenset(cpu_flags(text))


def float_is_faster(machine: str, flags: set[str] | frozenset[str]) -> tuple[bool, str]:
    """Whether XNNPACK's float kernels beat its int8 ones on this CPU, and the evidence."""
    if machine not in ("x86_64", "amd64", "i686", "i386"):
        return False, f"{machine or 'this CPU'}: int8 is the fast path"
    dots = sorted(f for f in INT8_DOT_FLAGS if f in flags)
    if dots:
        return False, f"x86 with {', '.join(dots)}: int8 is the fast path"
    if "avx2" in flags and "fma" in flags:
        return True, "x86 with AVX2/FMA but no VNNI/AMX: float kernels are faster than int8 here"
    return False, "x86 without AVX2/FMA: int8 is the fast path"


def choose_model(model: Path, precision: str, delegate: str, quantization: str,
                 host: tuple[str, frozenset[str]] | None = None) -> Choice:
    """The file ``classifier.precision`` runs for the configured ``model`` (whose manifest
    says ``quantization``)."""
    if precision != "auto" or delegate != "cpu" or quantization != "int8":
        return Choice(model)
    machine, flags = host if host is not None else _host()
    faster, why = float_is_faster(machine, flags)
    if not faster:
        return Choice(model)
    sibling = model.with_name(model.stem + FLOAT_SUFFIX + model.suffix)
    if not (sibling.is_file() and sibling.with_suffix(".json").is_file()):
        return Choice(model, f"{why}, but {sibling.name} is not beside {model.name}: int8 runs")
    return Choice(sibling, f"{sibling.name} instead of {model.name}: {why}")
