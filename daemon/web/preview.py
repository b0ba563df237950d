"""The live preview's frame slot: the pipeline thread's only contact with the web endpoint.

It costs one attribute check per frame while nobody watches; JPEG encoding (and drawing) happens
in a viewer's thread, at most ``preview_fps`` times a second however many viewers there are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np

from ..types import Observation
from ..vision.annotate import Overlay, draw


class PreviewSlot:
    """Latest annotated-to-be frame for preview viewers; the pipeline thread's only contact.

    ``viewers`` is read by the pipeline thread on every frame; ``offer`` is called only while
    it is non-zero. ``jpeg`` encodes a new frame at most once per ``period`` and shares the
    result between viewers.
    """

    def __init__(self) -> None:
        self.viewers = 0
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, Observation, Overlay | None] | None = None
        self._seq = 0
        self._encode = threading.Lock()
        self._jpeg_seq, self._jpeg_t, self._jpeg = 0, 0.0, b""

    def offer(self, image: np.ndarray, obs: Observation, overlay: Overlay | None = None) -> None:
        """Pipeline thread: keep a reference (no copy, no drawing here)."""
        with self._cond:
            self._latest = (image, obs, overlay)
            self._seq += 1
            self._cond.notify_all()

    @contextmanager
    def watching(self) -> Iterator[None]:
        with self._cond:
            self.viewers += 1
        try:
            yield
        finally:
            with self._cond:
                self.viewers -= 1
                if self.viewers == 0:
                    self._latest = None  # do not keep a frame alive for nobody

    def jpeg(self, after: int, period: float, quality: int, timeout: float) -> tuple[int, bytes] | None:
        """A JPEG newer than the one numbered ``after``: the shared one if it is younger than
        ``period``, else a fresh encode of the newest frame; None if no frame came in time."""
        with self._encode:
            if self._jpeg_seq > after and time.monotonic() - self._jpeg_t < period:
                return self._jpeg_seq, self._jpeg
            with self._cond:
                if not self._cond.wait_for(lambda: self._latest is not None and self._seq > max(after, self._jpeg_seq), timeout):
                    # No newer frame (source stalled): an older encode this viewer has not seen will do.
                    return (self._jpeg_seq, self._jpeg) if self._jpeg_seq > after else None
                seq, (image, obs, overlay) = self._seq, self._latest
            ok, buf = cv2.imencode(".jpg", draw(image, obs, overlay=overlay), [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                return None
            self._jpeg_seq, self._jpeg_t, self._jpeg = seq, time.monotonic(), buf.tobytes()
            return seq, self._jpeg
