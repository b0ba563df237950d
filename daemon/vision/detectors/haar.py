"""OpenCV's Haar cascade: no model file to ship (it is inside opencv-python-headless), a few
milliseconds on a downscaled grey frame, good on frontal faces such as a driver's.

OpenCV is imported where it runs: config validation imports this file for its model only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ...types import Detection
from .base import BaseDetectorConfig, DetectorError, Downscaler, clamp_box, drop_duplicates, near_regions

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


class HaarConfig(BaseDetectorConfig):
    type: Literal["haar"] = Field("haar", title="OpenCV Haar cascade (bundled with OpenCV)")
    cascade: Path | None = Field(None, title="cascade XML; default: OpenCV's haarcascade_frontalface_default.xml")
    scale_factor: float = Field(1.2, gt=1.0, title="image pyramid step between detection scales (smaller = slower, finds more)")
    min_neighbors: int = Field(5, ge=0, title="overlapping hits needed to keep a face (higher = fewer false faces)")
    min_size: float = Field(0.15, gt=0.0, le=1.0, title="smallest face, as a fraction of the frame's shorter side (smaller = slower)")
    equalize: bool = Field(True, title="equalise the grey histogram first (helps in dim or uneven light)")


def default_cascade_path() -> Path:
    import cv2

    data = getattr(cv2, "data", None)
    if data is None:
        raise DetectorError(
            "this OpenCV build has no cv2.data.haarcascades; install opencv-python-headless>=4.12,<5 "
            "or set detector.cascade to a cascade XML file"
        )
    return Path(data.haarcascades) / DEFAULT_CASCADE


class HaarDetector:
    def __init__(self, cfg: HaarConfig) -> None:
        import cv2

        self.cfg = cfg
        path = cfg.cascade or default_cascade_path()
        if not path.is_file():
            raise DetectorError(f"Haar cascade file not found: {path}")
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise DetectorError(f"Haar cascade file could not be loaded: {path}")
        self._shrink = Downscaler(cfg.downscale_width)
        self._grey: np.ndarray | None = None

    def _prepared(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, float]:
        """(downscaled, equalised grey frame, scale)."""
        import cv2

        small, scale = self._shrink(frame_bgr)
        # Grey after shrinking: the colour conversion then touches a quarter of the pixels.
        if small.ndim == 3:
            if self._grey is None or self._grey.shape != small.shape[:2]:
                self._grey = np.empty(small.shape[:2], np.uint8)
            grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY, dst=self._grey)
        else:
            grey = small
        if self.cfg.equalize:
            grey = cv2.equalizeHist(grey, dst=grey if grey is self._grey else None)
        return grey, scale

    def _window_sizes(self, grey_hw: tuple[int, int]) -> list[int]:
        """The face sizes (px) a whole-frame scan tries, as detectMultiScale steps them."""
        h, w = grey_hw
        base = self.cascade.getOriginalWindowSize()
        smallest = max(1, int(min(h, w) * self.cfg.min_size))
        sizes, factor = [], 1.0
        while round(base[0] * factor) <= w and round(base[1] * factor) <= h:
            if round(base[0] * factor) >= smallest:
                sizes.append(round(base[0] * factor))
            factor *= self.cfg.scale_factor
        return sizes

    def _scan(self, frame_bgr: np.ndarray, sizes: tuple[int, int] | None) -> list[Detection]:
        fh, fw = frame_bgr.shape[:2]
        grey, scale = self._prepared(frame_bgr)
        if sizes is None:
            side = max(1, int(min(grey.shape[:2]) * self.cfg.min_size))
            sizes = (side, 0)
        lo, hi = sizes
        boxes = self.cascade.detectMultiScale(
            grey, scaleFactor=self.cfg.scale_factor, minNeighbors=self.cfg.min_neighbors, minSize=(lo, lo), maxSize=(hi, hi)
        )
        inv = 1.0 / scale
        return [
            Detection(clamp_box(x * inv, y * inv, w * inv, h * inv, fw, fh))
            for x, y, w, h in (boxes if len(boxes) else ())
        ]

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        return self._scan(frame_bgr, None)

    def detect_search(self, frame_bgr: np.ndarray) -> list[Detection]:
        """The plain scan: Haar's smallest face is a fraction of the frame (min_size), so a finer
        copy would not find smaller faces, only cost more."""
        return self.detect(frame_bgr)

    def scan_parts(self, every_n: int) -> int:
        return max(1, self.cfg.full_scan_every_n // max(1, every_n))

    def covers(self, part: int, parts: int, box, frame_hw: tuple[int, int]) -> bool:
        """Parts split the scan by face size; which sizes a part tries depends on the pyramid, so
        every part is taken to cover every face (a track's misses then count per round)."""
        return True

    def detect_part(self, frame_bgr: np.ndarray, part: int, parts: int) -> list[Detection]:
        """Part ``part`` of ``parts`` of a whole-frame scan, split by face size into roughly equal
        work (the pixels each pyramid level scans), so a scan can be spread over several frames.
        Neighbouring parts share one size step, so a face at a boundary keeps its neighbours."""
        if parts <= 1:
            return self.detect(frame_bgr)
        small_hw = self._shrink.size_of(frame_bgr.shape[:2])
        sizes = self._window_sizes(small_hw)
        if not sizes:
            return []
        work = np.cumsum([1.0 / (s * s) for s in sizes])
        work /= work[-1]
        first = int(np.searchsorted(work, part / parts, side="right")) if part else 0
        last = int(np.searchsorted(work, (part + 1) / parts, side="left"))
        if first > last:
            return []
        return self._scan(frame_bgr, (sizes[first], sizes[min(last + 1, len(sizes) - 1)]))

    def detect_near(self, frame_bgr: np.ndarray, boxes) -> list[Detection]:
        """Faces around already-tracked boxes only (full-frame coordinates); see ``near_regions``."""
        import cv2

        fh, fw = frame_bgr.shape[:2]
        found: list[Detection] = []
        for region in near_regions(frame_bgr, boxes):
            grey = region.image if region.image.ndim == 2 else cv2.cvtColor(region.image, cv2.COLOR_BGR2GRAY)
            if self.cfg.equalize:
                grey = cv2.equalizeHist(grey)
            lo, hi = region.size_limits()
            hits = self.cascade.detectMultiScale(
                grey, scaleFactor=self.cfg.scale_factor, minNeighbors=self.cfg.min_neighbors, minSize=(lo, lo), maxSize=(hi, hi)
            )
            found += [Detection(clamp_box(*region.to_frame(x, y, w, h), fw, fh)) for x, y, w, h in (hits if len(hits) else ())]
        return drop_duplicates(found)
