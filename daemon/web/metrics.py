"""Prometheus metrics of a running daemon, read from its own counters at scrape time.

A custom collector instead of prometheus-client's Counter/Histogram objects: the pipeline
already counts frames and keeps a ring of the last 512 latencies per stage (for the MQTT stats
topic), so nothing extra runs per frame and nothing is computed unless someone scrapes. The
per-stage latencies are exposed as *gauge histograms*: the distribution of the samples in the
ring (the most recent ones), which can shrink as well as grow, unlike a cumulative histogram.
``histogram_quantile()`` works on them as usual.

Imported only when the endpoint is enabled: prometheus-client is an optional dependency.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily, Metric

from .. import __version__
from ..stats import Ring
from .view import WebView

# The classic text format, which every Prometheus version reads (the names here are plain
# ASCII, so nothing needs the UTF-8 names of format 1.0.0, the newer clients' default).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
STAGE_HELP = ("time per stage over the most recent samples: detect, track, classify (emotion-model inference), "
              "eyes, rules, total (one frame through the pipeline), latency (capture to observation)")


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """(body, content type) in the Prometheus text format."""
    return generate_latest(registry), CONTENT_TYPE


def ring_buckets(ring: Ring) -> tuple[list[tuple[str, float]], float]:
    """Cumulative bucket counts (seconds) and the sum of the samples now in ``ring`` (ms)."""
    k = min(ring.n, ring.buf.shape[0])
    values = np.sort(ring.buf[:k]) / 1000.0  # a copy: the pipeline thread keeps writing the ring
    counts = np.searchsorted(values, LATENCY_BUCKETS_S, side="right")
    buckets = [(repr(le), float(c)) for le, c in zip(LATENCY_BUCKETS_S, counts)] + [("+Inf", float(k))]
    return buckets, float(values.sum())


class DaemonCollector:
    """Collects on every scrape from a ``WebView`` (the runtime's snapshot and counters), so it
    follows a reload without being told."""

    def __init__(self, view: WebView) -> None:
        self.view = view
        self._fps_t, self._fps_frames = view.stats.started, 0

    def _fps(self, frames: int) -> float:
        """Frames per second since the previous scrape. Its own window: ``PipelineStats.fps()``
        restarts the window of the MQTT stats topic, which a scrape must not disturb."""
        now = time.monotonic()
        fps = (frames - self._fps_frames) / (now - self._fps_t) if now > self._fps_t else 0.0
        self._fps_t, self._fps_frames = now, frames
        return fps

    def collect(self) -> Iterator[Metric]:
        view, stats = self.view, self.view.stats
        snap = view.snapshot()
        frames = stats.frames
        yield CounterMetricFamily("emotiond_frames", "frames processed by the pipeline", value=frames)
        yield GaugeMetricFamily("emotiond_fps", "frames processed per second since the previous scrape", value=self._fps(frames))
        yield CounterMetricFamily("emotiond_frames_skipped", "frames the camera delivered that the pipeline never took "
                                  "(it always takes the newest); restarts at a reload", value=snap["skipped"])
        yield CounterMetricFamily("emotiond_frames_rejected", "frames the source could not decode or delivered unusable "
                                  "(empty, too small, odd pixel type): skipped; restarts at a reload", value=snap.get("frames_rejected", 0))
        yield GaugeMetricFamily("emotiond_faces", "faces in the latest processed frame", value=snap["faces"])
        yield CounterMetricFamily("emotiond_face_observations", "faces summed over processed frames", value=stats.faces)
        skipped = CounterMetricFamily("emotiond_faces_skipped", "faces not classified (small, blurry) and detections "
                                      "dropped as not faces (not_a_face)", labels=["reason"])
        for reason, n in stats.faces_skipped.items():
            skipped.add_metric([reason], n)
        yield skipped
        stages = GaugeHistogramMetricFamily("emotiond_stage_latency_seconds", STAGE_HELP, labels=["stage"])
        for name, ring in list(stats.stages.items()):
            if ring.n:
                buckets, total = ring_buckets(ring)
                stages.add_metric([name], buckets, total)
        yield stages
        yield GaugeMetricFamily("emotiond_camera_online", "1 while the source delivers frames", value=int(snap["camera_online"]))
        ok, _ = view.healthy()
        yield GaugeMetricFamily("emotiond_healthy", "1 while the pipeline and capture threads make progress (as /healthz)", value=int(ok))
        yield GaugeMetricFamily("emotiond_broker_connected", "1 while connected to the MQTT broker", value=int(snap["broker_connected"]))
        yield CounterMetricFamily("emotiond_broker_failovers", "switches to another broker of mqtt.hosts",
                                  value=snap.get("broker_failovers", 0))
        yield GaugeMetricFamily("emotiond_outbox_backlog", "events stored and not yet acknowledged by the broker", value=snap["backlog"])
        yield CounterMetricFamily("emotiond_outbox_dropped", "events dropped because the outbox was full", value=snap.get("outbox_dropped", 0))
        info = GaugeMetricFamily("emotiond_model_info", "the emotion model and the delegate it runs on (value 1)",
                                 labels=["model", "quantization", "delegate", "version"])
        model = snap.get("model")
        if model:
            info.add_metric([model["model"], model["quantization"], model["delegate"], __version__], 1)
        yield info
        yield CounterMetricFamily("emotiond_delegate_fallbacks", "times the classifier's delegate (e.g. the GPU) failed "
                                  "after start and the CPU took over", value=(model or {}).get("delegate_fallbacks", 0))
