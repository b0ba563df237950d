"""YuNet (``cv2.FaceDetectorYN``): a 230 kB CNN that finds small, turned and partly hidden faces
Haar misses, and gives five landmarks (eyes, nose, mouth corners) the eye-state model uses.

OpenCV is imported where it runs: config validation imports this file for its model only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ...types import Detection
from .base import BaseDetectorConfig, DetectorError, Downscaler, clamp_box, drop_duplicates, near_regions


class YunetConfig(BaseDetectorConfig):
    type: Literal["yunet"] = Field("yunet", title="YuNet CNN face detector (needs its ONNX model)")
    model: Path = Field(Path("models/face_detection_yunet_2023mar.onnx"), title="YuNet ONNX model file")
    score_threshold: float = Field(0.6, gt=0.0, lt=1.0, title="lowest face score kept")
    nms_threshold: float = Field(0.3, gt=0.0, lt=1.0, title="overlap above which the weaker of two boxes is dropped")
    top_k: int = Field(50, ge=1, title="most candidate boxes kept before non-maximum suppression")


class YunetDetector:
    def __init__(self, cfg: YunetConfig) -> None:
        import cv2

        self.cfg = cfg
        if not cfg.model.is_file():
            raise DetectorError(f"YuNet model file not found: {cfg.model}")
        try:
            self.net = cv2.FaceDetectorYN.create(
                str(cfg.model), "", (320, 320), cfg.score_threshold, cfg.nms_threshold, cfg.top_k
            )
        except cv2.error as exc:
            raise DetectorError(f"YuNet model could not be loaded from {cfg.model}: {exc}") from None
        self._size: tuple[int, int] | None = None
        self._shrink = Downscaler(cfg.downscale_width)

    def _run(self, image: np.ndarray) -> np.ndarray:
        """Raw YuNet rows (x, y, w, h, 10 landmark coordinates, score) for one image."""
        size = (image.shape[1], image.shape[0])
        if size != self._size:
            self.net.setInputSize(size)
            self._size = size
        _, faces = self.net.detect(image)
        return faces if faces is not None else np.empty((0, 15), np.float32)

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        fh, fw = frame_bgr.shape[:2]
        small, scale = self._shrink(frame_bgr)
        inv = 1.0 / scale
        out = []
        for row in self._run(small):
            x, y, w, h = row[:4] * inv
            landmarks = (row[4:14].reshape(5, 2) * inv).astype(np.float32)
            out.append(Detection(clamp_box(x, y, w, h, fw, fh), float(row[14]), landmarks))
        return out

    def detect_part(self, frame_bgr: np.ndarray, part: int, parts: int) -> list[Detection]:
        """One network pass cannot be split: the whole scan runs as part 0, the others are empty."""
        return self.detect(frame_bgr) if part == 0 else []

    def detect_near(self, frame_bgr: np.ndarray, boxes) -> list[Detection]:
        """Faces around already-tracked boxes only (full-frame coordinates); see ``near_regions``."""
        fh, fw = frame_bgr.shape[:2]
        found: list[Detection] = []
        for region in near_regions(frame_bgr, boxes):
            lo, hi = region.size_limits()
            for row in self._run(region.image):
                if not lo <= max(row[2], row[3]) <= hi:
                    continue
                landmarks = (row[4:14].reshape(5, 2) / region.scale + (region.x0, region.y0)).astype(np.float32)
                found.append(Detection(clamp_box(*region.to_frame(*row[:4]), fw, fh), float(row[14]), landmarks))
        return drop_duplicates(found)
