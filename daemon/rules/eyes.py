"""What the driver's eyes do, frame by frame: open, shut, or lowered (a closure or a look down
that the picture cannot tell apart), from every cue the face signals give. The building block
that ``driver_fatigue``, ``driver_distraction`` and ``driver_monitoring_degraded`` share (through
``rules/head.py``), so the rules always agree on which frames are a closure, which a look down
and which unreadable.

**The cues and how far each is trusted** (measured per yaw band, eye size and light on people
the eye model never saw: ``python bench/eye_views.py``; the tables are in bench/RESULTS.md):

* the **eye-state model** (``eye_closed``: closed, open or unreadable, on each eye cut upright
  between its corners from the face mesh; trained on CEW and on the shared clips as turned,
  small, dim and infrared cameras see them). The signal itself says *unknown* outside the head
  poses its manifest's ``trust`` was measured at (the current model: up to 50 degrees of yaw; the
  first, frontal CEW model: 20) and where the model calls the eyes unreadable, so what reaches
  this judge is trusted. Open eyes looking down (lowered lids over a visible iris) are open to
  it: it was taught them as open. Its closed probability is calibrated: ``MODEL_CLOSED`` and
  ``MODEL_OPEN`` split it, ``MODEL_SURE_CLOSED`` overrules a contour that reads lowered lids.
* the **eyelid contour** (the ``gaze`` signal's ``openness``: MediaPipe Iris on the same upright
  crop): against the driver's own open aperture it says ``open`` (iris visible, lids apart),
  ``shut`` (under ``SHUT_SHARE`` of open) or ``lowered`` (in between: a look down with the iris
  under the lids, or lids shut behind glasses or on a dim, small face). Precise on a large,
  well-lit face; on a 50-px or night face it reads lowered, barely open or nothing where the
  model still reads the lids: "barely open" (under ``CONTOUR_SURE_OPEN`` of open) against a
  model that says closed is ``lowered``, an ambiguous closure, not an open eye.
* the **driver's open aperture**, learned only from frames the model reads open; the prior
  ``OPEN_PRIOR`` holds for a driver whose eyes are never seen open.
* **how the head moves**: lowered lids (the model not sure they are shut) with the head pitched
  down more than ``look_down_deg`` below the road direction are a look down (the lap, a phone).
  A closure that began with the lids shut and has lasted ``ESTABLISHED_S`` is a doze: it stays a
  closure while the head sinks, hangs or turns, and while the face is lost for a moment as the
  head drops, as long as the eyes stay shut or lowered.
* **an unreadable head**: a head pose too uncertain to judge (a small, tilted face on a dashcam)
  with lids the model or the contour reads shut is still a closure (``rules/head.py``).
* **the mouth**: eyes squeezed during a yawn (the mouth opened wide while the eyes were open)
  are part of the yawn, not a closure.

The policy, in the words of Euro NCAP's DSM protocol: a closure is fatigue's, a look down is
distraction's, and an ambiguity silences neither. ``lowered`` lids near the road pitch are an
*ambiguous* closure: ``driver_fatigue`` counts them towards sleep (3 s: the eyes have been off
the road as long as a long distraction) but not towards a microsleep or PERCLOS, which need the
lids seen shut. Unreadable eyes (dark glasses, a hand, a face too small, dim or turned too far
for every cue) are unknown, never closed, and always said: ``driver_monitoring_degraded``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..types import FaceState

EyeState = Literal["open", "shut", "lowered"]

# Which head poses the eye model holds at is its manifest's ``trust`` (the eye signal applies it).
MODEL_CLOSED = 0.6  # the model's closed probability from which it says "closed"
MODEL_OPEN = 0.4  # ... and up to which it says "open"
# From this closed probability the model overrules a contour that reads the lids lowered (a dim
# or small face's contour cannot see a shut lid's line; a look down with open eyes reads open).
MODEL_SURE_CLOSED = 0.85  # night shut eyes (dashcam view, 50 px): 0.80-0.99; open frontal eyes >= 0.85 on ~4 %
# Lid aperture (gaze openness, eye widths) against this driver's open aperture. Open eyes on the
# clips: 0.17-0.27 frontal (0.25-0.35 turned); shut 0.018-0.065 (eyes_shut_desk, the talking
# head's blinks); lowered at notes 0.064-0.117 (talking head); the car's lap look 0.13-0.22.
OPEN_PRIOR = 0.22
OPEN_RANGE = (0.15, 0.35)  # the learned open aperture stays within this
SHUT_SHARE = 0.2  # under this share of open: shut (no iris between the lids)
LOWERED_SHARE = 0.55  # under this share: lowered; at or over it: open
CONTOUR_SURE_OPEN = 0.8  # from this share the contour's "open" stands against the model
OPEN_SAMPLES = 300  # known-open apertures kept (30 s of open frames at 10 a second)
OPEN_SAMPLE_EVERY_S = 0.1
OPEN_PRIOR_SAMPLES = 10  # the prior counts as this many samples in the median
OPEN_LEARN_MAX_YAW_DEG = 20.0  # the open aperture is learned from eyes facing the camera
# Without the contour, a model-read closure with the head pitched down more than this (below
# the road) may be a glance at the instruments: lowered, not shut (the fatigue zone before).
MODEL_HEAD_DOWN_DEG = 8.0
# A closure that saw shut lids and has lasted this long is a doze: the head may drop with it.
# (A glance lowers the lids and moves the head within ~0.3 s.)
ESTABLISHED_S = 0.5
# A yawn (the fatigue rule's defaults, defined here so the yawn gate and the yawn count agree):
# the mouth aspect ratio at least YAWN_MAR for YAWN_MIN_S. Speech crosses YAWN_MAR for up to
# 0.4 s on the talking head, 0.64 s on the webcam clip; the yawn clip holds it 1.0 s. Closed eyes
# while the mouth is held open like that (and for a moment after), when it opened with the eyes
# open, are the yawn's squeeze, not a closure; a yawn lasts up to ~6 s.
YAWN_MAR = 0.5
YAWN_MIN_S = 0.7
YAWN_GATE_MAX_S = 6.0
YAWN_TAIL_S = 0.5


@dataclass(slots=True)
class EyeReading:
    """One frame's eyes as the driver rules use them."""

    state: EyeState | None  # fused: open, shut, lowered; None: unreadable
    closed: bool | None  # a closure frame (True), open (False), unknown or a look down (None)
    shut: bool = False  # the lids were seen shut (counts for microsleep and PERCLOS)
    look_down: bool = False  # lowered lids with the head down: a look down, distraction's
    yawn: bool = False  # closed eyes inside a yawn (not a closure)


