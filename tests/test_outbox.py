"""The durable outbox: order, persistence, the drop policy, corrupt and unwritable files, threads."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from daemon.publish.outbox import FILENAME, Outbox, OutboxConfig, Priority


def open_box(folder: Path, max_messages: int = 10_000) -> Outbox:
    return Outbox(OutboxConfig(state_dir=folder, max_messages=max_messages))


def test_messages_come_back_in_order_and_survive_reopen(tmp_path):
    box = open_box(tmp_path)
    ids = [box.put("t/events", f"e{i}".encode(), priority=Priority.ALERT if i % 2 else Priority.SUMMARY)
           for i in range(5)]
    box.remove(ids[1])
    box.close()

    again = open_box(tmp_path)
    assert again.persistent and again.healthy
    assert [m.payload for m in again.peek(10)] == [b"e0", b"e2", b"e3", b"e4"]
    assert [m.payload for m in again.peek(2, after=ids[2])] == [b"e3", b"e4"]
    assert len(again) == 4
    msg = again.peek(1)[0]
    assert (msg.topic, msg.qos, msg.retain) == ("t/events", 1, False)
    assert sqlite3.connect(tmp_path / FILENAME).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_full_outbox_drops_summaries_before_alerts_oldest_first(tmp_path):
    box = open_box(tmp_path, max_messages=4)
    box.put("e", b"alert1", priority=Priority.ALERT)
    box.put("e", b"summary1", priority=Priority.SUMMARY)
    box.put("e", b"alert2", priority=Priority.ALERT)
    box.put("e", b"summary2", priority=Priority.SUMMARY)

    box.put("e", b"alert3", priority=Priority.ALERT)  # evicts summary1
    box.put("e", b"alert4", priority=Priority.ALERT)  # evicts summary2
    assert [m.payload for m in box.peek(10)] == [b"alert1", b"alert2", b"alert3", b"alert4"]

    assert box.put("e", b"stats", priority=Priority.STATS) is None  # never evicts an alert
    box.put("e", b"alert5", priority=Priority.ALERT)  # full of alerts: the oldest alert goes
    assert [m.payload for m in box.peek(10)] == [b"alert2", b"alert3", b"alert4", b"alert5"]
    assert box.dropped == 4
    assert len(box) == 4


def test_corrupt_file_is_moved_aside_and_replaced(tmp_path, caplog):
    (tmp_path / FILENAME).write_bytes(b"this is not an SQLite database" * 100)
    with caplog.at_level(logging.ERROR, logger="daemon.publish.outbox"):
        box = open_box(tmp_path)
    assert "corrupt" in caplog.text and str(tmp_path / FILENAME) in caplog.text
    aside = list(tmp_path.glob(FILENAME + ".corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    row = box.put("e", b"after")
    assert box.persistent and [m.id for m in box.peek()] == [row]


def test_unwritable_location_falls_back_to_memory_and_keeps_working(tmp_path, caplog):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the state directory should be")
    with caplog.at_level(logging.ERROR, logger="daemon.publish.outbox"):
        box = open_box(blocker / "state")
    assert not box.healthy and not box.persistent
    assert "in-memory" in box.error and str(blocker) in box.error
    assert box.error in caplog.text
    row = box.put("e", b"live alert")
    assert [m.payload for m in box.peek()] == [b"live alert"]
    box.remove(row)
    assert len(box) == 0


def test_disk_failure_while_running_switches_to_memory(tmp_path):
    box = open_box(tmp_path)
    box._db.close()  # stands in for an I/O error on the SD card
    row = box.put("e", b"still queued")
    assert row is not None and not box.healthy and "failed" in box.error
    assert [m.payload for m in box.peek()] == [b"still queued"]


def test_concurrent_put_and_remove(tmp_path):
    box = open_box(tmp_path)
    removed: list[int] = []

    def producer(n: int) -> None:
        for i in range(200):
            box.put("e", f"{n}-{i}".encode())

    def consumer() -> None:
        for _ in range(300):
            for m in box.peek(5):
                box.remove(m.id)
                removed.append(m.id)

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(3)] + [threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    left = {m.id for m in box.peek(1000)}
    assert len(left) + len(set(removed)) == 600
    assert not left & set(removed)
