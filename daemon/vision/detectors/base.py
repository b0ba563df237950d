"""What every face detector shares: its config fields, its protocol, and the helpers for
searching near tracked faces, downscaling and clamping boxes.

OpenCV is imported inside the helpers that use it, not at the top: ``daemon.config`` imports
every detector plugin for its config model, and validating a config must not load OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pydantic import Field

from ...configbase import Section
from ...types import Box, Detection


class DetectorError(RuntimeError):
    """A detector cannot be built (missing model or cascade file); the message names the path."""


class BaseDetectorConfig(Section):
    every_n: int = Field(3, ge=1, title="run detection on every Nth processed frame; the tracker carries boxes between")
    downscale_width: int = Field(320, ge=0, title="detect on a copy this wide (0 = full frame); boxes are scaled back")
    full_scan_every_n: int = Field(
        15, ge=1,
        title="while faces are tracked, one whole-frame scan for new faces is spread over this many frames' "
              "detection rounds, and each round also searches around the tracked faces (<= every_n: whole scans)",
    )
    search_near_tracks: bool = Field(
        True, title="each detection round also searches around every tracked face (one face: cheap and sure; "
                    "false for many small faces, where the spread whole-frame scan finds them all)")


class Detector(Protocol):
    def detect(self, frame_bgr: np.ndarray) -> list[Detection]: ...

    def detect_near(self, frame_bgr: np.ndarray, boxes: list[Box]) -> list[Detection]: ...

    def detect_part(self, frame_bgr: np.ndarray, part: int, parts: int) -> list[Detection]: ...

    def detect_search(self, frame_bgr: np.ndarray) -> list[Detection]:
        """A whole scan for when no face is tracked: finer than ``detect`` where the detector can
        afford it (the frame has no face to spend its time on)."""
        ...

    def scan_parts(self, every_n: int) -> int:
        """Into how many detection rounds one whole-frame scan is split."""
        ...

    def covers(self, part: int, parts: int, box: Box, frame_hw: tuple[int, int]) -> bool:
        """Could part ``part`` of the scan have found a face at ``box``? A track it did not match
        counts a miss only then."""
        ...


# Searching near a tracked face: the region is the box grown by NEAR_MARGIN of its side on each
# side (a face moves far less than that between two detection frames), shrunk so the face is
# about NEAR_FACE_PX wide, and only face sizes within NEAR_SIZE_RANGE of the tracked one are
# tried. That is a ~100x100 px search instead of a whole frame at every scale: the profile of
# the talking-head clip had Haar's detectMultiScale at ~80% of the pipeline's time.
NEAR_MARGIN = 0.5
NEAR_FACE_PX = 48.0
NEAR_SIZE_RANGE = (0.6, 1.6)


@dataclass(frozen=True, slots=True)
class Region:
    """Part of a frame, resized for a search near one tracked face; maps results back."""

    image: np.ndarray  # the region, resized (BGR)
    x0: int
    y0: int
    scale: float  # region pixels per frame pixel
    face_side: float  # the tracked face's side, in region pixels

    def to_frame(self, x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
        inv = 1.0 / self.scale
        return self.x0 + x * inv, self.y0 + y * inv, w * inv, h * inv

    def size_limits(self) -> tuple[int, int]:
        lo, hi = NEAR_SIZE_RANGE
        return max(1, int(self.face_side * lo)), max(2, int(round(self.face_side * hi)))


def near_regions(frame: np.ndarray, boxes) -> list[Region]:
    """One search region per tracked box (the face's surroundings, face about NEAR_FACE_PX wide)."""
    import cv2

    fh, fw = frame.shape[:2]
    regions = []
    for x, y, w, h in boxes:
        side = float(max(w, h, 1))
        grow = NEAR_MARGIN * side
        x0, y0 = max(0, int(x - grow)), max(0, int(y - grow))
        x1, y1 = min(fw, int(x + w + grow)), min(fh, int(y + h + grow))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        roi = frame[y0:y1, x0:x1]
        scale = min(1.0, NEAR_FACE_PX / side)
        if scale < 1.0:
            roi = cv2.resize(roi, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        regions.append(Region(roi, x0, y0, scale, side * scale))
    return regions


def drop_duplicates(dets: list[Detection]) -> list[Detection]:
    """One face found twice (two searches, at two scales) → the first; a detection whose centre
    lies inside an earlier kept box is the same face (robust to boxes of different sizes)."""
    kept: list[Detection] = []
    for d in dets:
        x, y, w, h = d.box
        cx, cy = x + w / 2.0, y + h / 2.0
        if not any(k[0] <= cx <= k[0] + k[2] and k[1] <= cy <= k[1] + k[3] for k in (kd.box for kd in kept)):
            kept.append(d)
    return kept


class Downscaler:
    """Shrinks frames to a fixed width (keeping aspect), reusing its output buffer.

    Detection cost grows with pixel count, and a face that fills a driver camera needs far
    fewer pixels to be found than to be classified, so detectors work on a small copy.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self._out: np.ndarray | None = None

    def size_of(self, hw: tuple[int, int]) -> tuple[int, int]:
        """(height, width) that ``__call__`` gives for a frame of ``hw``."""
        h, w = hw
        if not self.width or w <= self.width:
            return h, w
        return max(1, int(round(h * self.width / w))), self.width

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """(resized image, scale) where scale = resized / original; the image itself if not wider."""
        import cv2

        h, w = image.shape[:2]
        if not self.width or w <= self.width:
            return image, 1.0
        scale = self.width / w
        size = (self.width, max(1, int(round(h * scale))))
        shape = (size[1], size[0], *image.shape[2:])
        if self._out is None or self._out.shape != shape or self._out.dtype != image.dtype:
            self._out = np.empty(shape, image.dtype)
        cv2.resize(image, size, dst=self._out, interpolation=cv2.INTER_AREA)
        return self._out, scale


def clamp_box(x: float, y: float, w: float, h: float, frame_w: int, frame_h: int) -> Box:
    """A float box → integer (x, y, w, h) inside the frame."""
    x0 = max(0, int(round(x)))
    y0 = max(0, int(round(y)))
    x1 = min(frame_w, int(round(x + w)))
    y1 = min(frame_h, int(round(y + h)))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)
