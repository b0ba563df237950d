"""A video file, decoded by OpenCV (FFmpeg). The catch-all kind: any URI no other kind claims."""

from __future__ import annotations

from pathlib import Path

import cv2

from .base import Reader, SourceKind
from .config import SourceConfig


def matches(uri: str) -> bool:
    return True


def open_file(cfg: SourceConfig) -> tuple[Reader | None, str]:
    if not Path(cfg.uri).is_file():
        return None, f"file not found: {cfg.uri}"
    cap = cv2.VideoCapture(cfg.uri)
    if not cap.isOpened():
        cap.release()
        return None, f"OpenCV cannot open {cfg.uri}"
    return cap, ""


KIND = SourceKind("file", matches, open_file, live=False)
