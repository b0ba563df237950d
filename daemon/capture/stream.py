"""Network cameras: RTSP, RTMP, HTTP(S) MJPEG, UDP/TCP, read through OpenCV's FFmpeg backend."""

from __future__ import annotations

import cv2

from .base import Reader, SourceKind
from .config import SourceConfig

SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


def matches(uri: str) -> bool:
    return uri.lower().startswith(SCHEMES)


def open_stream(cfg: SourceConfig) -> tuple[Reader | None, str]:
    # Bound how long open()/read() may block (FFmpeg honours both), so a dead stream turns
    # into a failed call (then offline and back-off) instead of a hung capture thread.
    timeout_ms = int(cfg.stall_timeout_s * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
    cap = cv2.VideoCapture(cfg.uri, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        return None, f"OpenCV cannot open {cfg.uri}"
    return cap, ""


KIND = SourceKind("stream", matches, open_stream, live=True)
