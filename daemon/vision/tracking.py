"""Face tracking: stable ids across frames, smoothed probabilities per face, the primary face.

Matching is greedy on IoU (best pair first). With at most a handful of faces per frame the
greedy result equals the optimal (Hungarian) assignment in all but contrived overlaps, and it
costs one small NumPy matrix, with no SciPy dependency on the device. Detection runs only every
Nth frame; on the frames between, ``update(None, t)`` leaves every track where it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import Field, field_validator

from ..configbase import Section
from ..types import Box, Detection


class TrackerConfig(Section):
    iou_threshold: float = Field(0.3, gt=0.0, lt=1.0, title="least box overlap (IoU) for a detection to continue a track")
    max_missed: int = Field(5, ge=0, title="detection rounds a track survives without a matching face")
    smoothing: float = Field(0.3, gt=0.0, le=1.0, title="EMA weight of the newest probabilities (1 = no smoothing)")
    primary_zone: tuple[float, float, float, float] | None = Field(
        None, title="driver's seat: [x0, y0, x1, y1] as fractions of the frame; the primary face is the largest "
                    "whose centre lies inside (e.g. [0.5, 0, 1, 1]: the right half; null: the largest anywhere)")

    @field_validator("primary_zone")
    @classmethod
    def _zone_in_frame(cls, v):
        if v is not None and not (0.0 <= v[0] < v[2] <= 1.0 and 0.0 <= v[1] < v[3] <= 1.0):
            raise ValueError("must be [x0, y0, x1, y1] with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
        return v


@dataclass(slots=True, eq=False)
class Track:
    id: int
    box: Box
    t_first: float
    t_last: float  # when a detection last matched
    score: float = 1.0
    landmarks: np.ndarray | None = None
    probs: np.ndarray | None = None  # smoothed class probabilities; None until first classified
    missed: int = 0  # detection rounds since the last match
    hits: int = 1
    extra: dict = field(default_factory=dict)  # per-face state other stages keep (e.g. eye EMA)

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


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


class Tracker:
    def __init__(self, cfg: TrackerConfig | None = None) -> None:
        self.cfg = cfg or TrackerConfig()
        self.tracks: list[Track] = []
        self._next_id = 1
        self.frame_hw: tuple[int, int] | None = None  # (height, width) of the latest frame: the seat zone is in fractions

    def update(self, detections: list[Detection] | None, t: float, frame_hw: tuple[int, int] | None = None) -> list[Track]:
        """Match this frame's detections to tracks; None = detection did not run on this frame.
        ``frame_hw`` (height, width) places the seat zone of ``primary``."""
        if frame_hw is not None:
            self.frame_hw = frame_hw
        if detections is None:
            return self.tracks
        matched_tracks: set[int] = set()
        matched_dets: set[int] = set()
        if self.tracks and detections:
            ious = iou_matrix(
                np.array([tr.box for tr in self.tracks], np.float64),
                np.array([d.box for d in detections], np.float64),
            )
            for flat in np.argsort(ious, axis=None)[::-1]:
                ti, di = divmod(int(flat), len(detections))
                if ious[ti, di] < self.cfg.iou_threshold:
                    break
                if ti in matched_tracks or di in matched_dets:
                    continue
                matched_tracks.add(ti)
                matched_dets.add(di)
                det, tr = detections[di], self.tracks[ti]
                tr.box, tr.score, tr.landmarks = det.box, det.score, det.landmarks
                tr.t_last, tr.missed = t, 0
                tr.hits += 1
        survivors = []
        for i, tr in enumerate(self.tracks):
            if i not in matched_tracks:
                tr.missed += 1
            if tr.missed <= self.cfg.max_missed:
                survivors.append(tr)
        for i, det in enumerate(detections):
            if i not in matched_dets:
                survivors.append(Track(self._next_id, det.box, t, t, det.score, det.landmarks))
                self._next_id += 1
        self.tracks = survivors
        return self.tracks

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
        zone = self.cfg.primary_zone
        if zone is None or self.frame_hw is None:
            return True
        h, w = self.frame_hw
        x, y, bw, bh = tr.box
        cx, cy = (x + bw / 2) / w, (y + bh / 2) / h
        return zone[0] <= cx <= zone[2] and zone[1] <= cy <= zone[3]

    @property
    def primary(self) -> Track | None:
        """The largest live face in the driver's seat zone (the whole frame by default): in a
        driver camera, the driver, not a passenger who leans in."""
        return max((tr for tr in self.tracks if self.in_zone(tr)), key=lambda tr: tr.area, default=None)
