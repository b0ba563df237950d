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
tracked and published without an emotion, and counted. A face tilted by 8° or more is turned
upright by its track's eye points before it is classified (``classifier.upright``).

The primary face (a driver) is followed by its own landmarks (``tracker.follow_landmarks``), as
MediaPipe's face pipeline does: the FaceMesh that the head_pose signal reads on frame N gives the
face's box on frame N (and, through the track's motion filter, where to crop on frame N+1), and
the detector stops its rounds while the mesh holds the face. It runs again on the next frame
when the mesh loses the face (presence times rigid fit below ``follow_min_confidence``, or a
mesh box that jumped or changed size), every ``rescan_s`` on the whole frame (a new face, a
driver change), and around any other tracked face (a passenger) on its usual rounds.

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
from ..model.preprocess import eye_roll
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
# Following a face by its landmarks: the detector-like box of a FaceMesh, in units of the mesh's
# size r (the RMS 3-D radius of its rigid upper-face points, which turning the head does not
# change) around their 2-D centre: centre offset (x, y) and width, height, all over r. The x
# offset follows the head's yaw (the far side of a turned face is hidden; YuNet's box keeps to
# the visible side): MESH_YAW_SHIFT r per degree. Medians over 472 frames of six clips (the
# talking head, the webcam, four real drivers) where YuNet matched the face: w/r 2.20-2.35 per
# clip, also at 45 degrees of yaw. Each track refines the fit from its own detections.
MESH_BOX = (0.0, 0.30, 2.25, 3.09)
MESH_YAW_SHIFT = -0.0085
MESH_BOX_EMA = 0.6
FOLLOW_MIN_IOU = 0.4  # the mesh's box against the box it was read in: lower, the mesh jumped, not the face
FOLLOW_SCALE = (0.7, 1.4)  # the same for its width
# FaceMesh points for YuNet's five landmarks (right eye, left eye, nose, mouth right, mouth
# left; "right" is the person's, image left): eye centres as the mean of corners and mid lids.
MESH_FIVE = ((33, 133, 159, 145), (362, 263, 386, 374), (1,), (61,), (291,))
SHARPNESS_PX = 48  # faces are compared for blur at the classifier's input size (FER-2013: 48x48)


def box_iou(a: Box, b: Box) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def mesh_frame(mesh: np.ndarray) -> tuple[float, float, float]:
    """(cx, cy, r): the 2-D centre of a mesh's rigid points and their RMS 3-D radius."""
    from ..model.face_mesh import RIGID_IDX

    p = mesh[RIGID_IDX].astype(np.float64)
    c = p.mean(0)
    return float(c[0]), float(c[1]), max(float(np.sqrt(((p - c) ** 2).sum(1).mean())), 1e-6)


def mesh_box(mesh: np.ndarray, yaw: float, fit: tuple[float, float, float, float], frame_hw: tuple[int, int]) -> Box:
    """The detector-like box of a mesh (``fit``: see MESH_BOX), clamped to the frame."""
    cx, cy, r = mesh_frame(mesh)
    ox, oy, sw, sh = fit
    w, h = sw * r, sh * r
    x, y = cx + (ox + MESH_YAW_SHIFT * yaw) * r - w / 2.0, cy + oy * r - h / 2.0
    fh, fw = frame_hw
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(fw, int(round(x + w))), min(fh, int(round(y + h)))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def mesh_fit(box: Box, mesh: np.ndarray, yaw: float) -> tuple[float, float, float, float]:
    """A detection's box relative to the mesh read in it (MESH_BOX's terms)."""
    cx, cy, r = mesh_frame(mesh)
    x, y, w, h = box
    return (x + w / 2.0 - cx) / r - MESH_YAW_SHIFT * yaw, (y + h / 2.0 - cy) / r, w / r, h / r


