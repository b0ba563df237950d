"""Durable store-and-forward queue for QoS 1 messages (alerts must survive outages and restarts).

paho keeps unacknowledged messages only in memory, so every event is committed to SQLite
(WAL, ``synchronous=FULL``) *before* it is handed to paho and deleted only when the broker's
PUBACK arrives. Delivery order is insertion order. When the queue is full the lowest priority
goes first (stats, then summaries; alerts last), oldest first within a priority.

A nearly full disk is a full queue: while the state directory has less than ``HEADROOM``
bytes free and the file has no free page to reuse, a new message takes the place of the
lowest-priority, oldest one by the same rule (counted in ``dropped`` and ``dropped_disk_full``)
instead of growing the file. The headroom is what SQLite needs to go on committing, deleting
and checkpointing: the write-ahead log is checkpointed every ``WAL_PAGES`` pages and truncated
back to that size, so it never outgrows it. Waiting for SQLite's "disk is full" instead would
be too late: a log that cannot be copied into a database that cannot grow frees nothing, and
deleting needs log space too.

A corrupt file is moved aside and recreated; a file that cannot be opened or written makes
the outbox fall back to an in-memory SQLite database, so live alerting goes on and
``healthy``/``error`` say why the backlog is no longer durable.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from enum import IntEnum
from pathlib import Path
from typing import NamedTuple

from pydantic import Field

from ..configbase import Section

log = logging.getLogger(__name__)

FILENAME = "outbox.sqlite"
MEMORY = ":memory:"
PAGE_SIZE = 4096  # SQLite's default page size, set explicitly below
WAL_PAGES = 16  # checkpoint the write-ahead log this often (SQLite's default, 1000, is 4 MB)
HEADROOM = (WAL_PAGES + 8) * PAGE_SIZE  # room for the log at its longest and one more transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (priority, id);
"""


class Priority(IntEnum):
    """Which messages a full outbox drops first (lowest value first)."""

    STATS = 0
    SUMMARY = 1
    ALERT = 2


class OutboxConfig(Section):
    state_dir: Path | None = Field(
        None, title="directory for outbox.sqlite (default: $STATE_DIRECTORY, else ~/.local/state/emotiond)")
    persistent: bool = Field(True, title="keep the queue on disk (false: memory only, lost on restart)")
    max_messages: int = Field(10_000, ge=1, title="queue bound; beyond it the lowest priority, oldest message is dropped")


class Message(NamedTuple):
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    priority: int


