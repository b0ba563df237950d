"""Per-stage latency and throughput counters, cheap enough to update on every frame.

Each stage records into a fixed ring buffer (no allocation per frame); percentiles are computed
only when stats are published (every few seconds).
"""

from __future__ import annotations

import resource
import time

import numpy as np

# The core stages, always reported; face signals add their own stage (e.g. ``eyes``) on first use.
STAGES = ("detect", "track", "classify", "rules", "total", "latency")


class Ring:
    """The last ``size`` samples of one measurement, in milliseconds."""

    __slots__ = ("buf", "n")

    def __init__(self, size: int = 512) -> None:
        self.buf = np.zeros(size, dtype=np.float64)
        self.n = 0

    def add(self, ms: float) -> None:
        self.buf[self.n % self.buf.shape[0]] = ms
        self.n += 1

    def percentiles(self) -> dict[str, float] | None:
        k = min(self.n, self.buf.shape[0])
        if k == 0:
            return None
        p50, p99 = np.percentile(self.buf[:k], (50, 99))
        return {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}


class PipelineStats:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.stages = {name: Ring() for name in STAGES}
        self.frames = 0
        self.faces = 0
        self.detector_runs = 0  # detection rounds (a landmark-followed face needs few)
        # Faces seen but not classified, by reason (small, blurry), and detections dropped as
        # not being faces (not_a_face): counted, never silent.
        self.faces_skipped: dict[str, int] = {"small": 0, "blurry": 0, "not_a_face": 0}
        self._fps_t = self.started
        self._fps_frames = 0

    def record(self, stage: str, ms: float) -> None:
        ring = self.stages.get(stage)
        if ring is None:  # a stage named by a plug-in (a face signal): one ring from its first sample
            ring = self.stages[stage] = Ring()
        ring.add(ms)

    def fps(self) -> float:
        """Frames processed per second since the previous call."""
        now = time.monotonic()
        dt = now - self._fps_t
        fps = (self.frames - self._fps_frames) / dt if dt > 0 else 0.0
        self._fps_t, self._fps_frames = now, self.frames
        return round(fps, 2)

    def latency(self) -> dict[str, dict[str, float]]:
        # a copy: the pipeline thread adds a stage the first time it runs one (gaze, at its rate),
        # while a stats request on another thread reads them
        return {name: p for name, ring in list(self.stages.items()) if (p := ring.percentiles()) is not None}

    def uptime(self) -> float:
        return round(time.monotonic() - self.started, 1)


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        current = pages * resource.getpagesize() / 2**20
    except OSError:
        current = peak
    return round(current, 1), round(peak, 1)
