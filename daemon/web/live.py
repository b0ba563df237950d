"""The live page's feed: the payloads MQTT gets, kept for Server-Sent-Events viewers.

``LiveFeed`` is one more output of the publish fan-out, so the page sees exactly what the
broker sees (``state``, ``events``, ``stats``, ``camera/status``), when the broker sees it.
While a page is open the pipeline thread also hands it, a few times a second, a state payload
and the rules' running figures (the road direction and its calibration, PERCLOS, visitors):
MQTT's state goes out only when the face or its label changes, and a page needs the eye
closure and head pose as they move.

What each call costs the thread that publishes: a lock, a reference appended to a ring and a
wake-up of the waiting viewers. Nothing is encoded or written there; every viewer's thread
encodes and writes its own copy (``Message.data`` is encoded once and shared).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..publish.payloads import camera_payload, encode, iso

__all__ = ["LiveFeed", "Message", "sse_frame"]

SAMPLE_HZ = 5.0  # live state payloads while a page is open (the page's plots and gauges)
RING = 512  # messages a slow viewer may fall behind before it is sent a fresh replay
EVENTS_KEPT = 50  # events a newly opened page starts with (open alerts are kept until they end)


def sse_frame(event: str, data: bytes) -> bytes:
    """One Server-Sent-Events message (``data`` is one line of compact JSON)."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


class Message:
    """One payload on one topic; its SSE bytes are built by the first viewer that sends it."""

    __slots__ = ("seq", "topic", "payload", "_data")

    def __init__(self, seq: int, topic: str, payload: Mapping[str, Any]) -> None:
        self.seq, self.topic, self.payload = seq, topic, payload
        self._data: bytes | None = None

    @property
    def data(self) -> bytes:
        if self._data is None:  # two viewers racing here build the same bytes: no lock needed
            self._data = sse_frame(self.topic, encode(self.payload))
        return self._data


class LiveFeed:
    """A ``Publisher`` (see ``daemon.publish.base``) that keeps the newest payloads for the page.

    ``start``/``stop`` do nothing: a reload that rebuilds the outputs stops the old fan-out, and
    the open pages must stay connected; the web endpoint ends the streams (``close``).
    """

    name = "live"

    def __init__(self, device: str, sample_hz: float = SAMPLE_HZ, ring: int = RING, events_kept: int = EVENTS_KEPT) -> None:
        self.device = device
        self.viewers = 0  # read by the pipeline thread on every frame
        self.sample_hz = sample_hz
        self._period = 1.0 / sample_hz
        self._next_sample = 0.0
        self._cond = threading.Condition()
        self._seq = itertools.count(1)
        self._last = 0
        self._ring: deque[Message] = deque(maxlen=ring)
        self._latest: dict[str, Message] = {}  # state, stats, camera/status, rules: the newest of each
        self._events: deque[Message] = deque(maxlen=events_kept)
        self._open: dict[str, Message] = {}  # alert id -> its latest step, until the end step
        self.closed = False

    # -- Publisher ----------------------------------------------------------------------------
    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def publish_state(self, payload: Mapping[str, Any]) -> None:
        self._put("state", payload)

    def publish_event(self, payload: Mapping[str, Any]) -> None:
        self._put("events", payload)

    def publish_stats(self, payload: Mapping[str, Any]) -> None:
        self._put("stats", payload)

    def publish_camera_status(self, online: bool) -> None:
        self._put("camera/status", camera_payload(online, self.device))

    def health(self) -> dict[str, Any]:
        return {"viewers": self.viewers}

    # -- the pipeline thread, while a page is open -----------------------------------------------
    def due(self, now: float) -> bool:
        """A live sample is wanted: a page is open and the last sample is ``1/sample_hz`` old."""
        return bool(self.viewers) and now >= self._next_sample

    def sample(self, now: float, t_wall: float, state: Mapping[str, Any], rules: Mapping[str, Any]) -> None:
        self._next_sample = now + self._period
        # Rules first: the page draws the road zone from them when the state arrives.
        self._put("rules", {"schema": state.get("schema", 1), "device": self.device, "ts": iso(t_wall), "rules": rules})
        self._put("state", state)

    def _put(self, topic: str, payload: Mapping[str, Any]) -> None:
        with self._cond:
            msg = Message(next(self._seq), topic, payload)
            self._last = msg.seq
            self._ring.append(msg)
            if topic == "events":
                self._events.append(msg)
                alert = payload.get("id")
                if payload.get("phase") == "end":
                    self._open.pop(alert, None)
                else:
                    self._open[alert] = msg
            else:
                self._latest[topic] = msg
            self._cond.notify_all()

    # -- viewers ---------------------------------------------------------------------------------
    @contextmanager
    def watching(self) -> Iterator[None]:
        with self._cond:
            self.viewers += 1
        try:
            yield
        finally:
            with self._cond:
                self.viewers -= 1

    def replay(self) -> tuple[int, list[Message]]:
        """What a page starts with, oldest first: the open alerts and the last events, then the
        newest camera status, stats, rules figures and state; and the number to wait after."""
        with self._cond:
            events = {m.seq: m for m in (*self._open.values(), *self._events)}
            return self._last, [events[s] for s in sorted(events)] + [
                self._latest[t] for t in ("camera/status", "stats", "rules", "state") if t in self._latest]

    def wait(self, after: int, timeout: float) -> list[Message] | None:
        """Messages numbered above ``after`` (waiting up to ``timeout`` for one); None when the
        viewer fell so far behind that some left the ring (it should replay)."""
        with self._cond:
            if self._last <= after and not self.closed:
                self._cond.wait(timeout)
            if self._last <= after:
                return []
            if not self._ring or self._ring[0].seq > after + 1:
                return None
            return list(itertools.islice(self._ring, len(self._ring) - (self._last - after), None))

    def close(self) -> None:
        """Wake every viewer: the endpoint is stopping."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()
