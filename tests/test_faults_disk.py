"""A full disk: the state directory on a 256 KiB tmpfs that the outbox fills while the broker is
down. The daemon keeps running, drops by its priority rule (summaries before alerts, oldest
first) and counts it; the file stays whole and durable, and takes new messages once space
returns. Needs root to mount (skips with the reason otherwise).
"""

from __future__ import annotations

import collections
import sqlite3
import subprocess
import time

import pytest

from broker import Collector, make_broker, needs_mosquitto
from daemon.publish.outbox import FILENAME, HEADROOM, Outbox, OutboxConfig, Priority
from daemon_helpers import DaemonProcess, alternating_clip, check_payload, daemon_config, prefix


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs at tmp_path/disk (unmounted at teardown)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here (root needed): {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def integrity(path) -> str:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def test_outbox_on_a_full_disk_keeps_alerts_and_stays_whole(tiny_disk):
    box = Outbox(OutboxConfig(state_dir=tiny_disk / "state"))
    for i in range(1500):  # ~750 KiB of messages into 256 KiB
        box.put("e", b"x" * 500 + str(i).encode(), priority=Priority.ALERT if i % 50 == 0 else Priority.SUMMARY)
    assert box.healthy and box.persistent, box.error  # never fell back to memory
    assert box.dropped_disk_full > 1000 and box.dropped == box.dropped_disk_full
    assert box.dropped + len(box) == 1500
    kept = box.peek(10_000)
    by_priority = collections.Counter(m.priority for m in kept)
    # Every alert kept (the disk holds ~80 of these): summaries made the room, newest first.
    assert by_priority[Priority.ALERT] == 30 and by_priority[Priority.SUMMARY] > 0, by_priority
    assert kept[-1].payload.endswith(b"1499")  # the newest message is always in
    for m in kept[:40]:  # delivered on the full disk: forgetting them must still work
        box.remove(m.id)
    box.close()
    assert integrity(tiny_disk / "state" / FILENAME) == "ok"
    again = Outbox(OutboxConfig(state_dir=tiny_disk / "state"))  # space has returned
    assert again.persistent and len(again) == len(kept) - 40
    for i in range(20):
        assert again.put("e", b"y" * 500, priority=Priority.SUMMARY) is not None
    assert again.dropped == 0 and len(again) == len(kept) - 20
    again.close()


@needs_mosquitto
def test_daemon_fills_a_tiny_disk_while_the_broker_is_down(tmp_path, tiny_disk, emotion_model):
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * 48 * 1024)  # someone else's file; removed later: space returns
    broker = make_broker(tmp_path / "broker")
    device = "full-disk"
    topic = f"{prefix(device)}/events"
    sub = Collector(broker, [topic, f"{prefix(device)}/stats"], client_id="full-disk-subscriber", persistent=True)
    broker.stop()
    clip = alternating_clip(tmp_path / "face_gap.mp4", face_s=1.0, blank_s=1.0, cycles=2)
    cfg = daemon_config(tmp_path, broker, device, emotion_model,
                        source={"uri": str(clip), "loop": True, "realtime": True},
                        detector={"type": "haar", "every_n": 2},
                        rules=[{"type": "driver_absent", "after_s": 0.3, "confirm_s": 0.2},
                               {"type": "emotion_summary", "period_s": 0.05}],
                        outbox={"state_dir": str(tiny_disk / "state")})
    proc = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:
        proc.wait_log(r"disk nearly full", timeout=60)

        def alerts_logged() -> int:
            return sum(kind == "driver_absent" for kind, _p, _i in proc.events())

        before = alerts_logged()
        deadline = time.monotonic() + 30
        while alerts_logged() < before + 4:  # two alerts (start, end) made on the full disk
            assert proc.running and time.monotonic() < deadline, proc.log()[-3000:]
            time.sleep(0.2)
        assert proc.running and "in-memory queue" not in proc.log()
        assert "dropped the oldest priority-2" not in proc.log(), "an alert went while summaries were queued"

        filler.unlink()
        broker.start()
        proc.wait_log(r"MQTT connected")
        alerts = {(phase, uid) for kind, phase, uid in proc.events() if kind == "driver_absent"}

        def received() -> set[tuple[str, str]]:
            return {(d["phase"], d["id"]) for d in (check_payload("events", m.payload) for m in sub.on(topic))}

        assert sub.wait_for(lambda _m: received() >= alerts, timeout=30), \
            f"alerts lost on the full disk: {sorted(alerts - received())}"
        ok = sub.wait_for(lambda _m: any(check_payload("stats", m.payload).get("outbox_dropped", 0) > 0
                                         for m in sub.on(f"{prefix(device)}/stats")), timeout=15)
        assert ok, "the stats must count what the full disk dropped"
        assert proc.terminate(10) == 0
        assert "in-memory queue" not in proc.log() and "corrupt" not in proc.log()
        assert integrity(tiny_disk / "state" / FILENAME) == "ok"
        assert HEADROOM < 256 * 1024
    finally:
        proc.kill()
        sub.close()
        broker.stop()
