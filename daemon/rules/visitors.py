"""Visitor figures for shops and lobbies: unique visitors, how long they stayed, one emotion vote
each, overall and per zone. Counts only: no images, no identities, no track ids leave the rule.

A *visitor* is one confirmed face track (the tracker publishes a face only after it has been
matched in several detection rounds, so a flicker is never a visitor). A visit ends when the
face has been out of view for ``gone_s``; only then are its dwell time and vote final, so a
visitor is counted in the period in which they leave, and the ones still in view at the end of
a period are reported as ``present``. The vote is the emotion with the highest mean smoothed
probability over the visit, one per visitor, however long they stayed (``unknown`` when the
face was never classified: too small or blurred). A visitor counts in a zone when their face's
centre was in it; their dwell there is the time it stayed in.

Each summary is a one-step event (phase ``end``) covering ``[started_at, ended_at)``; its
``details`` follow the ``visitors`` schema in daemon/schemas/event.json.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import numpy as np
from pydantic import Field, field_validator

from ..types import Event, Observation
from ..vision.zones import ZoneConfig, zones_holding
from .base import Rule, RuleBase

UNKNOWN = "unknown"


class VisitorsConfig(RuleBase):
    type: Literal["visitors"] = "visitors"
    period_s: float = Field(60.0, gt=0, title="seconds covered by each summary")
    gone_s: float = Field(2.0, gt=0, title="a face out of view this long has left (its visit ends)")
    min_dwell_s: float = Field(0.0, ge=0, title="visits shorter than this are not counted (passers-by)")
    zones: list[str] | None = Field(None, title="zones (from zones:) to report on; null: every zone defined")
    dwell_buckets_s: list[float] = Field(
        [5.0, 15.0, 30.0, 60.0, 120.0, 300.0], min_length=1, title="upper bounds of the dwell-time histogram's buckets")

    @field_validator("dwell_buckets_s")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(v, v[1:])) or v[0] <= 0:
            raise ValueError("must be positive and strictly increasing")
        return v


@dataclass
class Visit:
    t_first: float
    t_last: float
    probs_sum: np.ndarray | None = None
    n_probs: int = 0
    zone_s: dict[str, float] = field(default_factory=dict)

    def vote(self, labels: Sequence[str]) -> str:
        return labels[int(np.argmax(self.probs_sum))] if self.n_probs else UNKNOWN


@dataclass
class Tally:
    """Finished visits of one period, overall or in one zone."""

    dwells: list[float] = field(default_factory=list)
    votes: Counter = field(default_factory=Counter)

    def add(self, dwell: float, vote: str) -> None:
        self.dwells.append(dwell)
        self.votes[vote] += 1

    def summary(self, labels: Sequence[str], buckets: Sequence[float]) -> dict:
        d = np.asarray(self.dwells, np.float64)
        stats = ({"mean": round(float(d.mean()), 2), "p50": round(float(np.percentile(d, 50)), 2),
                  "p90": round(float(np.percentile(d, 90)), 2), "max": round(float(d.max()), 2)}
                 if len(d) else {"mean": None, "p50": None, "p90": None, "max": None})
        edges = [*buckets, None]
        counts = [int(((d <= b) & (d > (buckets[i - 1] if i else -1.0))).sum()) if b is not None
                  else int((d > buckets[-1]).sum()) for i, b in enumerate(edges)]
        return {
            "visitors": len(self.dwells),
            "dwell_s": stats,
            "dwell_histogram": [{"le": b, "count": c} for b, c in zip(edges, counts)],
            "emotions": {label: self.votes.get(label, 0) for label in (*labels, UNKNOWN)},
        }


class Visitors(Rule):
    type = "visitors"
    needs_zones = True

    def __init__(self, cfg: VisitorsConfig, labels: Sequence[str], loc: tuple = ("rules",),
                 zones: Mapping[str, ZoneConfig] | None = None) -> None:
        super().__init__(cfg, labels, loc)
        self.cfg: VisitorsConfig = cfg
        self.labels = list(labels)
        zones = dict(zones or {})
        names = cfg.zones if cfg.zones is not None else sorted(zones)
        self.zones = {n: zones[n] for n in names}  # config validation checked the names exist
        self.visits: dict[int, Visit] = {}
        self.t_start: float | None = None
        self.wall_offset = 0.0
        self._reset()

    def _reset(self) -> None:
        self.total = Tally()
        self.per_zone = {name: Tally() for name in self.zones}

    def step(self, obs: Observation) -> list[Event]:
        self.wall_offset = obs.t_wall - obs.t
        events: list[Event] = []
        if self.t_start is None:
            self.t_start = obs.t
        for face in obs.faces:
            v = self.visits.get(face.track_id)
            if v is None:
                v = self.visits[face.track_id] = Visit(obs.t, obs.t)
            dt = min(obs.t - v.t_last, self.cfg.gone_s)
            v.t_last = obs.t
            if face.probs is not None:
                p = np.asarray(face.probs, np.float64)
                v.probs_sum = p.copy() if v.probs_sum is None else v.probs_sum + p
                v.n_probs += 1
            if self.zones and obs.frame_hw is not None:
                for name in zones_holding(self.zones, face.box, obs.frame_hw):
                    v.zone_s[name] = v.zone_s.get(name, 0.0) + dt
        for tid in [tid for tid, v in self.visits.items() if obs.t - v.t_last >= self.cfg.gone_s]:
            self._finish(self.visits.pop(tid))
        if obs.t >= self.t_start + self.cfg.period_s:
            t_end = self.t_start + self.cfg.period_s
            events.append(self._summary(t_end))
            # After a long gap (camera down) the next period starts now, not with a run of
            # empty summaries for time the daemon never saw.
            self.t_start = t_end if obs.t < t_end + self.cfg.period_s else obs.t
            self._reset()
        return events

    def _finish(self, v: Visit) -> None:
        dwell = v.t_last - v.t_first
        if dwell < self.cfg.min_dwell_s:
            return
        vote = v.vote(self.labels)
        self.total.add(dwell, vote)
        for name, seconds in v.zone_s.items():
            if name in self.per_zone:
                self.per_zone[name].add(seconds, vote)

    def close(self, t: float, t_wall: float) -> list[Event]:
        """At shutdown every visit ends now and the partial period is emitted."""
        if self.t_start is None:
            return []
        self.wall_offset = t_wall - t
        for v in self.visits.values():
            self._finish(v)
        self.visits.clear()
        event = self._summary(t, partial=True)
        self.t_start = None
        self._reset()
        return [event]

    def live(self) -> dict:
        """The running period's visitors: here now and gone, in all and per zone."""
        here = {name: 0 for name in self.per_zone}
        for v in self.visits.values():
            for name in v.zone_s:  # here now and seen in the zone during this visit
                if name in here:
                    here[name] += 1
        return {"present": len(self.visits), "left": len(self.total.dwells),
                "zones": {name: {"visitors": len(t.dwells), "present": here[name]} for name, t in self.per_zone.items()}}

    def overlay(self) -> list[str]:
        """Lines for the live preview: the running period's figures."""
        lines = [f"visitors {len(self.total.dwells)} left, {len(self.visits)} here"]
        lines += [f"{name}: {len(t.dwells)} visitors" for name, t in self.per_zone.items()]
        return lines

    def _summary(self, t_end: float, partial: bool = False) -> Event:
        buckets = self.cfg.dwell_buckets_s
        details = {
            **self.total.summary(self.labels, buckets),
            "present": len(self.visits),
            "zones": {name: tally.summary(self.labels, buckets) for name, tally in self.per_zone.items()},
            "period_s": round(t_end - self.t_start, 3),
            "partial": partial,
        }
        return Event(id=str(uuid.uuid4()), type=self.type, rule=self.name, phase="end",
                     started_at=self.t_start + self.wall_offset, ended_at=t_end + self.wall_offset, details=details)
