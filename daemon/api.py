"""Emotions from images in your own code: the daemon's pipeline, without the daemon.

    import cv2
    from daemon.api import Analyzer

    analyzer = Analyzer()                       # the installed models, the built-in defaults
    faces = analyzer.analyze(cv2.imread("face.jpg"))
    for face in faces:
        print(face.box, face.label, face.confidence, face.probs["happy"])

``Analyzer(config)`` takes what ``emotiond`` takes: a config file's path, or the same
settings as a dict (``{"detector": {"type": "yunet"}}``); unset keys keep their defaults and
model paths find the packaged models. It builds the models once; call ``analyze`` for every
image. Images are independent by default (detection on each, no smoothing, no tracks carried
from the previous image), exactly as ``emotiond analyze`` treats photos; ``video=True`` keeps tracks
and smoothing from one call to the next, for consecutive frames of one video.

Errors: ``daemon.config.ConfigError`` (invalid settings, every problem with its key path),
``daemon.model.tflite.ModelError`` (a missing or corrupt model, naming the file), ValueError
(not an image).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .analyze import forget_tracks, stills_config
from .config import load_config, parse_config
from .publish.payloads import probs_json
from .types import Frame
from .vision.pipeline import Pipeline
from .vision.signals import signals_json

__all__ = ["Analyzer", "Face", "analyze_image"]


@dataclass(frozen=True)
class Face:
    """One face in an image: where it is and what the models made of it."""

    box: tuple[int, int, int, int]  # x, y, width, height in pixels
    label: str  # the most probable emotion
    confidence: float  # its probability
    probs: dict[str, float] | None  # every emotion's probability in label order; None: not classified (too small/blurred)
    track: int  # the face's track id (stable across calls with video=True)
    primary: bool  # the primary face (the driver: the largest in tracker.primary_zone)
    # Face signals by name (eye_closed, head_pose: {yaw, pitch, ...}); None where not measured.
    signals: dict[str, Any] = field(default_factory=dict)


class Analyzer:
    """The pipeline of one config, built once; ``analyze(image)`` for each image."""

    def __init__(self, config: str | Path | Mapping[str, Any] | None = None, *, video: bool = False) -> None:
        if isinstance(config, (str, Path)):
            cfg = load_config(config)
        else:
            cfg = parse_config(dict(config or {}), "<daemon.api settings>", Path.cwd())
        self.video = video
        self.config = cfg if video else stills_config(cfg)
        self._pipeline = Pipeline.from_config(self.config)
        self.labels: tuple[str, ...] = self._pipeline.labels
        self._index = 0

    def analyze(self, image: np.ndarray, *, rgb: bool = False) -> list[Face]:
        """The faces in one image: a NumPy array, H x W x 3 uint8 in OpenCV's BGR order (or
        RGB with ``rgb=True``, as PIL and imageio give it), or H x W grey."""
        bgr = _as_bgr(image, rgb)
        if not self.video:
            forget_tracks(self._pipeline)
        now = time.monotonic()
        obs = self._pipeline.process(Frame(bgr, self._index, now, time.time()))
        self._index += 1
        return [
            Face(box=tuple(int(v) for v in f.box), label=f.label, confidence=round(float(f.confidence), 4),  # type: ignore[arg-type]
                 probs=probs_json(f.probs, self.labels), track=f.track_id, primary=f.primary,
                 signals=signals_json(f.signals))
            for f in obs.faces
        ]


def analyze_image(image: np.ndarray, config: str | Path | Mapping[str, Any] | None = None, *,
                  rgb: bool = False) -> list[Face]:
    """One image, one call: builds an ``Analyzer`` each time (use one for many images)."""
    return Analyzer(config).analyze(image, rgb=rgb)


def _as_bgr(image: np.ndarray, rgb: bool) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 NumPy image, got {type(image).__name__}"
                         f"{'' if not isinstance(image, np.ndarray) else ' of ' + str(image.dtype)}")
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) == 0:
        raise ValueError(f"expected an H x W x 3 (or x 4, or H x W grey) image, got shape {image.shape}")
    bgr = image[:, :, :3]
    if rgb:
        bgr = bgr[:, :, ::-1]
    return np.ascontiguousarray(bgr)
