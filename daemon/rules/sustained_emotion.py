"""One emotion held with confidence for a while (e.g. anger >= 0.6 for 3 s), with a cooldown.

The confidence is the tracker's smoothed probability of the emotion (an EMA per track), so a
single-frame spike cannot start the alert. It starts after ``duration_s`` at or above
``threshold`` and ends once the confidence has stayed below ``threshold - release_margin`` for
``release_s``: a confidence wobbling around the threshold keeps one alert open instead of
starting and ending a stream of them.
"""

from __future__ import annotations

from typing import Literal, Sequence

from pydantic import Field

from ..types import Event, Observation
from .base import Held, Hysteresis, Rule, RuleBase, RuleError, Seconds, Share


class SustainedEmotionConfig(RuleBase):
    type: Literal["sustained_emotion"] = "sustained_emotion"
    emotion: str = Field("angry", min_length=1, title="model label to watch, e.g. angry")
    threshold: Share = Field(0.6, title="smoothed confidence at or above which the emotion counts (0..1)")
    duration_s: Seconds = Field(3.0, title="seconds the emotion must hold before the alert starts")
    release_margin: Share = Field(0.1, title="the alert ends below threshold minus this margin")
    release_s: Seconds = Field(1.0, title="seconds below the release level before the alert ends")
    cooldown_s: Seconds = Field(30.0, title="after an alert ends, seconds before this rule may start another")
    face: Literal["primary", "any"] = Field("primary", title="watch the primary face, or the most confident of all faces")


class SustainedEmotion(Rule):
    type = "sustained_emotion"

    def __init__(self, cfg: SustainedEmotionConfig, labels: Sequence[str], loc: tuple = ("rules",)) -> None:
        super().__init__(cfg, labels, loc)
        if cfg.emotion not in labels:
            raise RuleError((*loc, "emotion"), f"{cfg.emotion!r} is not a label of the model (labels: {', '.join(labels)})")
        self.cfg: SustainedEmotionConfig = cfg
        self.index = list(labels).index(cfg.emotion)
        self.above = Hysteresis(on=cfg.threshold, off=max(0.0, cfg.threshold - cfg.release_margin))
        self.held = Held()
        self.released = Held()

    def confidence(self, obs: Observation) -> float | None:
        faces = [obs.primary] if self.cfg.face == "primary" else obs.faces
        values = [float(f.probs[self.index]) for f in faces if f is not None and f.probs is not None]
        return max(values) if values else None

    def step(self, obs: Observation) -> list[Event]:
        conf = self.confidence(obs)
        above = self.above.update(conf) if conf is not None else self.above.reset()  # no face: not shown
        held_s = self.held.update(above, obs.t)
        released_s = self.released.update(not above, obs.t)
        alerts = self.alerts
        details = {"emotion": self.cfg.emotion, "confidence": None if conf is None else round(conf, 3)}
        if alerts.active is None:
            if held_s >= self.cfg.duration_s and not alerts.cooling_down(obs.t):
                return [alerts.start(obs.t, obs.t_wall, self.cfg.emotion, details, {"confidence": round(conf, 3)})]
            return []
        if conf is not None:
            alerts.raise_peak(confidence=round(conf, 3))
        if released_s >= self.cfg.release_s:
            return [alerts.end(obs.t, obs.t_wall, details)]
        return []
