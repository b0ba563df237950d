"""One processed frame: detect (every Nth frame) → track → classify (rate-limited per face,
see ``schedule``) → smooth → face signals.

Detection frames search around every tracked face (a ~100x100 px search) and run one part of
a whole-frame scan for new faces, split by face size so that no frame pays for all of it: the
full scan is spread over ``full_scan_every_n`` frames. With nothing tracked, every detection
frame scans the whole frame. See bench/RESULTS.md for the profile behind this.

The pipeline takes its own config sections (``detector``, ``tracker``, ``classifier``, the face
signals' sections, ``pipeline``), never the daemon's whole config and never the runtime.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from ..model.config import ClassifierConfig
from ..model.tflite import TfliteModel
from ..stats import PipelineStats
from ..types import Detection, FaceState, Frame, Observation
from .config import PipelineConfig
from .detectors import make_detector
from .detectors.base import BaseDetectorConfig, drop_duplicates
from .schedule import ClassifySchedule
from .signals import SIGNALS, SignalConfig, build_signals
from .tracking import Tracker, TrackerConfig


class Pipeline:
    def __init__(self, *, detector: BaseDetectorConfig, tracker: TrackerConfig, classifier: ClassifierConfig,
                 signals: Mapping[str, SignalConfig], options: PipelineConfig, stats: PipelineStats | None = None) -> None:
        if options.opencv_threads:
            cv2.setNumThreads(options.opencv_threads)
        self.detector = make_detector(detector)
        self.every_n = max(1, detector.every_n)
        self.scan_parts = max(1, detector.full_scan_every_n // self.every_n)
        self._part = 0
        self.tracker = Tracker(tracker)
        self.model = TfliteModel.from_config(classifier)
        self.labels: tuple[str, ...] = tuple(self.model.labels)
        self.schedule = ClassifySchedule(classifier.max_rate_hz)
        self.signals = build_signals(signals, threads=classifier.threads)
        self.max_faces = options.max_faces
        self.stats = stats or PipelineStats()
        self.stage: tuple[str, float] | None = None
        self._n = 0

    @classmethod
    def from_config(cls, cfg: Any, stats: PipelineStats | None = None) -> Pipeline:
        """The pipeline of a daemon config: takes the sections it needs, by name."""
        return cls(detector=cfg.detector, tracker=cfg.tracker, classifier=cfg.classifier,
                   signals={s.config_key: getattr(cfg, s.config_key) for s in SIGNALS},
                   options=cfg.pipeline, stats=stats)

    @property
    def model_info(self) -> dict:
        """What runs, for logs, stats and metrics: model file, quantization, delegate in use."""
        return self.model.info()

    def _enter(self, name: str) -> float:
        t = time.perf_counter()
        self.stage = (name, time.monotonic())
        return t

    def _leave(self, name: str, t0: float) -> float:
        t = time.perf_counter()
        self.stats.record(name, (t - t0) * 1000.0)
        self.stage = None
        return t

    def _detect(self, image: np.ndarray) -> list[Detection]:
        tracked = [tr.box for tr in self.tracker.tracks]
        if not tracked:
            self._part = 0
            return self.detector.detect(image)
        found = self.detector.detect_near(image, tracked)
        found += self.detector.detect_part(image, self._part, self.scan_parts)
        self._part = (self._part + 1) % self.scan_parts
        return drop_duplicates(found)

    def process(self, frame: Frame) -> Observation:
        t_start = time.perf_counter()
        detections = None
        if self._n % self.every_n == 0:
            t0 = self._enter("detect")
            detections = self._detect(frame.image)
            self._leave("detect", t0)
        self._n += 1

        t0 = time.perf_counter()
        tracks = self.tracker.update(detections, frame.t_capture, frame.image.shape[:2])
        if len(tracks) > self.max_faces:
            tracks = sorted(tracks, key=lambda tr: tr.box[2] * tr.box[3], reverse=True)[: self.max_faces]
        self.stats.record("track", (time.perf_counter() - t0) * 1000.0)

        faces: list[FaceState] = []
        if tracks:
            due = self.schedule.due(tracks, frame.t_capture)
            if due:
                t0 = self._enter("classify")
                probs = self.model.classify(frame.image, [tr.box for tr in due])
                self._leave("classify", t0)
                for tr, p in zip(due, probs):
                    self.tracker.smooth(tr, p)
            primary = self.tracker.primary
            for tr in tracks:
                smoothed = tr.probs  # held between classifications
                k = int(np.argmax(smoothed))
                faces.append(
                    FaceState(
                        track_id=tr.id,
                        box=tr.box,
                        probs=smoothed,
                        label=self.labels[k],
                        confidence=float(smoothed[k]),
                        primary=tr is primary,
                        landmarks=tr.landmarks,
                    )
                )
            for signal in self.signals:
                for face in faces:
                    if face.primary or not signal.primary_only:
                        t0 = self._enter(signal.stage)
                        face.signals[signal.name] = signal.measure(frame.image, face)
                        self._leave(signal.stage, t0)
        self.stats.frames += 1
        self.stats.faces += len(faces)
        self.stats.record("total", (time.perf_counter() - t_start) * 1000.0)
        return Observation(t=frame.t_capture, t_wall=frame.t_wall, faces=faces, labels=self.labels)
