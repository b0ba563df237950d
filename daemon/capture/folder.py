"""A folder of still images (jpg/png, sorted by name), played as a video."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from .base import Reader, SourceKind
from .config import SourceConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def list_images(folder: Path) -> list[Path]:
    """The images of a folder in name order: what a folder source plays and what
    ``emotiond analyze`` reads (one listing for both). Anything but a folder counts: a named
    pipe that stops delivering is how the tests hang a capture thread on purpose."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


class FolderReader:
    """Images of a folder behind the calls the capture thread uses."""

    def __init__(self, folder: Path) -> None:
        self.paths = list_images(folder)
        self.pos = 0

    def isOpened(self) -> bool:  # noqa: N802 - mirrors cv2.VideoCapture
        return bool(self.paths)

    def read(self) -> tuple[bool, np.ndarray | None]:
        while self.pos < len(self.paths):
            path = self.paths[self.pos]
            self.pos += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return True, image
            log.warning("skipping unreadable image %s", path)
        return False, None

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.paths = []


def matches(uri: str) -> bool:
    return Path(uri).is_dir()


def open_folder(cfg: SourceConfig) -> tuple[Reader | None, str]:
    reader = FolderReader(Path(cfg.uri))
    return (reader, "") if reader.isOpened() else (None, f"no .jpg/.png images in folder {cfg.uri}")


KIND = SourceKind("folder", matches, open_folder, live=False)
