"""YuNet (``cv2.FaceDetectorYN``): a 230 kB CNN that finds small, turned and partly hidden faces
Haar misses, and gives five landmarks (eyes, nose, mouth corners) the eye-state model uses.

Many small faces (a shop or street camera at 1080p): a face 20 px wide needs the frame at about
half resolution, and YuNet on a 960x540 copy costs ~35 ms on one core, too much for every
frame. With ``tiles: N`` one whole-frame scan is split into N+1 detection rounds: round 0 runs
on the whole frame at ``downscale_width`` (large, near faces), rounds 1..N each run on one
horizontal band of a ``tile_width`` copy (small, far faces). Bands overlap by the largest face
the coarse round can miss, so every face lies wholly inside one band or is found whole by the
coarse round. ``covers`` tells the tracker which faces a round could have seen.

Detections whose five landmarks are not laid out like a face (eyes side by side above the
mouth, inside a face-shaped box) are dropped and counted: ornaments, patterns and the backs of
heads give such boxes with middling scores.

OpenCV is imported where it runs: config validation imports this file for its model only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ...types import Box, Detection
from .base import BaseDetectorConfig, DetectorError, Downscaler, clamp_box, drop_duplicates, near_regions

MODEL_FILE = "face_detection_yunet_2023mar.onnx"
# The smallest face YuNet finds reliably, in pixels of the image it runs on (its finest anchor
# stride is 8 px; faces under ~10 px come and go).
MIN_FACE_PX = 12.0
# Landmark layout limits (fractions of the box): wide enough for a face turned ~60 degrees,
# tight enough to drop most non-faces.
EYE_SPAN = (0.12, 0.85)  # distance between the eyes / box width
ASPECT = (0.45, 1.8)  # box width / height


class YunetConfig(BaseDetectorConfig):
    type: Literal["yunet"] = Field("yunet", title="YuNet CNN face detector (its ONNX model ships in models/)")
    model: Path = Field(Path("models") / MODEL_FILE, title="YuNet ONNX model file")
    score_threshold: float = Field(0.6, gt=0.0, lt=1.0, title="lowest face score kept")
    nms_threshold: float = Field(0.3, gt=0.0, lt=1.0, title="overlap above which the weaker of two boxes is dropped")
    top_k: int = Field(5000, ge=1, title="most candidate boxes kept before non-maximum suppression")
    tiles: int = Field(0, ge=0, le=16, title="0: each scan is one pass at downscale_width; N: small faces are looked "
                                             "for in N bands of a tile_width copy, one band per detection round")
    tile_width: int = Field(960, ge=64, title="with tiles: width of the copy the bands are cut from (smaller = faster, "
                                              "misses smaller faces)")
    check_landmarks: bool = Field(True, title="drop detections whose landmarks are not laid out like a face")
    search_width: int = Field(640, ge=0, title="while no face is tracked, every other detection round looks at a copy "
                                               "this wide (0: never): a face too small or too dim and noisy at "
                                               "downscale_width, looked for while no face needs the frame's time")


def plausible(row: np.ndarray) -> bool:
    """Do YuNet's box and five landmarks look like a face? (row: x, y, w, h, 10 coords, score)"""
    x, y, w, h = (float(v) for v in row[:4])
    if w <= 0 or h <= 0 or not ASPECT[0] <= w / h <= ASPECT[1]:
        return False
    pts = row[4:14].reshape(5, 2)
    reye, leye, nose, rmouth, lmouth = pts
    span = float(np.hypot(*(leye - reye)))
    if not EYE_SPAN[0] * w <= span <= EYE_SPAN[1] * w:
        return False
    if leye[0] <= reye[0] or abs(leye[1] - reye[1]) > abs(leye[0] - reye[0]):  # side by side, roll under 45 deg
        return False
    eyes_y = (reye[1] + leye[1]) / 2.0
    mouth_y = (rmouth[1] + lmouth[1]) / 2.0
    if mouth_y <= eyes_y + 0.1 * h:  # the mouth below the eyes
        return False
    # Every landmark near the box (a loose margin: a turned face's far eye sits at its edge).
    lo, hi = np.array([x - 0.25 * w, y - 0.25 * h]), np.array([x + 1.25 * w, y + 1.25 * h])
    return bool(np.all((pts >= lo) & (pts <= hi)) and eyes_y - 0.1 * h <= nose[1] <= mouth_y + 0.1 * h)


