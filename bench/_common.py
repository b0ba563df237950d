"""Helpers shared by the bench scripts: paths, one-core pinning, percentiles, tables, machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
VIDEOS = SHARED / "videos"
TALKING_HEAD = VIDEOS / "talking_head_640x360.mp4"
STREET = VIDEOS / "street_multiface_1920x1080.mp4"
PEER_MODEL = SHARED / "peers" / "fer2013_mini_XCEPTION.102-0.66.hdf5"
IMAGENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def pin_to_core(core: int = 0) -> str:
    """Run this process (and the threads it starts later) on one core, like `taskset -c 0`."""
    os.sched_setaffinity(0, {core})
    return f"pinned to core {core} (os.sched_setaffinity)"


def require(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        sys.exit(f"shared data not found: {', '.join(missing)} (the bench reads ../shared/data beside the repo)")


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def p50_p99(values) -> str:
    return f"{pct(values, 50):7.2f} / {pct(values, 99):7.2f}" if len(values) else "      - /       -"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def cpu_flags() -> str:
    """The SIMD flags LiteRT's XNNPACK kernels care about, from /proc/cpuinfo (Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            have = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith(("flags", "Features"))), [])
    except OSError:
        return "CPU flags: unknown"
    wanted = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8",
              "asimddp", "i8mm")
    return "CPU flags: " + (" ".join(w for w in wanted if w in have) or "none of " + " ".join(wanted))


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a running process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def machine() -> str:
    """One line: CPU model, core count, load average (other jobs share this machine)."""
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for ln in out.splitlines():
            if ln.startswith("Model name:"):
                model = ln.split(":", 1)[1].strip()
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{time.strftime('%Y-%m-%d %H:%M')} | {model}, {os.cpu_count()} CPUs | Python {platform.python_version()} | "
            f"load avg {load}")