def default_state_dir() -> Path:
    """systemd's ``StateDirectory=`` (``/var/lib/emotiond``) when set, else the XDG state dir."""
    if env := os.environ.get("STATE_DIRECTORY"):
        return Path(env.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "emotiond"


class Outbox:
    """Thread-safe (paho's callback thread and the pipeline thread both use it)."""

    def __init__(self, cfg: OutboxConfig | None = None) -> None:
        self.cfg = cfg or OutboxConfig()
        self.max_messages = self.cfg.max_messages
        self.dropped = 0
        self.dropped_disk_full = 0  # the part of ``dropped`` that a nearly full disk forced
        self.error: str | None = None
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self.path: Path | None = None
        if not self.cfg.persistent:
            self._db = self._open(MEMORY)
            return
        self.path = (self.cfg.state_dir or default_state_dir()) / FILENAME
        try:
            self._db = self._open_file(self.path)
        except (OSError, sqlite3.Error) as exc:
            self._fall_back(f"cannot open outbox {self.path} ({exc})")

    # -- state ---------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        """False once the outbox has fallen back to memory (messages no longer survive a restart)."""
        return self.error is None

    @property
    def persistent(self) -> bool:
        return self.path is not None and self.error is None

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    # -- queue operations ------------------------------------------------------------------
    def put(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
            priority: int = Priority.ALERT) -> int | None:
        """Commit one message; return its row id, or None if the full queue refused it.

        A full queue drops its lowest-priority, oldest message to make room, but never one of
        a higher priority than the new message (then the new message is the one dropped).
        """
        row = (topic, bytes(payload), int(qos), int(bool(retain)), int(priority), time.time())
        with self._lock:
            return self._guarded(self._put, row)

    def peek(self, limit: int = 100, after: int = 0) -> list[Message]:
        """The oldest ``limit`` messages with ``id > after``, in the order they were put."""
        with self._lock:
            rows = self._guarded(lambda: self._db.execute(
                "SELECT id, topic, payload, qos, retain, priority FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit)).fetchall())
        return [Message(i, t, bytes(p), q, bool(r), pr) for i, t, p, q, r, pr in rows or ()]

    def remove(self, row_id: int) -> None:
        """Forget an acknowledged message (a no-op for an id already gone)."""
        with self._lock:
            self._guarded(self._remove, row_id)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- internals -------------------------------------------------------------------------
    def _disk_nearly_full(self) -> bool:
        if self.path is None or self.error is not None:
            return False
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < HEADROOM

    @staticmethod
    def _free_pages(db: sqlite3.Connection) -> int:
        """Pages freed by delivered messages: a new one reuses them without growing the file."""
        return db.execute("PRAGMA freelist_count").fetchone()[0]

    def _full(self, db: sqlite3.Connection, count: int) -> str | None:
        """Why the queue cannot grow (to log), or None if it can."""
        if count >= self.max_messages:
            return f"outbox full ({self.max_messages} messages)"
        if count and self._disk_nearly_full() and not self._free_pages(db):
            return f"disk nearly full (under {HEADROOM // 1024} KiB free in {self.path.parent})"
        return None

    def _put(self, row: tuple) -> int | None:
        db = self._db
        with db:
            count = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            if (why := self._full(db, count)) is not None:
                victim = db.execute("SELECT id, priority FROM outbox ORDER BY priority, id LIMIT 1").fetchone()
                self.dropped += 1
                if count < self.max_messages:
                    self.dropped_disk_full += 1
                if victim[1] > row[4]:
                    log.warning("%s: dropped a new priority-%d message on %s (%d dropped so far)",
                                why, row[4], row[0], self.dropped)
                    return None
                db.execute("DELETE FROM outbox WHERE id = ?", (victim[0],))
                log.warning("%s: dropped the oldest priority-%d message (%d dropped so far)",
                            why, victim[1], self.dropped)
            cur = db.execute(
                "INSERT INTO outbox (topic, payload, qos, retain, priority, created) VALUES (?, ?, ?, ?, ?, ?)", row)
            return cur.lastrowid

    def _remove(self, row_id: int) -> None:
        with self._db:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

    def _guarded(self, op, *args):
        """Run one operation; on a disk error switch to memory and run it again there."""
        try:
            return op(*args)
        except sqlite3.Error as exc:
            if self.error is not None:  # already in memory: a real bug, not a disk problem
                raise
            self._fall_back(f"outbox {self.path} failed ({exc})")
            return op(*args)

    def _fall_back(self, reason: str) -> None:
        self.error = reason + "; using an in-memory queue: alerts are still sent live but not kept across restarts"
        log.error("%s", self.error)
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
        self._db = self._open(MEMORY)

    def _open_file(self, path: Path) -> sqlite3.Connection:
        """Open (creating) the file; a corrupt one is renamed ``*.corrupt-<time>`` and replaced."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._open(str(path))
        except sqlite3.OperationalError:
            raise  # cannot open or write: not corruption, leave the file alone
        except sqlite3.DatabaseError as exc:
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            log.error("outbox %s is corrupt (%s): moved it to %s and started an empty one", path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{path}{suffix}")
                if src.exists():
                    src.rename(f"{aside}{suffix}")
            return self._open(str(path))

    @staticmethod
    def _open(target: str) -> sqlite3.Connection:
        db = sqlite3.connect(target, check_same_thread=False, isolation_level="DEFERRED")
        try:
            if target != MEMORY:
                db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a new file only; an existing one keeps its own
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
                db.execute(f"PRAGMA journal_size_limit={WAL_PAGES * PAGE_SIZE}")
                check = db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {check}")
            db.executescript(_SCHEMA)
        except sqlite3.Error:
            db.close()
            raise
        return db