class YunetDetector:
    def __init__(self, cfg: YunetConfig) -> None:
        import cv2

        self.cfg = cfg
        path = cfg.model
        if not path.is_file():
            raise DetectorError(f"YuNet model file not found: {path}")
        with open(path, "rb") as fh:
            head = fh.read(64)
        # An ONNX file is a protobuf ModelProto: it starts with field 1 (ir_version, varint, tag 0x08).
        if path.suffix.lower() != ".onnx" or not head.startswith(b"\x08"):
            raise DetectorError(f"YuNet model is not an ONNX file: {path} (detector.model must name "
                                f"{MODEL_FILE} or another YuNet .onnx)")
        try:
            self.net = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), cfg.score_threshold, cfg.nms_threshold, cfg.top_k
            )
        except cv2.error as exc:
            raise DetectorError(f"YuNet model could not be loaded from {path}: {exc}") from None
        self._size: tuple[int, int] | None = None
        self._shrink = Downscaler(cfg.downscale_width)
        self._tile = Downscaler(cfg.tile_width)
        self._search = Downscaler(cfg.search_width)
        self.dropped = 0  # detections whose landmarks were not face-like

    def _run(self, image: np.ndarray) -> np.ndarray:
        """Raw YuNet rows (x, y, w, h, 10 landmark coordinates, score) for one image."""
        size = (image.shape[1], image.shape[0])
        if size != self._size:
            self.net.setInputSize(size)
            self._size = size
        _, faces = self.net.detect(image)
        if faces is None:
            return np.empty((0, 15), np.float32)
        if self.cfg.check_landmarks:
            keep = np.array([plausible(r) for r in faces], bool)
            self.dropped += int(len(faces) - keep.sum())
            faces = faces[keep]
        return faces

    def _detections(self, rows: np.ndarray, scale: float, x0: float, y0: float, fw: int, fh: int) -> list[Detection]:
        inv = 1.0 / scale
        out = []
        for row in rows:
            x, y, w, h = row[:4] * inv
            landmarks = (row[4:14].reshape(5, 2) * inv + (x0, y0)).astype(np.float32)
            out.append(Detection(clamp_box(x + x0, y + y0, w, h, fw, fh), float(row[14]), landmarks))
        return out

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """A whole scan at once: the coarse pass, then every band (tiles), duplicates dropped."""
        fh, fw = frame_bgr.shape[:2]
        small, scale = self._shrink(frame_bgr)
        found = self._detections(self._run(small), scale, 0, 0, fw, fh)
        for part in range(1, self.cfg.tiles + 1):
            found += self._band(frame_bgr, part)
        return drop_duplicates(sorted(found, key=lambda d: -d.score)) if self.cfg.tiles else found

    def detect_search(self, frame_bgr: np.ndarray) -> list[Detection]:
        """A whole scan at ``search_width`` (the plain scan where that is not finer). The 1080p car
        clip in ``--variant night`` (dim, noisy): its driver's 120-px face is 20 px at 320, found
        there on 3-5 of 30 frames; at 640 on 30 of 30 (bench/RESULTS.md, 2026-12-08)."""
        fh, fw = frame_bgr.shape[:2]
        if self.cfg.search_width <= self.cfg.downscale_width or fw <= self.cfg.downscale_width:
            return self.detect(frame_bgr)
        fine, scale = self._search(frame_bgr)
        return self._detections(self._run(fine), scale, 0, 0, fw, fh)

    # -- a scan spread over rounds ---------------------------------------------------------

    def scan_parts(self, every_n: int) -> int:
        return 1 + self.cfg.tiles

    def _band_rows(self, part: int, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """Rows [y0, y1) of the frame that band ``part`` (1..tiles) covers, overlap included."""
        n, frame_h = self.cfg.tiles, frame_hw[0]
        pad = int(np.ceil(self._coarse_miss_px(frame_hw[1]) / 2.0))
        y0 = int(frame_h * (part - 1) / n) - pad
        y1 = int(frame_h * part / n) + pad
        return max(0, y0), min(frame_h, y1)

    def _coarse_miss_px(self, frame_w: int) -> float:
        """The largest face (frame px) the coarse pass may miss: bands must overlap by this."""
        width = self.cfg.downscale_width
        coarse_scale = min(1.0, width / max(1, frame_w)) if width else 1.0
        return 1.5 * MIN_FACE_PX / coarse_scale

    def _band(self, frame_bgr: np.ndarray, part: int) -> list[Detection]:
        import cv2

        fh, fw = frame_bgr.shape[:2]
        tile_h, _ = self._tile.size_of((fh, fw))
        scale = tile_h / fh
        y0, y1 = self._band_rows(part, (fh, fw))
        band = frame_bgr[y0:y1]
        if scale < 1.0:
            band = cv2.resize(band, (max(1, round(fw * scale)), max(1, round((y1 - y0) * scale))), interpolation=cv2.INTER_AREA)
        return self._detections(self._run(band), scale, 0, y0, fw, fh)

    def detect_part(self, frame_bgr: np.ndarray, part: int, parts: int) -> list[Detection]:
        """Part 0: the whole frame at downscale_width; parts 1..tiles: one band each."""
        if not self.cfg.tiles:
            return self.detect(frame_bgr) if part == 0 else []
        if part == 0:
            fh, fw = frame_bgr.shape[:2]
            small, scale = self._shrink(frame_bgr)
            return self._detections(self._run(small), scale, 0, 0, fw, fh)
        return self._band(frame_bgr, part)

    def covers(self, part: int, parts: int, box: Box, frame_hw: tuple[int, int]) -> bool:
        """The coarse round sees faces it can resolve; a band sees the faces wholly inside it."""
        if not self.cfg.tiles:
            return part == 0
        if part == 0:
            return max(box[2], box[3]) >= self._coarse_miss_px(frame_hw[1])
        y0, y1 = self._band_rows(part, frame_hw)
        return y0 <= box[1] and box[1] + box[3] <= y1

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
