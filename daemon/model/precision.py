"""Which variant of the emotion model a CPU runs faster: int8, or the float model beside it.

XNNPACK's int8 kernels are fast where the CPU has 8-bit dot products: x86 with VNNI
(``avx512_vnni``, ``avx_vnni``) or AMX (earlier sessions' Xeon: int8 about 3× float), and Arm
with ``asimddp`` (SDOT/UDOT, Armv8.2+: Cortex-A55/A76/A78, Neoverse, Raspberry Pi 5, Jetson Orin)
or ``i8mm`` (SMMLA, Armv8.6+). Without them the int8 kernels widen every product to 16 bits
before accumulating: on x86 (AVX2, no VNNI) that made them slower than float here (below), and
Arm without dot products (Cortex-A53/A72: Raspberry Pi 3/4, i.MX 8M) is the same case (e.g.
OpenCV's int8 YuNet runs 67 ms against 59 ms in float on one Pi 4 core, in a public comparison),
so those CPUs run the float sibling too. ``fphp``/``asimdhp`` (float16 arithmetic) do not
change the choice: LiteRT's CPU interpreter runs a float16-weight model in float32 (it
dequantises the weights at load), so the float sibling costs the same with or without them.
On Linux/Arm the features are the kernel's ``Features`` line, or its hardware capabilities
(``getauxval``) where /proc/cpuinfo has none (a container under emulation sees the host's).
On an x86 CPU with AVX2 and FMA but no VNNI
(most x86 edge boxes and older servers), its float32 kernels are *faster* than its int8 ones:
measured on an AMD EPYC (AVX2, 1 thread, a face and its mirror per invoke, side by side), one
MobileNetV2-96 3.08 ms in float against 3.79 ms in int8, and the three-network ensemble 9.7 ms
against 11.0 ms (`bench/precision.py`). The float model is also the one the figures were measured on (int8
changes the class of about 5 % of faces). So with ``classifier.precision: auto`` (the default) an
int8 model is swapped for its float sibling ``<stem>_fp16.tflite`` (float16 weights, float32
arithmetic on the CPU) on such CPUs, when that file and its manifest are there; where they are
not (``emotion_ferplus.tflite`` ships int8 only) the int8 file runs and the reason says why.
``precision: float`` asks for the sibling on every CPU and is an error when it is missing;
``precision: file`` runs the file as named.

Pure Python: reads ``/proc/cpuinfo`` once (and ``getauxval`` through ctypes on Arm); no new
dependency. The arm64 check (``scripts/arm64-check.sh``) shows the choice on emulated CPUs of
both kinds (qemu's ``cortex-a72`` and ``neoverse-n1``).
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

FLOAT_SUFFIX = "_fp16"
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # x86: 8-bit dot products
ARM_INT8_FLAGS = ("asimddp", "i8mm")  # Arm: 8-bit dot products, 8-bit matrix multiply
ARM_MACHINES = ("aarch64", "arm64", "armv8l", "armv8b")
# Linux arm64 hardware capabilities (asm/hwcap.h): bit -> the Features name, AT_HWCAP and AT_HWCAP2
_HWCAP = {0: "fp", 1: "asimd", 9: "fphp", 10: "asimdhp", 20: "asimddp", 22: "sve"}
_HWCAP2 = {1: "sve2", 13: "i8mm", 14: "bf16"}
_AT_HWCAP, _AT_HWCAP2 = 16, 26


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


def hwcap_flags(hwcap: int, hwcap2: int) -> set[str]:
    """Arm feature names from the kernel's AT_HWCAP and AT_HWCAP2 words."""
    return ({name for bit, name in _HWCAP.items() if hwcap >> bit & 1}
            | {name for bit, name in _HWCAP2.items() if hwcap2 >> bit & 1})


def _auxv_flags() -> set[str]:
    try:
        import ctypes

        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype = ctypes.c_ulong
        getauxval.argtypes = [ctypes.c_ulong]
        return hwcap_flags(int(getauxval(_AT_HWCAP)), int(getauxval(_AT_HWCAP2)))
    except (OSError, AttributeError):  # not glibc/musl, or no getauxval
        return set()


@functools.lru_cache(maxsize=1)
def _host() -> tuple[str, frozenset[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    machine, flags = platform.machine().lower(), cpu_flags(text)
    if machine in ARM_MACHINES and "asimd" not in flags:
        flags = _auxv_flags() or flags  # no Arm Features line: ask the kernel
    return machine, frozenset(flags)


def float_is_faster(machine: str, flags: set[str] | frozenset[str]) -> tuple[bool, str]:
    """Whether XNNPACK's float kernels beat its int8 ones on this CPU, and the evidence."""
    if machine in ARM_MACHINES:
        dots = sorted(f for f in ARM_INT8_FLAGS if f in flags)
        if dots:
            return False, f"Arm with {', '.join(dots)}: int8 is the fast path"
        return True, "Arm without asimddp/i8mm (no 8-bit dot products): float kernels are faster than int8 here"
    if machine not in ("x86_64", "amd64", "i686", "i386"):
        return False, f"{machine or 'this CPU'}: int8 is the fast path"
    dots = sorted(f for f in INT8_DOT_FLAGS if f in flags)
    if dots:
        return False, f"x86 with {', '.join(dots)}: int8 is the fast path"
    if "avx2" in flags and "fma" in flags:
        return True, "x86 with AVX2/FMA but no VNNI/AMX: float kernels are faster than int8 here"
    return False, "x86 without AVX2/FMA: int8 is the fast path"


class NoFloatSibling(ValueError):
    """``classifier.precision: float`` for an int8 model that has no float sibling beside it."""


def float_sibling(model: Path) -> Path:
    """The float model made from the same weights as the int8 ``model``: ``<stem>_fp16.tflite``
    in the same folder (it may not exist: ``emotion_ferplus.tflite`` ships int8 only)."""
    return model.with_name(model.stem + FLOAT_SUFFIX + model.suffix)


def _has_sibling(sibling: Path) -> bool:
    return sibling.is_file() and sibling.with_suffix(".json").is_file()  # the manifest makes it runnable


def choose_model(model: Path, precision: str, delegate: str, quantization: str,
                 host: tuple[str, frozenset[str]] | None = None) -> Choice:
    """The file ``classifier.precision`` runs for the configured ``model`` (whose manifest
    says ``quantization``): "auto" picks by the CPU and falls back to the int8 file, with the
    reason, when it has no float sibling; "float" insists on float and raises NoFloatSibling,
    naming the missing file, rather than run int8 that was not asked for."""
    if precision == "float":
        if quantization != "int8":  # already a float model
            return Choice(model)
        sibling = float_sibling(model)
        if not _has_sibling(sibling):
            raise NoFloatSibling(
                f"classifier.precision float: {model.name} is int8 and its float sibling {sibling} "
                f"(with {sibling.with_suffix('.json').name}) is not there; use precision auto or file "
                f"to run {model.name}, or a model that ships a float sibling")
        return Choice(sibling, f"{sibling.name} instead of {model.name}: precision float")
    if precision != "auto" or delegate != "cpu" or quantization != "int8":
        return Choice(model)
    machine, flags = host if host is not None else _host()
    faster, why = float_is_faster(machine, flags)
    if not faster:
        return Choice(model)
    sibling = float_sibling(model)
    if not _has_sibling(sibling):
        return Choice(model, f"{why}, but {sibling.name} is not beside {model.name}: int8 runs")
    return Choice(sibling, f"{sibling.name} instead of {model.name}: {why}")
