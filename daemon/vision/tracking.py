"""Face tracking: stable ids through crossings and short occlusions, smoothed probabilities per
face, the primary face.

ByteTrack's scheme, sized for faces on an edge CPU:

* every track has a constant-velocity Kalman filter (``motion.BoxMotion``) that predicts its
  box on every frame, so association compares detections with where a face *should* be now,
  not where it was one or more detection rounds ago (a walking shopper's small face moves
  more than its own width between two detection rounds);
* association runs in two stages: confident detections first (IoU with the predicted boxes),
  then the remaining confirmed tracks take low-score detections (a face turning away, half
  hidden or blurred keeps its id instead of being dropped and reborn). Low-score detections
  never start a track, which is what keeps flickering false faces out;
* a new track is *tentative* until it has been matched in ``confirm_hits`` detection rounds;
  only confirmed tracks get an id, are published and counted. A tentative track that one
  round misses is dropped;
* a confirmed track that goes unmatched is *lost*: it keeps being predicted and published for
  ``max_missed`` rounds, then ends.

A detection round may search only part of the frame (a band of it, or only large faces): the
pipeline passes ``covered``, and only tracks the round could have seen count a miss.

Matching is greedy on IoU (best pair first). With tens of faces the greedy result equals the
optimal (Hungarian) assignment in all but contrived overlaps, at one NumPy matrix and no SciPy
on the device. OpenCV's Kalman filter does the filter algebra; nothing else here needs a
library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..configbase import Section
from ..types import Box, Detection
from .motion import BoxMotion
from .zones import ZoneConfig, centre_of, rect_zone

LOW_SCORE_IOU = 0.5  # second stage: a low-score detection must overlap well (ByteTrack's value)
# Boxes are compared grown by this fraction of their size on each side ("buffered IoU", as in
# C-BIoU, Yang et al. 2023): a 20-px face that walks its own width between two detection rounds
# no longer overlaps its prediction at all, but its grown box still does.
IOU_BUFFER = 0.3
LOST_VELOCITY_DAMPING = 0.5  # per missed round


class TrackerConfig(Section):
    iou_threshold: float = Field(0.3, gt=0.0, lt=1.0, title="least overlap (IoU) of a detection with a track's predicted box to continue it")
    high_score: float = Field(
        0.6, ge=0.0, le=1.0,
        title="detections scoring at least this start tracks and match first; weaker ones only continue confirmed "
              "tracks (set the detector's score_threshold lower to get them)")
    confirm_hits: int = Field(2, ge=1, title="detection rounds that must match a new face before it is published and counted")
    max_missed: int = Field(5, ge=0, title="detection rounds that could have seen a face but did not, before its track ends")
    hold_missed: int | None = Field(
        None, ge=0, title="of those, how many rounds the face is still published at its predicted place (the rest it is "
                          "only kept to take its id back when seen again); null: all of max_missed")
    smoothing: float = Field(0.3, gt=0.0, le=1.0, title="EMA weight of the newest probabilities (1 = no smoothing)")
    primary: bool = Field(True, title="pick a primary face (the driver); false for shops and lobbies, where no face is special")
    follow_landmarks: bool = Field(
        True, title="follow the primary face by its own FaceMesh landmarks (needs head_pose): each frame's mesh gives "
                    "the next frame's box, and the detector runs only when the mesh loses the face, every rescan_s for "
                    "new faces, and around other tracked faces (MediaPipe's scheme; no effect without a primary face)")
    rescan_s: float = Field(
        1.0, gt=0.0, title="while the primary face is followed by its landmarks, a whole-frame detection at least this "
                           "often (seconds), to notice a new face or a driver change")
    follow_min_confidence: float = Field(
        0.6, ge=0.0, le=1.0, title="head pose confidence (mesh presence x rigid fit) below which the mesh has lost "
                                   "the face and the detector looks for it on the next frame")
    primary_zone: tuple[float, float, float, float] | str | None = Field(
        None, title="driver's seat: [x0, y0, x1, y1] as fractions of the frame, or the name of a zone in zones:; the "
                    "primary face is the largest whose centre lies inside (e.g. [0.5, 0, 1, 1]: the right half; "
                    "null: the largest anywhere)")

    @field_validator("primary_zone")
    @classmethod
    def _zone_in_frame(cls, v):
        if isinstance(v, tuple) and not (0.0 <= v[0] < v[2] <= 1.0 and 0.0 <= v[1] < v[3] <= 1.0):
            raise ValueError("must be [x0, y0, x1, y1] with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, or a zone name")
        return v

    @model_validator(mode="after")
    def _zone_needs_primary(self) -> TrackerConfig:
        if self.primary_zone is not None and not self.primary:
            raise ValueError("primary_zone is set but primary is false: remove one")
        return self


@dataclass(slots=True, eq=False)
class Track:
    id: int  # 0 while tentative: ids are given at confirmation, so published ids count faces
    box: Box
    t_first: float
    t_last: float  # when a detection last matched
    score: float = 1.0
    landmarks: np.ndarray | None = None
    probs: np.ndarray | None = None  # smoothed class probabilities; None until first classified
    missed: int = 0  # detection rounds that could have seen it since the last match
    hits: int = 1
    motion: BoxMotion | None = None
    fresh: bool = True  # ``box`` is this round's detection (not a prediction)
    updates: int = 1  # detections and landmark fits that placed the box (a new one: judge its pixels again)
    t_classified: float | None = None  # when its emotion was last classified
    extra: dict = field(default_factory=dict)  # per-face state other stages keep (e.g. eye EMA)

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]

    @property
    def confirmed(self) -> bool:
        return self.id > 0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every (x, y, w, h) box in ``a`` (N, 4) with every one in ``b`` (M, 4) → (N, M)."""
    ax0, ay0 = a[:, None, 0], a[:, None, 1]
    ax1, ay1 = ax0 + a[:, None, 2], ay0 + a[:, None, 3]
    bx0, by0 = b[None, :, 0], b[None, :, 1]
    bx1, by1 = bx0 + b[None, :, 2], by0 + b[None, :, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def buffered(boxes: np.ndarray, b: float) -> np.ndarray:
    """(N, 4) x, y, w, h boxes grown by ``b`` of their width and height on each side."""
    out = boxes.copy()
    out[:, :2] -= b * boxes[:, 2:]
    out[:, 2:] *= 1.0 + 2.0 * b
    return out


def greedy_match(tracks: list[Track], dets: list[Detection], threshold: float) -> list[tuple[int, int]]:
    """(track index, detection index) pairs, best buffered IoU first, each at least ``threshold``."""
    if not tracks or not dets:
        return []
    ious = iou_matrix(buffered(np.array([tr.box for tr in tracks], np.float64), IOU_BUFFER),
                      buffered(np.array([d.box for d in dets], np.float64), IOU_BUFFER))
    pairs: list[tuple[int, int]] = []
    used_t: set[int] = set()
    used_d: set[int] = set()
    for flat in np.argsort(ious, axis=None)[::-1]:
        ti, di = divmod(int(flat), len(dets))
        if ious[ti, di] < threshold:
            break
        if ti not in used_t and di not in used_d:
            used_t.add(ti)
            used_d.add(di)
            pairs.append((ti, di))
    return pairs


class Tracker:
    def __init__(self, cfg: TrackerConfig | None = None, zones: Mapping[str, ZoneConfig] | None = None) -> None:
        self.cfg = cfg or TrackerConfig()
        self.tracks: list[Track] = []  # every live track, tentative ones included
        self._next_id = 1
        self.frame_hw: tuple[int, int] | None = None  # (height, width) of the latest frame: the seat zone is in fractions
        self.zones = zones
        zone = self.cfg.primary_zone
        if isinstance(zone, str):
            if zones is None or zone not in zones:
                raise ValueError(f"tracker.primary_zone names zone {zone!r}, which zones: does not define")
            self.seat: ZoneConfig | None = zones[zone]
        else:
            self.seat = rect_zone(zone) if zone is not None else None

    @property
    def confirmed(self) -> list[Track]:
        """The tracks published now: confirmed, and not lost for longer than hold_missed."""
        hold = self.cfg.max_missed if self.cfg.hold_missed is None else self.cfg.hold_missed
        return [tr for tr in self.tracks if tr.confirmed and tr.missed <= hold]

    def update(self, detections: list[Detection] | None, t: float, frame_hw: tuple[int, int] | None = None,
               covered: Callable[[Box], bool] | None = None) -> list[Track]:
        """Predict every track to ``t``; match this round's detections (None = no detection ran
        on this frame). ``covered(box)`` says whether the round could have found a face there
        (None: everywhere). Returns the confirmed tracks: what is published."""
        if frame_hw is not None:
            self.frame_hw = frame_hw
        for tr in self.tracks:
            if tr.motion is not None:
                tr.box = tr.motion.predict(t)
            tr.fresh = False
        if detections is None:
            return self.confirmed
        high = [d for d in detections if d.score >= self.cfg.high_score]
        low = [d for d in detections if d.score < self.cfg.high_score]
        matched: set[int] = set()

        # Stage 1: confident detections against every track (confirmed first wins ties by order).
        order = sorted(range(len(self.tracks)), key=lambda i: not self.tracks[i].confirmed)
        pool = [self.tracks[i] for i in order]
        used_high: set[int] = set()
        for ti, di in greedy_match(pool, high, self.cfg.iou_threshold):
            self._hit(pool[ti], high[di], t)
            matched.add(id(pool[ti]))
            used_high.add(di)
        # Stage 2: weak detections only continue confirmed tracks, and must overlap well.
        rest = [tr for tr in self.tracks if id(tr) not in matched and tr.confirmed]
        for ti, di in greedy_match(rest, low, LOW_SCORE_IOU):
            self._hit(rest[ti], low[di], t)
            matched.add(id(rest[ti]))

        survivors: list[Track] = []
        for tr in self.tracks:
            if id(tr) not in matched and (covered is None or covered(tr.box)):
                tr.missed += 1
                if tr.motion is not None:
                    tr.motion.damp(LOST_VELOCITY_DAMPING)
                if not tr.confirmed or tr.missed > self.cfg.max_missed:
                    continue
            survivors.append(tr)
        for di, det in enumerate(high):
            if di not in used_high:
                tr = Track(0, det.box, t, t, det.score, det.landmarks, motion=BoxMotion(det.box, t))
                self._maybe_confirm(tr)
                survivors.append(tr)
        self.tracks = survivors
        return self.confirmed

    def _hit(self, tr: Track, det: Detection, t: float) -> None:
        tr.box, tr.score, tr.landmarks = det.box, det.score, det.landmarks
        tr.t_last, tr.missed, tr.fresh = t, 0, True
        tr.hits += 1
        tr.updates += 1
        if tr.motion is not None:
            tr.motion.correct(det.box)
        self._maybe_confirm(tr)

    def follow(self, tr: Track, box: Box, landmarks: np.ndarray | None, t: float) -> None:
        """Place a confirmed track at ``box`` found by its own landmarks in the frame at ``t``
        (after ``update`` for that frame): like a detection that matched, without counting a hit."""
        tr.box, tr.t_last, tr.missed, tr.fresh = box, t, 0, True
        tr.updates += 1
        if landmarks is not None:
            tr.landmarks = landmarks
        if tr.motion is not None:
            tr.motion.correct(box)

    def _maybe_confirm(self, tr: Track) -> None:
        if not tr.confirmed and tr.hits >= self.cfg.confirm_hits:
            tr.id = self._next_id
            self._next_id += 1

    def smooth(self, track: Track, probs: np.ndarray) -> np.ndarray:
        """Fold new probabilities into the track's EMA (the first ones are taken as they are)."""
        if track.probs is None:
            track.probs = np.array(probs, dtype=np.float32)
        else:
            a = self.cfg.smoothing
            track.probs *= 1.0 - a
            track.probs += a * probs
        return track.probs

    def in_zone(self, tr: Track) -> bool:
        if self.seat is None or self.frame_hw is None:
            return True
        return self.seat.contains(*centre_of(tr.box, self.frame_hw))

    @property
    def primary(self) -> Track | None:
        """The largest confirmed face in the driver's seat zone (the whole frame by default): in
        a driver camera, the driver, not a passenger who leans in. None when ``primary`` is off."""
        if not self.cfg.primary:
            return None
        return max((tr for tr in self.tracks if tr.confirmed and self.in_zone(tr)), key=lambda tr: tr.area, default=None)
