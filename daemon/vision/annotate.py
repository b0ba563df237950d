"""Draw what the pipeline saw onto a frame: one function shared by ``emotiond analyze`` and
the live HTTP preview, so a file checked offline and the camera checked live look the same.

Per face: its box, ``#<track id> <emotion> <confidence>``, then one line per face signal that
gave a reading (e.g. ``eyes open 93%``), as the signal itself describes it; the primary face
(the driver) has a thicker box. An ``Overlay`` adds the named zones' outlines and the rules'
running figures (e.g. visitors so far) in the top-left corner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..types import FaceState, Observation
from .signals import describe
from .zones import ZoneConfig

PRIMARY_BGR = (80, 200, 60)  # green
OTHER_BGR = (0, 190, 255)  # amber
TEXT_BGR = (0, 0, 0)
ZONE_BGR = (255, 160, 40)  # blue
PANEL_BGR = (255, 255, 255)


@dataclass(frozen=True, slots=True)
class Overlay:
    """What the preview draws besides faces: zone outlines and the rules' running figures."""

    zones: Mapping[str, ZoneConfig] = field(default_factory=dict)
    lines: Sequence[str] = ()
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def face_lines(face: FaceState) -> list[str]:
    """The label text of one face, top line first."""
    emotion = f"{face.label} {face.confidence:.0%}" if face.label is not None else "(not classified)"
    return [f"#{face.track_id} {emotion}", *describe(face.signals)]


def draw(image: np.ndarray, obs: Observation, inplace: bool = False, overlay: Overlay | None = None) -> np.ndarray:
    """``image`` (BGR) with every face of ``obs`` drawn on it; a copy unless ``inplace``."""
    out = image if inplace else image.copy()
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    h, w = out.shape[:2]
    scale = max(0.4, min(w, h) / 720.0)  # text readable at 360p, not huge at 1080p
    thick = max(1, round(2 * scale))
    if overlay is not None:
        for name, zone in overlay.zones.items():
            pts = np.array([(x * (w - 1), y * (h - 1)) for x, y in zone.polygon], np.int32)
            cv2.polylines(out, [pts], True, ZONE_BGR, thick, cv2.LINE_8)
            _label(out, [name], int(pts[:, 0].min()), int(pts[:, 1].min()) + 1, ZONE_BGR, scale, thick)
        if overlay.lines:
            _label(out, list(overlay.lines), 0, 0, PANEL_BGR, scale, thick)
    for face in obs.faces:
        colour = PRIMARY_BGR if face.primary else OTHER_BGR
        x, y, bw, bh = face.box
        cv2.rectangle(out, (x, y), (x + bw, y + bh), colour, thick * (2 if face.primary else 1))
        _label(out, face_lines(face), x, y, colour, scale, thick)
    return out


def _label(img: np.ndarray, lines: list[str], x: int, y: int, colour: tuple[int, int, int], scale: float, thick: int) -> None:
    """Text lines on filled boxes above (x, y), or inside the top of the face when there is no room."""
    (_, th), base = cv2.getTextSize("Ag", _FONT, scale, thick)
    step = th + base + 4
    top = y - step * len(lines)
    if top < 0:
        top = y
    for i, text in enumerate(lines):
        (tw, _), _ = cv2.getTextSize(text, _FONT, scale, thick)
        y0 = top + i * step
        cv2.rectangle(img, (x, y0), (x + tw + 6, y0 + step), colour, cv2.FILLED)
        cv2.putText(img, text, (x + 3, y0 + th + 2), _FONT, scale, TEXT_BGR, thick, cv2.LINE_AA)