def mesh_five(mesh: np.ndarray) -> np.ndarray:
    """(5, 2) float32 landmarks in YuNet's order, from a FaceMesh."""
    return np.array([mesh[list(idx), :2].mean(0) for idx in MESH_FIVE], np.float32)


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
        self.upright = classifier.upright
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
        # Landmark following: on for a primary face with head_pose measured on it.
        self.follow = tracker.follow_landmarks and tracker.primary and any(sig.name == "head_pose" for sig in self.signals)
        self.rescan_s = tracker.rescan_s
        self.follow_min_confidence = tracker.follow_min_confidence
        self._followed: Track | None = None  # the primary track, placed by its own mesh on the last frame
        self._lost = False  # the mesh lost the face it followed on the last frame: detect on this one
        self._t_scan: float | None = None  # capture time of the last completed whole-frame scan
        self._search_turn = True  # no face tracked: the next round is the plain scan (then the finer one)

    def forget(self) -> None:
        """Start the next frame as if it were the first: no tracks, no classification history,
        no carried signal readings (``analyze`` on unrelated photos; track ids start again, and a
        photo must never carry another one's reading)."""
        self.tracker = Tracker(self.tracker.cfg, self.tracker.zones)
        self.schedule = ClassifySchedule(*self._schedule_args)
        self._last = {name: {} for name in self._last}
        self._n = self._part = 0  # the next frame is a first one: detection, and a whole scan
        self._followed, self._lost, self._t_scan = None, False, None
        self._search_turn = True
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
            # No face: the plain scan and a finer one take turns (a dim or distant face is found
            # by the finer one; the plain one stays as quick to find a face that walks in).
            self._part = 0
            self._search_turn = not self._search_turn
            return (self.detector.detect_search(image) if self._search_turn else self.detector.detect(image)), None
        found = self.detector.detect_near(image, tracked)
        found += self.detector.detect_part(image, part, parts)
        self._part = (part + 1) % parts
        return drop_duplicates(found), None

    def _plan(self, t: float) -> str | None:
        """This frame's detection: None, "round" (the usual round) or "others" (only around the
        tracked faces other than the one followed by its landmarks)."""
        slot = self._n % self.every_n == 0
        if not self.follow:
            return "round" if slot else None
        if self._lost:  # the mesh lost the face on the last frame: look for it now
            self._lost = False
            return "round"
        followed = self._followed
        if followed is None or followed not in self.tracker.tracks:
            return "round" if slot else None
        if self._t_scan is None or t - self._t_scan >= self.rescan_s:
            return "round"  # the periodic whole-frame scan: a new face, a driver change
        if not slot:
            return None
        if any(not tr.confirmed for tr in self.tracker.tracks):
            return "round"  # a new face waits for its confirming round
        return "others" if len(self.tracker.tracks) > 1 else None

    def _detect_others(self, image: np.ndarray) -> tuple[list[Detection], Callable[[Box], bool]]:
        """Search around every tracked face but the followed one; only those can count a miss."""
        followed = self._followed
        others = [tr.box for tr in self.tracker.tracks if tr is not followed]
        return self.detector.detect_near(image, others), lambda box: followed is None or box != followed.box

    def _follow_mesh(self, primary: Track | None, face: FaceState | None, t: float, frame_hw: tuple[int, int]) -> None:
        """After the face signals: place the primary track by the mesh head_pose read on it in this
        frame, or note that the mesh lost the face (the detector then runs on the next frame)."""
        was, self._followed = self._followed, None
        mesh = face.mesh if face is not None else None
        pose = face.signals.get("head_pose") if face is not None else None
        ok = primary is not None and mesh is not None and isinstance(pose, dict) and (
            pose.get("confidence") or 0.0) >= self.follow_min_confidence
        if ok:
            fit = primary.extra.get("mesh_box", MESH_BOX)
            if primary.fresh:  # a detection placed it in this frame: learn this face's box from it
                new = mesh_fit(primary.box, mesh, pose.get("yaw") or 0.0)
                primary.extra["mesh_box"] = tuple(a + MESH_BOX_EMA * (b - a) for a, b in zip(fit, new))
            else:
                box = mesh_box(mesh, pose.get("yaw") or 0.0, fit, frame_hw)
                ok = box_iou(box, face.box) >= FOLLOW_MIN_IOU and FOLLOW_SCALE[0] <= box[2] / max(face.box[2], 1) <= FOLLOW_SCALE[1]
                if ok:
                    self.tracker.follow(primary, box, mesh_five(mesh), t)
                    face.box = box  # published where the mesh found it in this frame, not where it was expected
        if ok:
            self._followed = primary
        elif was is not None:
            self._lost = True

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
            if verdict is None or verdict[0] != tr.updates:
                verdict = (tr.updates, self._readable(image, tr))
                tr.extra["readable"] = verdict
            if verdict[1]:
                out.append(tr)
        return out

    def process(self, frame: Frame) -> Observation:
        t_start = time.perf_counter()
        detections, covered = None, None
        plan = self._plan(frame.t_capture)
        if plan is not None:
            t0 = self._enter("detect")
            if plan == "round":
                detections, covered = self._detect(frame.image)
                if self._part == 0:
                    self._t_scan = frame.t_capture
            else:
                detections, covered = self._detect_others(frame.image)
            self._leave("detect", t0)
            self.stats.detector_runs += 1
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
        primary = None
        if tracks:
            alive = {tr.id for tr in self.tracker.tracks if tr.confirmed}
            # Detection every Nth frame: keep rate-limited classification off those frames.
            busy = detections is not None and self.every_n > 1
            due = self.schedule.due(self._readable_tracks(frame.image, tracks), frame.t_capture, alive, busy)
            if due:
                t0 = self._enter("classify")
                rolls = [eye_roll(tr.landmarks) for tr in due] if self.upright else None
                probs = self.model.classify(frame.image, [tr.box for tr in due], rolls, points=[tr.landmarks for tr in due])
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
        if self.follow:
            face = next((f for f in faces if f.primary), None)
            self._follow_mesh(primary, face, frame.t_capture, frame_hw)
        self.stats.frames += 1
        self.stats.faces += len(faces)
        self.stats.record("total", (time.perf_counter() - t_start) * 1000.0)
        return Observation(t=frame.t_capture, t_wall=frame.t_wall, faces=faces, labels=self.labels, frame_hw=frame_hw)
