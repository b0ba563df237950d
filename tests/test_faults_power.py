"""Power cuts: thirty SIGKILLs of the daemon at random moments while events flow and the broker
goes down and up. After each cut the outbox must open uncorrupted (SQLite's own integrity
check, and no "corrupt"/fallback line in the next run's log), and every event any run logged
must reach a persistent-session QoS 1 subscriber at least once (duplicates allowed).

Events flow fast on purpose: a five-per-second ``emotion_summary`` and a ``driver_absent``
alert per cycle of a face/blank clip, so most cuts land while an event is being committed or
sent. The moments come from a seeded generator: a failure can be replayed.
"""

from __future__ import annotations

import random
import sqlite3
import time

from broker import Collector, make_broker, needs_mosquitto
from daemon_helpers import DaemonProcess, alternating_clip, check_payload, daemon_config, prefix

pytestmark = needs_mosquitto

CUTS = 30


def integrity(db_path) -> str:
    db = sqlite3.connect(db_path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def test_thirty_power_cuts_lose_no_logged_event(tmp_path, emotion_model):
    rng = random.Random(18)
    broker = make_broker(tmp_path / "broker")
    device = "power-cut"
    topic = f"{prefix(device)}/events"
    sub = Collector(broker, [topic], client_id="power-cut-subscriber", persistent=True)
    clip = alternating_clip(tmp_path / "face_gap.mp4", face_s=1.0, blank_s=1.0, cycles=2)
    cfg = daemon_config(tmp_path, broker, device, emotion_model,
                        source={"uri": str(clip), "loop": True, "realtime": True},
                        detector={"type": "haar", "every_n": 2},
                        rules=[{"type": "driver_absent", "after_s": 0.3, "confirm_s": 0.2},
                               {"type": "emotion_summary", "period_s": 0.2}])
    db_path = tmp_path / "state" / "outbox.sqlite"
    runs: list[DaemonProcess] = []
    broker_up = True
    try:
        for cut in range(CUTS):
            if cut % 4 == 3:  # the broker goes down for four cuts, up for four...
                broker.stop() if broker_up else broker.start()
                broker_up = not broker_up
            proc = DaemonProcess(cfg, tmp_path / f"run{cut:02d}.log")
            runs.append(proc)
            if cut % 5 == 4:  # now and then during start-up (opening the outbox, loading models)
                time.sleep(rng.uniform(0.1, 1.0))
            else:
                proc.wait_log(r"emotiond running")
                time.sleep(rng.uniform(0.05, 1.0))
            proc.kill()
            log = proc.log()
            assert "corrupt" not in log and "in-memory queue" not in log, log[-3000:]
            if db_path.exists():
                assert integrity(db_path) == "ok", f"outbox corrupt after cut {cut}"
        if not broker_up:
            broker.start()
        last = DaemonProcess(cfg, tmp_path / "last.log")
        runs.append(last)
        last.wait_log(r"MQTT connected")
        logged = {(phase, uid) for p in runs for _kind, phase, uid in p.events()}
        assert len(logged) >= CUTS, "events must flow while the cuts land"  # ~90 here

        def received() -> set[tuple[str, str]]:
            return {(d["phase"], d["id"]) for d in (check_payload("events", m.payload) for m in sub.on(topic))}

        ok = sub.wait_for(lambda _m: received() >= logged, timeout=60)
        assert ok, f"{len(logged - received())} logged events never arrived: {sorted(logged - received())[:5]}"
        assert last.terminate(10) == 0
        assert "corrupt" not in last.log()
    finally:
        for p in runs:
            p.kill()
        sub.close()
        broker.stop()
