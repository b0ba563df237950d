"""The ``source:`` section of config.yaml (no OpenCV here: config validation stays light)."""

from __future__ import annotations

from pydantic import Field

from ..configbase import Section


class SourceConfig(Section):
    uri: str = Field("0", title="camera index, /dev/videoN, rtsp:// or http(s):// MJPEG URL, video file or image folder")
    loop: bool = Field(False, title="files and folders: start again at the end instead of finishing")
    realtime: bool = Field(True, title="files and folders: play at the file's frame rate, else as fast as possible")
    width: int | None = Field(None, gt=0, title="camera: requested frame width")
    height: int | None = Field(None, gt=0, title="camera: requested frame height")
    fps: int | None = Field(None, gt=0, title="camera: requested frame rate; folders: playback rate")
    stall_timeout_s: float = Field(5.0, gt=0, title="no frame for this long: the source is offline and is reopened")
    reconnect_initial_s: float = Field(0.5, gt=0, title="first wait before reopening a failed source")
    reconnect_max_s: float = Field(30.0, gt=0, title="longest wait between reopen attempts (doubling up to it)")


def is_path(uri: str) -> bool:
    """A URI that names a file or folder (resolved against the config file's folder), not a
    camera index or a URL with a scheme."""
    return not uri.strip().isdigit() and "://" not in uri
