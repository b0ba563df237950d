"""``emotiond-fleet-ingest``: every device's events and status, from the cluster into PostgreSQL.

The devices publish over MQTT to a NATS Server cluster (JetStream with its MQTT listener). NATS
stores every QoS 1 publish in its MQTT layer's own replicated stream, ``$MQTT_msgs`` (subject
``$MQTT.msgs.emotiond.<device>.events``), **before** it sends the device its PUBACK: reading that
stream is at-least-once from the moment the device's outbox lets the event go. (A stream of our
own on the plain subjects was tried first and measured losing events: while its leader is
re-elected after a node dies, plain publishes are not stored, but the devices got their PUBACKs.)
The stream keeps a message while some consumer has interest in it, so the ingest must be
consuming before the fleet publishes. The worker reads it through one **durable pull consumer**
per topic, shared by every worker: JetStream hands each message to one of them, so several workers share the load without doing the same work twice, and a message
a worker took but did not acknowledge (it died, its database went away) is delivered again after
``ack_wait``. Each batch is written in one transaction and acknowledged only after the commit;
the table's key (the event id, its phase and its timestamp: see ``schema.sql``) makes a
redelivery or a QoS 1 duplicate a no-op (``ON CONFLICT DO NOTHING``): at-least-once delivery,
exactly-once rows. The retained ``status`` (``online``, or ``offline`` from a clean stop or the
Last Will) goes into ``devices``; the retained ``update`` status (fleet updates) into
``device_versions`` (the latest per device; ``rollout_progress`` per group) and
``update_reports`` (each report; ``update_failures``). A database that goes away is retried with back-off; nothing is
acknowledged meanwhile.

    emotiond-fleet-ingest --nats nats://10.0.0.11:4222,nats://10.0.0.12:4222 \\
        --dsn "host=db dbname=fleet user=ingest" --workers-name ingest

Dependencies (the ``fleet`` extra): nats-py, psycopg 3. The daemon never imports this package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("emotiond.fleet")

STREAM = "$MQTT_msgs"  # NATS's MQTT layer: QoS 1 messages, stored before the PUBACK
SUBJECT_PREFIX = "$MQTT.msgs."
SCHEMA = Path(__file__).with_name("schema.sql")
INSERT_STEP = """
INSERT INTO alert_steps (id, phase, ts, device, type, rule, level, started_at, ended_at, details)
VALUES (%(id)s, %(phase)s, %(ts)s, %(device)s, %(type)s, %(rule)s, %(level)s, %(started_at)s, %(ended_at)s, %(details)s)
ON CONFLICT DO NOTHING"""
UPSERT_DEVICE = """
INSERT INTO devices (device, status, changed_at) VALUES (%s, %s, now())
ON CONFLICT (device) DO UPDATE SET status = EXCLUDED.status, changed_at = now()
WHERE devices.status IS DISTINCT FROM EXCLUDED.status"""
UPSERT_VERSION = """
INSERT INTO device_versions (device, device_group, version, state, target, reason, reason_code, checks, rolled_back,
                             refused, reported_at)
VALUES (%(device)s, %(group)s, %(version)s, %(state)s, %(target)s, %(reason)s, %(reason_code)s, %(checks)s,
        %(rolled_back)s, %(refused)s, %(ts)s)
ON CONFLICT (device) DO UPDATE SET
    device_group = EXCLUDED.device_group, version = EXCLUDED.version, state = EXCLUDED.state,
    target = EXCLUDED.target, reason = EXCLUDED.reason, reason_code = EXCLUDED.reason_code,
    checks = EXCLUDED.checks, rolled_back = EXCLUDED.rolled_back, refused = EXCLUDED.refused,
    reported_at = EXCLUDED.reported_at, received_at = now()
