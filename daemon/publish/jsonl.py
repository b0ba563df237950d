"""JSON lines output: every payload as one line ``{"topic": ..., "payload": {...}}`` in a file or
on stdout, for devices that ship logs rather than talk MQTT and for piping into other tools
(``emotiond run | jq 'select(.topic == "events").payload'``).

Lines carry the same payloads as MQTT (validated by the same JSON Schemas), under the topic
name without the device prefix: ``events``, ``state``, ``stats``, ``camera/status``.

Durability: an event line is flushed and fsync'd before ``publish_event`` returns (an alert the
daemon logged is on disk); state and stats lines are only flushed. Rotation: when the file
passes ``max_bytes`` it is renamed to ``<path>.1`` (older ones shift up to ``backups``) and a new
file is started, so the output never fills the disk; ``max_bytes: 0`` only appends (leave
rotation to logrotate with ``copytruncate``). A write that fails (disk full, file removed) is
logged, counted in stats (``outputs.<name>.errors``) and retried on the next line with the file
reopened; it never stops the daemon.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import Field, field_validator

from ..configbase import Section
from .payloads import camera_payload, encode

log = logging.getLogger(__name__)

STDOUT = "-"
TOPICS = ("events", "state", "stats", "camera/status")


class JsonlConfig(Section):
    type: Literal["jsonl"] = Field("jsonl", title="JSON lines to a file or stdout")
    name: str = Field("jsonl", min_length=1, title="name of this output in stats and logs")
    path: str = Field(STDOUT, title="file to append to; '-' = standard output")
    topics: list[Literal["events", "state", "stats", "camera/status"]] = Field(
        list(TOPICS), title="which payloads to write")
    max_bytes: int = Field(10_000_000, ge=0, title="rotate the file when it passes this size (0 = never rotate)")
    backups: int = Field(3, ge=0, le=100, title="rotated files kept (<path>.1 is the newest)")
    fsync_events: bool = Field(True, title="fsync after each event line (an accepted alert is on disk)")

    @field_validator("topics")
    @classmethod
    def _some_topic(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("name at least one of " + ", ".join(TOPICS))
        return v


class JsonlPublisher:
    """Appends payload lines to one file (or stdout); thread-safe (events may come from the
    pipeline thread and the shutdown path)."""

    def __init__(self, cfg: JsonlConfig, device_id: str) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.device_id = device_id
        self.path = None if cfg.path == STDOUT else Path(cfg.path)
        self.topics = frozenset(cfg.topics)
        self.written = 0
        self.errors = 0
        self.rotations = 0
        self._fh: IO[bytes] | None = None
        self._size = 0
        self._lock = threading.Lock()

    # -- Publisher --------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            self._open()

    def stop(self) -> None:
        with self._lock:
            if self._fh is not None and self.path is not None:
                try:
                    self._fh.close()
                except OSError:
                    pass
            elif self._fh is not None:
                self._flush_quietly()
            self._fh = None

    def publish_event(self, payload: Mapping[str, Any]) -> None:
        self._write("events", payload, durable=self.cfg.fsync_events)

    def publish_state(self, payload: Mapping[str, Any]) -> None:
        self._write("state", payload)

    def publish_stats(self, payload: Mapping[str, Any]) -> None:
        self._write("stats", payload)

    def publish_camera_status(self, online: bool) -> None:
        self._write("camera/status", camera_payload(online, self.device_id))

    def health(self) -> dict[str, Any]:
        return {"written": self.written, "errors": self.errors, "rotations": self.rotations}

    # -- file handling ----------------------------------------------------------------------
    def _open(self) -> None:
        if self.path is None:
            self._fh = sys.stdout.buffer
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")  # noqa: SIM115 - held open for the daemon's life
        self._size = self._fh.tell()

    def _rotate(self) -> None:
        """<path> → <path>.1 → ... → <path>.<backups> (the oldest is dropped), then a new file."""
        assert self.path is not None and self._fh is not None
        self._fh.close()
        self._fh = None
        if self.cfg.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(self.cfg.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self.rotations += 1
        self._open()

    def _flush_quietly(self) -> None:
        try:
            if self._fh is not None:
                self._fh.flush()
        except (OSError, ValueError):
            pass

    def _write(self, topic: str, payload: Mapping[str, Any], durable: bool = False) -> None:
        if topic not in self.topics:
            return
        line = b'{"topic":' + json.dumps(topic).encode() + b',"payload":' + encode(payload) + b"}\n"
        with self._lock:
            try:
                if self._fh is None:
                    self._open()
                assert self._fh is not None
                if self.path is not None and self.cfg.max_bytes and self._size and self._size + len(line) > self.cfg.max_bytes:
                    self._rotate()
                self._fh.write(line)
                self._fh.flush()
                if durable and self.path is not None:
                    os.fsync(self._fh.fileno())
                self._size += len(line)
                self.written += 1
            except (OSError, ValueError) as exc:
                self.errors += 1
                if self.errors == 1 or self.errors % 100 == 0:
                    log.error("jsonl output %s: cannot write %s line (%s; %d failed so far)",
                              self.cfg.path, topic, exc, self.errors)
                self._drop_handle()

    def _drop_handle(self) -> None:
        """After a failed write: close the file so the next line reopens it (a rotated-away or
        deleted file, a disk that has space again)."""
        if self.path is not None and self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None


def build(cfg: JsonlConfig, ctx: Any) -> JsonlPublisher:
    return JsonlPublisher(cfg, ctx.device)
