"""Is a new release healthy? Before the switch: its model loads, agrees with its manifest and
gives valid outputs on the golden face shipped with it. After the switch: a health window in
which frames flow, faces are classified (when they were before), no stage fails, and frames/s
stays above a share of what it was before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def golden_check(model_path: Path, golden: Path | None, label: str | None, threads: int = 1) -> str | None:
    """None when the model gives a valid probability row on the golden face (the whole image is
    the face), with ``label`` on top when one is given; else why not."""
    import cv2

    from ..model.tflite import ModelError, TfliteModel

    try:
        model = TfliteModel(model_path, threads=threads)
    except ModelError as exc:
        return f"model refused: {exc}"
    if golden is not None:
        image = cv2.imread(str(golden), cv2.IMREAD_COLOR)
        if image is None:
            return f"golden face {golden.name} is not an image"
    else:
        image = np.full((96, 96, 3), 128, np.uint8)
    h, w = image.shape[:2]
    try:
        probs = model.classify(image, [(0, 0, w, h)])
    except (RuntimeError, ValueError) as exc:
        return f"model failed on the golden face: {exc}"
    row = np.asarray(probs, np.float64)
    if row.shape != (1, len(model.labels)) or not np.all(np.isfinite(row)):
        return f"model outputs invalid on the golden face: shape {row.shape}, labels {len(model.labels)}"
    if np.any(row < -1e-3) or abs(float(row.sum()) - 1.0) > 0.05:
        return f"model outputs are not probabilities on the golden face (sum {row.sum():.3f})"
    top = model.labels[int(np.argmax(row[0]))]
    if label is not None and top != label:
        return f"golden face classified {top!r}, expected {label!r}"
    return None


@dataclass
class Before:
    """The running release's figures at the switch."""

    fps: float
    faces_classified: bool


class HealthWindow:
    """Fed counters by the runtime; says ``ok``, or why not, once the window has run."""

    def __init__(self, before: Before, window_s: float, min_frames: int, min_fps_share: float, require_faces: bool,
                 t0: float, frames0: int, classified0: int) -> None:
        self.before = before
        self.window_s = window_s
        self.min_frames = min_frames
        self.min_fps_share = min_fps_share
        self.require_faces = require_faces
        self.t0, self.frames0, self.classified0 = t0, frames0, classified0
        self.frames = 0
        self.classified = 0
        self.error: str | None = None

    def observe(self, frames: int, classified: int, error: str | None = None) -> None:
        self.frames = frames - self.frames0
        self.classified = classified - self.classified0
        if error and self.error is None:
            self.error = error

    def fps(self, now: float) -> float:
        return self.frames / max(now - self.t0, 1e-6)

    def verdict(self, now: float) -> tuple[bool, str] | None:
        """None while the window runs; (True, figures) or (False, reason) when it is over (a
        stage error ends it at once)."""
        if self.error is not None:
            return False, f"stage error: {self.error}"
        if now - self.t0 < self.window_s:
            return None
        fps = self.fps(now)
        figures = f"{self.frames} frames, {self.classified} faces classified, {fps:.1f} frames/s " \
                  f"(before {self.before.fps:.1f})"
        if self.before.fps > 0 and self.frames < self.min_frames:  # (no frames before: a camera offline)
            return False, f"frames not flowing: {figures}, at least {self.min_frames} needed"
        if self.require_faces and self.before.faces_classified and self.classified == 0:
            return False, f"no face classified: {figures}"
        if self.min_fps_share > 0 and self.before.fps > 0 and fps < self.min_fps_share * self.before.fps:
            return False, f"too slow: {figures}, below {self.min_fps_share:.0%} of before"
        return True, figures