WHERE device_versions.reported_at <= EXCLUDED.reported_at"""
INSERT_REPORT = """
INSERT INTO update_reports (device, reported_at, state, device_group, version, target, reason_code, reason)
VALUES (%(device)s, %(ts)s, %(state)s, %(group)s, %(version)s, %(target)s, %(reason_code)s, %(reason)s)
ON CONFLICT DO NOTHING"""


@dataclass
class Counts:
    written: int = 0  # rows inserted
    duplicates: int = 0  # messages whose row was there already
    rejected: int = 0  # messages that are not an event (logged, acknowledged, not retried)
    statuses: int = 0
    updates: int = 0  # update status reports (device_versions)


def parse_event(subject: str, data: bytes) -> dict | None:
    """The row of one events message, or None when it is not a valid event."""
    try:
        doc = json.loads(data)
        row = {k: doc[k] for k in ("id", "phase", "ts", "device", "type")}
    except (ValueError, KeyError, TypeError):
        return None
    row.update(rule=doc.get("rule"), level=doc.get("level"), started_at=doc.get("started_at"),
               ended_at=doc.get("ended_at"), details=json.dumps(doc.get("details") or {}))
    return row


def parse_update(subject: str, data: bytes) -> dict | None:
    """The device_versions row of one ``<prefix>/<device>/update`` message, or None."""
    try:
        doc = json.loads(data)
        row = {k: doc[k] for k in ("device", "group", "state", "ts")}
    except (ValueError, KeyError, TypeError):
        return None
    row.update(version=doc.get("version"), target=doc.get("target"), reason=doc.get("reason"),
               reason_code=doc.get("reason_code"), checks=int(doc.get("checks") or 0),
               rolled_back=int(doc.get("rolled_back") or 0), refused=json.dumps(doc.get("refused") or {}))
    return row


def device_of(subject: str) -> str:
    """``$MQTT.msgs.emotiond.<device>.status`` -> ``<device>``."""
    parts = subject.removeprefix(SUBJECT_PREFIX).split(".")
    return ".".join(parts[1:-1]) if len(parts) >= 3 else subject


class Worker:
    def __init__(self, servers: list[str], dsn: str, prefix: str = "emotiond", durable: str = "ingest",
                 batch: int = 64, replicas: int = 3, ack_wait_s: float = 10.0) -> None:
        self.servers, self.dsn, self.prefix, self.durable = servers, dsn, prefix, durable
        self.batch, self.replicas, self.ack_wait_s = batch, replicas, ack_wait_s
        self.counts = Counts()
        self._db = None
        self._stop = asyncio.Event()

    # -- database -------------------------------------------------------------------------
    def _connect_db(self):
        import psycopg

        if self._db is None or self._db.closed:
            self._db = psycopg.connect(self.dsn, connect_timeout=5)
            with self._db.transaction():
                self._db.execute(SCHEMA.read_text())
            log.info("database connected; schema applied")
        return self._db

    def _write(self, events: list[tuple[str, bytes]], statuses: list[tuple[str, bytes]],
               updates: list[tuple[str, bytes]] = ()) -> None:
        """One transaction for the batch: raises (nothing committed) if the database fails."""
        db = self._connect_db()
        with db.transaction():
            for subject, data in events:
                row = parse_event(subject, data)
                if row is None:
                    self.counts.rejected += 1
                    log.warning("not an event on %s: %.80r (kept in rejected_messages, not retried)", subject, data)
                    db.execute("INSERT INTO rejected_messages (subject, payload) VALUES (%s, %s)",
                               (subject, data.decode("utf-8", errors="replace")[:10000]))
                    continue
                cur = db.execute(INSERT_STEP, row)
                if cur.rowcount:
                    self.counts.written += 1
                else:
                    self.counts.duplicates += 1
            for subject, data in statuses:
                db.execute(UPSERT_DEVICE, (device_of(subject), data.decode(errors="replace")[:32]))
                self.counts.statuses += 1
            for subject, data in updates:
                row = parse_update(subject, data)
                if row is None:
                    self.counts.rejected += 1
                    log.warning("not an update status on %s: %.80r (kept in rejected_messages)", subject, data)
                    db.execute("INSERT INTO rejected_messages (subject, payload) VALUES (%s, %s)",
                               (subject, data.decode("utf-8", errors="replace")[:10000]))
                    continue
                db.execute(UPSERT_VERSION, row)
                db.execute(INSERT_REPORT, row)
                self.counts.updates += 1

    # -- cluster ----------------------------------------------------------------------------
    async def ensure_stream(self, js) -> None:
        """The MQTT layer's stream must be there (the cluster runs its MQTT listener)."""
        try:
            await js.stream_info(STREAM)
        except Exception as exc:  # noqa: BLE001
            raise RuntimeError(f"no {STREAM} stream: does the cluster run NATS's MQTT listener? ({exc})") from exc

    async def _subscriptions(self, js):
        from nats.js.api import AckPolicy, ConsumerConfig

        await self.ensure_stream(js)
        subs = []
        for kind in ("events", "status", "update"):
            subject = f"{SUBJECT_PREFIX}{self.prefix}.*.{kind}"
            consumer = ConsumerConfig(durable_name=f"{self.durable}-{kind}", ack_policy=AckPolicy.EXPLICIT,
                                      ack_wait=self.ack_wait_s, max_ack_pending=10 * self.batch,
                                      filter_subject=subject, num_replicas=self.replicas)
            subs.append(await js.pull_subscribe(subject, durable=f"{self.durable}-{kind}", stream=STREAM,
                                                config=consumer))
        return subs

    async def run(self) -> Counts:
        import nats
        from nats.errors import TimeoutError as NatsTimeout

        nc = await nats.connect(servers=self.servers, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                name=f"emotiond-fleet-ingest-{self.durable}")
        js = nc.jetstream(timeout=10)
        subs = None
        delay = 0.5
        while not self._stop.is_set():
            try:
                if subs is None:
                    subs = await self._subscriptions(js)
                    log.info("consuming %s as %s", STREAM, self.durable)
                got: list = []
                for sub in subs:
                    try:
                        # short waits: a batch goes to the database as soon as it is there
                        # (end-to-end latency), an idle worker polls 10 times a second
                        got.append(await sub.fetch(self.batch, timeout=0.05))
                    except (NatsTimeout, asyncio.TimeoutError):  # nothing there within the timeout
                        got.append([])
                events, statuses, updates = got
                if not events and not statuses and not updates:
                    await asyncio.sleep(0.05)
                    continue
                self._write([(m.subject, m.data) for m in events], [(m.subject, m.data) for m in statuses],
                            [(m.subject, m.data) for m in updates])
                for m in events + statuses + updates:
                    await m.ack()
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 - a worker logs, backs off and goes on
                # database or cluster trouble: nothing of this batch was acknowledged, so it comes back
                log.warning("ingest batch failed (%s: %s); retrying in %.1f s", type(exc).__name__, exc, delay)
                if self._db is not None and getattr(self._db, "broken", False):
                    self._db = None
                try:
                    if self._db is not None:
                        self._db.close()
                except Exception:  # noqa: BLE001
                    pass
                self._db = None
                if "consumer" in str(exc).lower() or "stream" in str(exc).lower():
                    subs = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        await nc.drain()
        return self.counts

    def stop(self) -> None:
        self._stop.set()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="emotiond-fleet-ingest", description=__doc__.splitlines()[0])
    ap.add_argument("--nats", required=True, help="comma-separated nats:// URLs of the cluster's nodes")
    ap.add_argument("--dsn", required=True, help="PostgreSQL connection string (libpq)")
    ap.add_argument("--prefix", default="emotiond", help="the devices' topic prefix, its first level")
    ap.add_argument("--durable", default="ingest", help="consumer name shared by the workers of one ingest")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--replicas", type=int, default=3, help="replicas of the stream and consumers")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = Worker([u.strip() for u in args.nats.split(",") if u.strip()], args.dsn, args.prefix, args.durable,
                    args.batch, args.replicas)

    async def go() -> Counts:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        return await worker.run()

    t0 = time.monotonic()
    counts = asyncio.run(go())
    log.info("stopped after %.0f s: %s", time.monotonic() - t0, counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
