"""Faces per emotion per period, for retail and lobby cameras: counts only, no images, no ids.

Counting is **per track**: each tracked face seen during the period counts once, under the
label it showed most often (its dominant emotion), so one shopper standing in view for a minute
is one face, not 1,800. ``face_frames`` adds the per-frame view (face-frames per label) for
those who want dwell-weighted figures. Track ids stay inside the rule; the event carries only
totals. Each summary is a one-step event (phase ``end``) covering ``[started_at, ended_at)``.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from typing import Literal, Sequence

from pydantic import Field

from ..types import Event, Observation
from .base import Rule, RuleBase


class EmotionSummaryConfig(RuleBase):
    type: Literal["emotion_summary"] = "emotion_summary"
    period_s: float = Field(60.0, gt=0, title="seconds covered by each summary")


class EmotionSummary(Rule):
    type = "emotion_summary"

    def __init__(self, cfg: EmotionSummaryConfig, labels: Sequence[str], loc: tuple = ("rules",)) -> None:
        super().__init__(cfg, labels, loc)
        self.cfg: EmotionSummaryConfig = cfg
        self.labels = list(labels)
        self.t_start: float | None = None  # monotonic start of the current period
        self.wall_offset = 0.0  # t_wall - t, to give period boundaries wall-clock times
        self._reset()

    def _reset(self) -> None:
        self.frames = 0
        self.per_track: dict[int, Counter[str]] = defaultdict(Counter)
        self.face_frames: Counter[str] = Counter()

    def step(self, obs: Observation) -> list[Event]:
        events: list[Event] = []
        self.wall_offset = obs.t_wall - obs.t
        if self.t_start is None:
            self.t_start = obs.t
        elif obs.t >= self.t_start + self.cfg.period_s:
            t_end = self.t_start + self.cfg.period_s
            events.append(self._summary(t_end))
            # After a long gap (camera down), the next period starts now rather than emitting
            # a run of empty summaries for time the daemon never saw.
            self.t_start = t_end if obs.t < t_end + self.cfg.period_s else obs.t
            self._reset()
        self.frames += 1
        for face in obs.faces:
            if face.label is None:  # not classified (too small or blurred): no emotion to count
                continue
            self.per_track[face.track_id][face.label] += 1
            self.face_frames[face.label] += 1
        return events

    def close(self, t: float, t_wall: float) -> list[Event]:
        """Emit the partial period at shutdown, so its counts are not lost."""
        if self.t_start is None or self.frames == 0:
            return []
        self.wall_offset = t_wall - t
        event = self._summary(t, partial=True)
        self.t_start = None
        self._reset()
        return [event]

    def _summary(self, t_end: float, partial: bool = False) -> Event:
        dominant = Counter(c.most_common(1)[0][0] for c in self.per_track.values())
        return Event(
            id=str(uuid.uuid4()),
            type=self.type,
            rule=self.name,
            phase="end",
            started_at=self.t_start + self.wall_offset,
            ended_at=t_end + self.wall_offset,
            details={
                "counts": {label: dominant.get(label, 0) for label in self.labels},
                "faces": len(self.per_track),
                "face_frames": {label: self.face_frames.get(label, 0) for label in self.labels},
                "frames": self.frames,
                "period_s": round(t_end - self.t_start, 3),
                "counting": "tracks",
                "partial": partial,
            },
        )
