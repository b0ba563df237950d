"""One processed frame: detect (every Nth frame) → track → classify (rate-limited per face,
see ``schedule``) → smooth → face signals.

Detection frames search around every tracked face (a ~100x100 px search) and run one part of
a whole-frame scan for new faces, split so that no frame pays for all of it: the full scan is
spread over several detection rounds (the detector says how many). With nothing tracked, every
detection frame scans the whole frame. With ``search_near_tracks`` off (many small faces) the
rounds only run the spread scan, and tell the tracker which faces each round could have seen.
See bench/RESULTS.md for the profiles behind this.

Classification is bounded per frame whatever the number of faces (``schedule``): each face at
most ``classifier.max_rate_hz`` times a second, round-robin, and at most
``pipeline.classify_per_frame`` faces a frame; faces too small or too blurred to read are
tracked and published without an emotion, and counted.

The pipeline takes its own config sections (``detector``, ``tracker``, ``classifier``, the face
signals' sections, ``pipeline``), never the daemon's whole config and never the runtime.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import cv2
import numpy as np

from ..model.config import ClassifierConfig
from ..model.tflite import TfliteModel
from ..stats import PipelineStats
from ..types import Box, Detection, FaceState, Frame, Observation
from .config import PipelineConfig
from .detectors import make_detector
from .detectors.base import BaseDetectorConfig, drop_duplicates
from .schedule import ClassifySchedule
from .signals import SIGNALS, SignalConfig, build_signals
from .tracking import Track, Tracker, TrackerConfig
from .zones import ZoneConfig

_RATE_SLACK_S = 0.004
SHARPNESS_PX = 48  # faces are compared for blur at the classifier's input size (FER-2013: 48x48)


def sharpness(grey_face: np.ndarray) -> float:
    """Variance of the Laplacian of a grey face resized to SHARPNESS_PX: low = blurred."""
    face = cv2.resize(grey_face, (SHARPNESS_PX, SHARPNESS_PX), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(face, cv2.CV_32F).var())


class Pipeline:
    def __init__(self, *, detector: BaseDetectorConfig, tracker: TrackerConfig, classifier: ClassifierConfig,
                 signals: Mapping[str, SignalConfig], options: PipelineConfig, stats: PipelineStats | None = None,
                 zones: Mapping[str, ZoneConfig] | None = None) -> None:
        if options.opencv_threads:
            cv2.setNumThreads(options.opencv_threads)
        self.detector = make_detector(detector)
        self.every_n = max(1, detector.every_n)
        self.scan_parts = max(1, self.detector.scan_parts(self.every_n))
        self.search_near = detector.search_near_tracks
        self._part = 0
        self.tracker = Tracker(tracker, zones)
        self.model = TfliteModel.from_config(classifier)
        self.labels: tuple[str, ...] = tuple(self.model.labels)
        self._schedule_args = (classifier.max_rate_hz, options.classify_per_frame)
        self.schedule = ClassifySchedule(*self._schedule_args)
        self.signals = build_signals(signals, threads=classifier.threads)
        # A signal's last reading per face (capture time, value), for those with a max_hz.
        self._last: dict[str, dict[int, tuple[float, Any]]] = {s.name: {} for s in self.signals}
        self.options = options
        self.max_faces = options.max_faces
        self.stats = stats or PipelineStats()
        self.stage: tuple[str, float] | None = None
        self._n = 0

    def forget(self) -> None:
        """Start the next frame as if it were the first: no tracks, no classification history,
        no carried signal readings (``analyze`` on unrelated photos; track ids start again, and a
        photo must never carry another one's reading)."""
        self.tracker = Tracker(self.tracker.cfg, self.tracker.zones)
        self.schedule = ClassifySchedule(*self._schedule_args)
        self._last = {name: {} for name in self._last}
        self._n = self._part = 0  # the next frame is a first one: detection, and a whole scan
        for signal in self.signals:
            signal.forget()

    @classmethod
    def from_config(cls, cfg: Any, stats: PipelineStats | None = None) -> Pipeline:
        """The pipeline of a daemon config: takes the sections it needs, by name."""
        return cls(detector=cfg.detector, tracker=cfg.tracker, classifier=cfg.classifier,
                   signals={s.config_key: getattr(cfg, s.config_key) for s in SIGNALS},
                   options=cfg.pipeline, stats=stats, zones=cfg.zones)

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

    def _detect(self, image: np.ndarray) -> tuple[list[Detection], Callable[[Box], bool] | None]:
        """This round's detections, and which tracked faces the round could have seen (None: all)."""
        tracked = [tr.box for tr in self.tracker.tracks]
        part, parts = self._part, self.scan_parts
        if not self.search_near:
            if self._n == 0:  # the first frame: one whole scan, so faces in view at start are not late
                return self.detector.detect(image), None
            # The spread scan, plus a search around each new (tentative) face, so that it is
            # confirmed on the next round instead of a whole scan later.
            self._part = (part + 1) % parts
            hw = image.shape[:2]
            new = [tr.box for tr in self.tracker.tracks if not tr.confirmed]
            found = self.detector.detect_part(image, part, parts)
            if new:
                found = drop_duplicates(sorted(found + self.detector.detect_near(image, new), key=lambda d: -d.score))
            searched = set(new)
            return found, lambda box: box in searched or self.detector.covers(part, parts, box, hw)
        if not tracked:
            self._part = 0
            return self.detector.detect(image), None
        found = self.detector.detect_near(image, tracked)
        found += self.detector.detect_part(image, part, parts)
        self._part = (part + 1) % parts
        return drop_duplicates(found), None

    def _readable(self, image: np.ndarray, tr: Track) -> bool:
        """Big and sharp enough to classify; counts the reason when not."""
        x, y, w, h = tr.box
        if w < self.options.min_face_px or w < 2 or h < 2:
            self.stats.faces_skipped["small"] += 1
            return False
        if self.options.min_sharpness > 0:
            face = image[y : y + h, x : x + w]
            if face.ndim == 3:
                face = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
            if face.size == 0 or sharpness(face) < self.options.min_sharpness:
                self.stats.faces_skipped["blurry"] += 1
                return False
        return True

    def _readable_tracks(self, image: np.ndarray, tracks: list[Track]) -> list[Track]:
        """The tracks big and sharp enough to classify; each detection is judged once (a
        held or predicted box brings no new pixels), and each refusal is counted."""
        out = []
        for tr in tracks:
            verdict = tr.extra.get("readable")
            if verdict is None or verdict[0] != tr.hits:
                verdict = (tr.hits, self._readable(image, tr))
                tr.extra["readable"] = verdict
            if verdict[1]:
                out.append(tr)
        return out

    def process(self, frame: Frame) -> Observation:
        t_start = time.perf_counter()
        detections, covered = None, None
        if self._n % self.every_n == 0:
            t0 = self._enter("detect")
            detections, covered = self._detect(frame.image)
            self._leave("detect", t0)
            skipped = getattr(self.detector, "dropped", 0)
            if skipped:
                self.stats.faces_skipped["not_a_face"] += skipped
                self.detector.dropped = 0
        self._n += 1

        t0 = time.perf_counter()
        frame_hw = frame.image.shape[:2]
        tracks = self.tracker.update(detections, frame.t_capture, frame_hw, covered)
        if len(tracks) > self.max_faces:
            tracks = sorted(tracks, key=lambda tr: tr.box[2] * tr.box[3], reverse=True)[: self.max_faces]
        self.stats.record("track", (time.perf_counter() - t0) * 1000.0)

        faces: list[FaceState] = []
        if tracks:
            alive = {tr.id for tr in self.tracker.tracks if tr.confirmed}
            # Detection every Nth frame: keep rate-limited classification off those frames.
            busy = detections is not None and self.every_n > 1
            due = self.schedule.due(self._readable_tracks(frame.image, tracks), frame.t_capture, alive, busy)
            if due:
                t0 = self._enter("classify")
                probs = self.model.classify(frame.image, [tr.box for tr in due])
                self._leave("classify", t0)
                for tr, p in zip(due, probs):
                    self.tracker.smooth(tr, p)
            primary = self.tracker.primary
            for tr in tracks:
                smoothed = tr.probs  # held between classifications; None: not classified yet
                k = int(np.argmax(smoothed)) if smoothed is not None else -1
                faces.append(
                    FaceState(
                        track_id=tr.id,
                        box=tr.box,
                        probs=smoothed,
                        label=self.labels[k] if k >= 0 else None,
                        confidence=float(smoothed[k]) if k >= 0 else 0.0,
                        primary=tr is primary,
                        landmarks=tr.landmarks,
                    )
                )
            for signal in self.signals:
                hz = getattr(getattr(signal, "cfg", None), "max_hz", 0.0)
                last, kept = self._last[signal.name], {}
                for face in faces:
                    if face.primary or not signal.primary_only:
                        prev = last.get(face.track_id)
                        # the slack keeps 15 Hz on a 30 frames/s camera every other frame despite jitter
                        if hz and prev is not None and frame.t_capture - prev[0] < 1.0 / hz - _RATE_SLACK_S:
                            face.signals[signal.name] = prev[1]
                            kept[face.track_id] = prev
                            continue
                        t0 = self._enter(signal.stage)
                        value = face.signals[signal.name] = signal.measure(frame.image, face)
                        self._leave(signal.stage, t0)
                        kept[face.track_id] = (frame.t_capture, value)
                if hz:
                    self._last[signal.name] = kept  # faces gone (or no longer primary) are forgotten
        self.stats.frames += 1
        self.stats.faces += len(faces)
        self.stats.record("total", (time.perf_counter() - t_start) * 1000.0)
        return Observation(t=frame.t_capture, t_wall=frame.t_wall, faces=faces, labels=self.labels, frame_hw=frame_hw)
