"""Frame sources: a capture thread that keeps only the newest frame.

Real time means *fresh*: the capture thread reads as fast as the source delivers and drops
each frame into a one-slot holder; a frame the pipeline has not taken yet is replaced (and
counted in ``skipped``), so the pipeline never works through a backlog. Faults stay here: a
source that cannot be opened or stops delivering goes ``offline`` and is reopened with
exponential back-off, forever, without raising into the daemon.

Frames are *not* read into a reused buffer. ``VideoCapture.read(image)`` into one buffer would
save an allocation per frame, but the pipeline may still hold the previous frame (in the slot
or while it classifies) when the next read starts, so sharing would tear frames; a ring of
buffers needs a lifetime contract the pipeline cannot promise. A fresh array per frame costs a
fraction of the decode it follows, and every ``Frame`` stays valid for as long as it is held.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import cv2

from ..types import Frame
from .config import SourceConfig
from .normalize import to_bgr
from .registry import kind_of, source_kind

__all__ = ["Backoff", "FrameSource", "LatestFrame", "SourceConfig", "source_kind"]

log = logging.getLogger(__name__)

_IDLE_S = 0.01  # pause after a failed read of a live source, so a dead one does not spin
# A file's end is this many failed reads in a row: FFmpeg fails the read of a corrupt frame
# and decodes the next one, so one failure is a bad frame, not the end (a damaged recording
# played to its end, not stopped at its first bad frame). Failed reads at the real end are
# immediate, so waiting for the run costs nothing.
_FILE_END_AFTER = 25


class Backoff:
    """Exponential back-off between reopen attempts: initial, doubling, capped; reset on success."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = max(initial, maximum)
        self.current = initial

    def next(self) -> float:
        """The wait before the next attempt; the one after it will be twice as long (capped)."""
        delay = self.current
        self.current = min(self.current * 2.0, self.maximum)
        return delay

    def reset(self) -> None:
        self.current = self.initial


class LatestFrame:
    """A one-slot holder: ``put`` replaces an unread frame (counting it), ``take`` waits for one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self.skipped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.skipped += 1
            self._frame = frame
            self._cond.notify()

    def take(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        """No more frames will come: wake a waiting ``take`` now instead of at its timeout."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False


