"""Which tracked faces get their emotion classified on this frame (``classifier.max_rate_hz``).

Emotions change over seconds, and the tracker's smoothing holds each face's state between
classifications, so classifying every face on every frame buys nothing but cost: with eight
faces it would make classification the most expensive stage. Each track is classified at most
``max_rate_hz`` times a second, and the refreshes are spread round-robin over frames (the
face waiting longest first, at most ``ceil(faces · frame interval · rate)`` per frame), so no
frame pays for every face at once. A new track is classified on its first frame: it has no
state to hold yet; ``pipeline.classify_per_frame`` caps even that (many faces entering at once
wait a frame or two). Face signals (the primary face's eye state) are not scheduled here: they
run every frame, because a blink lasts only a few frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .tracking import Track

_EPS = 1e-3  # s: capture times are floats; a face due "now" must not wait a whole frame


class ClassifySchedule:
    def __init__(self, max_rate_hz: float, max_per_frame: int = 0) -> None:
        self.period = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
        self.max_per_frame = max_per_frame  # 0: no cap (new faces all go on their first frame)
        self._last: dict[int, float] = {}  # track id → capture time of its last classification
        self._t_prev: float | None = None
        self._dt: float | None = None  # smoothed frame interval (s)
        self._busy = 0.0

    def _frame_interval(self, t: float) -> float | None:
        if self._t_prev is not None and t > self._t_prev:
            dt = t - self._t_prev
            self._dt = dt if self._dt is None else 0.9 * self._dt + 0.1 * dt
        self._t_prev = t
        return self._dt

    def due(self, tracks: Sequence[Track], t: float, alive: set[int] | None = None, busy: bool = False) -> list[Track]:
        """The tracks to classify on the frame captured at ``t`` (monotonic seconds); records
        them as classified. ``alive``: ids of every live track (default: ``tracks``), so a face
        left out for a while (unreadable, lost for a round) keeps its place in the round-robin.
        ``busy``: this frame already pays for detection, so faces that only wait for their next
        classification wait one frame more (new faces still go now): the two costliest stages
        then fall on different frames, which is what the worst frame, and the p99, is made of."""
        alive = {tr.id for tr in tracks} if alive is None else alive
        for gone in [k for k in self._last if k not in alive]:
            del self._last[gone]
        dt = self._frame_interval(t)
        # The share of busy frames (an EMA): the other frames carry their classifications.
        self._busy = 0.9 * self._busy + 0.1 * float(busy)
        if not self.period:
            chosen = list(tracks)
        else:
            new = [tr for tr in tracks if tr.probs is None or tr.id not in self._last]
            waiting = sorted(
                (tr for tr in tracks if tr.id in self._last and tr.probs is not None
                 and t - self._last[tr.id] >= self.period - _EPS),
                key=lambda tr: self._last[tr.id],
            )
            free = max(0.25, 1.0 - self._busy)
            budget = len(tracks) if dt is None else max(1, math.ceil(len(tracks) * dt / self.period / free - _EPS))
            chosen = new + ([] if busy else waiting[: max(0, budget - len(new))])
        if self.max_per_frame:  # a hard cap: new faces beyond it wait for the next frame
            chosen = chosen[: self.max_per_frame]
        for tr in chosen:
            self._last[tr.id] = t
        return chosen