def model_reading(face: FaceState) -> float | None:
    """The eye model's closed probability, None where the signal could not be trusted (it says
    unknown outside the poses its model holds at, and where the model calls the eyes unreadable)."""
    p = face.signal("eye_closed")
    return None if p is None else float(p)


class EyeJudge:
    """Fuses the eye cues of the primary face into an ``EyeReading``, keeping the driver's open
    aperture, the closure going on and the mouth's state."""

    def __init__(self, look_down_deg: float) -> None:
        self.look_down_deg = look_down_deg
        self.open_lids = OPEN_PRIOR
        self.open_samples: deque[float] = deque(maxlen=OPEN_SAMPLES)
        self._open_sampled_at = float("-inf")
        self.run_since: float | None = None  # first frame of the closure going on
        self.run_shut = False  # the closure going on saw shut lids
        self.mouth_since: float | None = None  # the mouth wide open since
        self.mouth_closed_at: float | None = None
        self.mouth_open_at = 0.0  # the last frame with the mouth wide open
        self.yawn_gate = False  # the opening going on began with the eyes open
        self.last_open: float | None = None

    def reset(self) -> None:
        self.open_lids = OPEN_PRIOR
        self.open_samples.clear()
        self._open_sampled_at = float("-inf")
        self.run_since, self.run_shut = None, False

    def contour(self, openness: float) -> EyeState:
        if openness < SHUT_SHARE * self.open_lids:
            return "shut"
        return "lowered" if openness < LOWERED_SHARE * self.open_lids else "open"

    def fuse(self, face: FaceState, pose: dict | None, head_down: float) -> EyeState | None:
        """Open, shut, lowered or None from the contour and the eye model."""
        p = model_reading(face)
        gaze = face.signal("gaze")
        lids = self.contour(float(gaze["openness"])) if isinstance(gaze, dict) else None
        if lids == "open":
            if p is not None and p >= MODEL_CLOSED and float(gaze["openness"]) < CONTOUR_SURE_OPEN * self.open_lids:
                # a dim or small face's contour reads shut lids barely open (0.13-0.16 on the night
                # dashcam view: 59 % of its shut frames); wide open lids stay open. The model sure:
                # shut; only closed: an ambiguous closure (sleep counts it, a microsleep and
                # PERCLOS do not; with the head down it is a look down). A night dashcam sleeper's
                # 50-px shut lids read 0.14-0.18 open with the model at 0.6-0.85; labelled open
                # eyes reach 0.6 on 0.5-1.9 % of the scenario frames (as filmed, dashcam, night),
                # shut eyes on all of them.
                return "shut" if p >= MODEL_SURE_CLOSED else "lowered"
            return "open"
        if lids is not None:
            if p is not None and p <= MODEL_OPEN:
                return "open"  # the model sees an open eye the contour reads low (a squint, a look down)
            if lids == "lowered" and p is not None and p >= MODEL_SURE_CLOSED:
                return "shut"  # the contour could not see the lid's line: a dim or small face
            return lids
        if p is None:
            return None
        if p >= MODEL_CLOSED:
            # the model alone: with the head down, maybe a glance at the instruments (a doze
            # already going on stays one: EyeJudge.update)
            return "lowered" if head_down > MODEL_HEAD_DOWN_DEG else "shut"
        return "open" if p <= MODEL_OPEN else None

    def learn_open(self, face: FaceState, pose: dict | None, t: float) -> None:
        """The open aperture from frames the model reads open (p <= 0.2, the iris readable,
        the head facing the camera within OPEN_LEARN_MAX_YAW_DEG), at most OPEN_SAMPLE_EVERY_S
        apart (the median is not worth a frame's time)."""
        if t - self._open_sampled_at < OPEN_SAMPLE_EVERY_S:
            return
        if pose is None or abs(float(pose["yaw"])) > OPEN_LEARN_MAX_YAW_DEG:
            return  # a turned eye's aperture over its foreshortened width reads wider (0.25-0.35)
        p = model_reading(face)
        gaze = face.signal("gaze")
        if p is None or p > 0.2 or not isinstance(gaze, dict) or float(gaze["confidence"]) < 0.3:
            return
        self._open_sampled_at = t
        self.open_samples.append(float(gaze["openness"]))
        prior = np.full(OPEN_PRIOR_SAMPLES, OPEN_PRIOR)
        self.open_lids = float(np.clip(np.median(np.concatenate([np.asarray(self.open_samples), prior])), *OPEN_RANGE))

    def mouth(self, pose: dict | None, t: float, eyes_open: bool) -> bool:
        """True while a yawn's squeeze may close the eyes: the mouth wide open (or just closed),
        having opened while the eyes were open, from YAWN_MIN_S to YAWN_GATE_MAX_S."""
        mar = None if pose is None else pose.get("mar")
        if mar is not None and float(mar) >= YAWN_MAR:
            self.mouth_open_at = t
            if self.mouth_since is None:
                self.mouth_since = t
                # the eyes were open up to a moment ago: a yawn, not a sleeper's mouth falling open
                self.yawn_gate = self.last_open is not None and t - self.last_open <= YAWN_TAIL_S
            self.mouth_closed_at = None
        elif self.mouth_since is not None:
            self.mouth_closed_at = t if self.mouth_closed_at is None else self.mouth_closed_at
            if t - self.mouth_closed_at > YAWN_TAIL_S:
                self.mouth_since, self.mouth_closed_at = None, None
        if eyes_open:
            self.last_open = t
        return (self.mouth_since is not None and self.yawn_gate  # held open that long: a yawn, not speech
                and self.mouth_open_at - self.mouth_since >= YAWN_MIN_S and t - self.mouth_since <= YAWN_GATE_MAX_S)

    def mouth_wide(self, t: float) -> bool:
        """The mouth is held wide open (or just closed), for at most YAWN_GATE_MAX_S so far: a
        yawn, or the start of one (the head tips back with it)."""
        return self.mouth_since is not None and t - self.mouth_since <= YAWN_GATE_MAX_S

    def update(self, face: FaceState, pose: dict | None, head_down: float, t: float) -> EyeReading:
        """``head_down``: degrees the head is pitched below the driver's road direction."""
        self.learn_open(face, pose, t)
        state = self.fuse(face, pose, head_down)
        yawning = self.mouth(pose, t, state == "open")
        if state is None:
            return EyeReading(None, None)
        if state == "open":
            self.run_since, self.run_shut = None, False
            return EyeReading("open", False)
        if yawning:
            self.run_since, self.run_shut = None, False
            return EyeReading(state, False, yawn=True)
        if state == "lowered" and head_down > self.look_down_deg:
            established = self.run_since is not None and self.run_shut and t - self.run_since >= ESTABLISHED_S
            if not established:  # a look down: the head went down with the lids
                self.run_since, self.run_shut = None, False
                return EyeReading("lowered", None, look_down=True)
        if self.run_since is None:
            self.run_since = t
        self.run_shut = self.run_shut or state == "shut"
        return EyeReading(state, True, shut=state == "shut")