class FrameSource:
    """One camera, stream, file or folder, read by its own thread into a latest-frame slot.

    ``heartbeat`` is the ``time.monotonic()`` of the thread's last finished read or open
    attempt (failed ones too): a thread blocked inside ``open()``/``read()`` stops advancing it,
    which is what a watchdog needs to see. A back-off wait is progress (the thread is alive and
    will retry), so it keeps advancing the heartbeat while it waits.
    """

    def __init__(self, cfg: SourceConfig, on_status: Callable[[bool], None] | None = None) -> None:
        self.cfg = cfg
        self._kind = kind_of(cfg.uri)
        self.kind = self._kind.name
        self.live = self._kind.live
        self.on_status = on_status
        self.backoff = Backoff(cfg.reconnect_initial_s, cfg.reconnect_max_s)
        self.online = False
        self._reported: bool | None = None  # last state told to on_status; None = nothing yet
        self.finished = False
        self.heartbeat = time.monotonic()
        self.frames_read = 0
        self.rejected = 0  # frames read but unusable (empty, too small, odd pixel type): skipped
        self.converted = 0  # frames made 8-bit BGR here (grey, 16-bit, BGRA cameras)
        self._said: set[str] = set()  # rejection/conversion reasons already logged
        self.reconnects = 0
        self.fps_nominal: float | None = float(cfg.fps) if cfg.fps else None
        self._slot = LatestFrame()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def skipped(self) -> int:
        return self._slot.skipped

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._slot.reopen()
        self.finished = False
        self._thread = threading.Thread(target=self._run, name=f"capture:{self.cfg.uri}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._slot.close()
        if self._thread is not None:
            self._thread.join(timeout)

    def get(self, timeout: float) -> Frame | None:
        """The newest frame not yet taken, waiting up to ``timeout`` s; None if none came."""
        return self._slot.take(timeout)

    # -- capture thread -------------------------------------------------------------------

    def _set_online(self, online: bool, why: str = "", level: int = logging.WARNING) -> None:
        """Record and announce a change; the first result (even "offline") is always announced."""
        if online == self._reported:
            return
        self.online = self._reported = online
        if online:
            log.info("source %s online", self.cfg.uri)
        else:
            log.log(level, "source %s offline: %s", self.cfg.uri, why)
        if self.on_status is not None:
            try:
                self.on_status(online)
            except Exception:  # a faulty callback must not kill the capture thread
                log.exception("on_status callback failed")

    def _backoff_wait(self) -> None:
        """Wait the next back-off step, in slices, touching the heartbeat: an unplugged camera
        is an outage the daemon reports, not a hang the service manager should restart."""
        until = time.monotonic() + self.backoff.next()
        while not self._stop.is_set() and (left := until - time.monotonic()) > 0:
            self._stop.wait(min(left, 1.0))
            self.heartbeat = time.monotonic()

    def _run(self) -> None:
        attempts = 0
        try:
            while not self._stop.is_set():
                if attempts:
                    self.reconnects += 1
                attempts += 1
                cap, why = self._kind.open(self.cfg)
                self.heartbeat = time.monotonic()
                if cap is None:
                    self._set_online(False, why)
                    self._backoff_wait()
                    continue
                try:
                    outcome = self._read_all(cap)
                finally:
                    cap.release()
                if outcome == "end":
                    if not self.cfg.loop:
                        self.finished = True
                        log.info("source %s finished after %d frames", self.cfg.uri, self.frames_read)
                        return
                    attempts = 0  # a loop restart is not a reconnect
                elif outcome == "failed":
                    self._backoff_wait()
        finally:
            self._set_online(False, "finished" if self.finished else "stopped", logging.INFO)
            self._slot.close()

    def _usable(self, image):
        """The frame as 8-bit BGR, or None (counted, logged once per reason) if unusable."""
        image, what = to_bgr(image)
        if image is None:
            self._count_rejected(1, what)
        elif what:
            self.converted += 1
            self._say_once(what, f"converting frames: {what} (counted in stats: frames_converted)")
        return image

    def _count_rejected(self, n: int, why: str) -> None:
        self.rejected += n
        self._say_once(why, f"skipping {why} (counted in stats: frames_rejected, {self.rejected} so far)")

    def _say_once(self, key: str, message: str) -> None:
        """Log a frame problem the first time it is seen: a bad camera must not flood the log."""
        key = key.split(" (")[0]
        if key not in self._said:
            self._said.add(key)
            log.warning("source %s: %s", self.cfg.uri, message)

    def _read_all(self, cap) -> str:
        """Read until the stop flag ("stop"), a file's end ("end") or a fault ("failed")."""
        fps = cap.get(cv2.CAP_PROP_FPS) if self.kind == "file" else 0.0
        if fps and 0 < fps < 1000:
            self.fps_nominal = fps
        pace = self.cfg.realtime and not self.live and self.fps_nominal
        period = 1.0 / self.fps_nominal if pace else 0.0
        t0 = time.monotonic()
        n = 0  # frames since t0, for the pacing schedule
        got_any = False
        failed_in_row = 0
        last_frame = t0
        while not self._stop.is_set():
            ok, image = cap.read()
            now = time.monotonic()
            self.heartbeat = now
            if not ok or image is None:
                failed_in_row += 1
                if not self.live:
                    if failed_in_row < _FILE_END_AFTER:
                        continue
                    if not got_any:
                        self._set_online(False, f"no frame could be read from {self.cfg.uri}")
                        return "failed"
                    return "end"
                if now - last_frame >= self.cfg.stall_timeout_s:
                    self._set_online(False, f"no frame for {now - last_frame:.1f} s")
                    return "failed"
                self._stop.wait(_IDLE_S)
                continue
            if failed_in_row and got_any:  # a good frame after failed reads: those were bad frames
                self._count_rejected(failed_in_row, "undecodable frames")
            failed_in_row = 0
            image = self._usable(image)
            if image is None:  # not a frame: a stream of only these stalls like no frames at all
                continue
            last_frame = now
            self.frames_read += 1
            self._slot.put(Frame(image, self.frames_read - 1, now, time.time()))
            if not got_any:
                got_any = True
                self.backoff.reset()
                self._set_online(True)
            n += 1
            if pace:
                # Due times come from the start, not from the last sleep, so pacing does not
                # drift; after a long hiccup (> 1 s behind) start the schedule again from now.
                due = t0 + n * period
                lag = due - time.monotonic()
                if lag > 0:
                    self._stop.wait(lag)
                elif lag < -1.0:
                    t0, n = time.monotonic(), 0
        return "stop"
