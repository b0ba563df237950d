"""Local cameras: a V4L2 device (``/dev/videoN``) or an OpenCV camera index (``0``)."""

from __future__ import annotations

import re

import cv2

from .base import Reader, SourceKind
from .config import SourceConfig

_DEV_VIDEO = re.compile(r"^/dev/video(\d+)$")


def matches(uri: str) -> bool:
    return uri.strip().isdigit() or bool(_DEV_VIDEO.match(uri))


def open_camera(cfg: SourceConfig) -> tuple[Reader | None, str]:
    m = _DEV_VIDEO.match(cfg.uri)
    cap = cv2.VideoCapture(int(m.group(1)) if m else int(cfg.uri))
    # Set after opening: camera backends that lack a property ignore set(), whereas an
    # unsupported open parameter can make a backend refuse to open at all.
    for prop, value in (
        (cv2.CAP_PROP_FRAME_WIDTH, cfg.width),
        (cv2.CAP_PROP_FRAME_HEIGHT, cfg.height),
        (cv2.CAP_PROP_FPS, cfg.fps),
        (cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(cfg.stall_timeout_s * 1000)),
    ):
        if value and cap.isOpened():
            cap.set(prop, value)
    if not cap.isOpened():
        cap.release()
        return None, f"OpenCV cannot open {cfg.uri}"
    return cap, ""


KIND = SourceKind("camera", matches, open_camera, live=True)
