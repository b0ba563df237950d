"""An hour of running: the real daemon, live at 30 fps from a real RTSP camera, with the broker
restarted every 5 minutes and a SIGHUP reload every 10; what grows, what leaks, what is lost.

The camera is tests/rtsp_server.py (GStreamer's RTSP server, system python3) looping the
talking-head clip at 30 fps; the broker is tests/broker.py's Mosquitto with persistence, and a
persistent-session QoS 1 subscriber receives the events. The config is the shipped config.yaml
(bench/_daemon.py) with the RTSP source, plus an ``emotion_summary`` every 10 s so events flow
steadily (the awake talking head raises no driver alert). Each reload flips
``publish.state_interval_s`` between 1.0 and 1.1, so the daemon really rebuilds its pipeline
and source (an unchanged config is not reloaded). Each broker restart keeps it down 5 s.

Every 10 s it samples the daemon's resident memory, descriptors and threads (/proc) and keeps
the latest stats payload. At the end: RSS growth (from the first minute's end, once models and
FFmpeg have warmed up, and from the start), descriptor and thread ranges, frames, skipped
frames, camera drops, and events delivered against logged (the daemon logs an event once its
outbox holds it; delivered = arrived at the subscriber at least once, duplicates allowed).

    python bench/soak.py --minutes 60                     # the issue's run (targets: RSS growth
                                                          # < 5 MB, fds/threads flat, 0 lost)
    python bench/soak.py --minutes 3 --broker-every 1 --reload-every 1.5   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _common import REPO, TALKING_HEAD, machine, require, table
from _daemon import daemon_config, make_broker

sys.path.insert(0, str(REPO / "tests"))
from broker import Collector  # noqa: E402
from cameras import RtspCamera, clip_jpegs, proc_usage, rtsp_unavailable  # noqa: E402

EVENT_LINE = re.compile(r"\bevent (\w+) (start|update|end) ([0-9a-f-]{36})\b")
SAMPLE_S = 10.0
BROKER_DOWN_S = 5.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--broker-every", type=float, default=5.0, help="minutes between broker restarts")
    ap.add_argument("--reload-every", type=float, default=10.0, help="minutes between SIGHUP reloads")
    ap.add_argument("--fps", type=int, default=30, help="camera frame rate")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    require(TALKING_HEAD)
    if why := rtsp_unavailable():
        sys.exit(why)

    work = Path(tempfile.mkdtemp(prefix="emotiond-soak-"))
    frames = clip_jpegs(TALKING_HEAD, work / "frames")
    camera = RtspCamera(frames, fps=args.fps, log=work / "rtsp.log")
    camera.start()
    broker = make_broker(work / "broker")
    device = "soak"
    pfx = f"emotiond/{device}"
    sub = Collector(broker, [f"{pfx}/events", f"{pfx}/stats", f"{pfx}/camera/status"], client_id="soak-subscriber",
                    persistent=True)
    config = daemon_config(work, broker, device, {"uri": camera.url}, publish={"stats_interval_s": 10.0})
    cfg = yaml.safe_load(config.read_text())
    cfg["rules"] = [*cfg.get("rules", []), {"type": "emotion_summary", "period_s": 10.0}]
    cfg["source"].update({"stall_timeout_s": 5.0, "reconnect_max_s": 5.0})
    config.write_text(yaml.safe_dump(cfg))
    log_path = work / "daemon.log"
    with open(log_path, "w") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "daemon", "run", "--config", str(config)], cwd=REPO,
                                  stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    print(f"soak: {args.minutes:g} min, camera {camera.url}, broker :{broker.port}, work dir {work}\n{machine()}",
          flush=True)

    deadline = time.monotonic() + 120
    while "emotiond running" not in log_path.read_text(errors="replace"):  # models loaded: sample from here
        if daemon.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the daemon did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    t0 = time.monotonic()
    end = t0 + args.minutes * 60
    next_sample, next_broker, next_reload = t0, t0 + args.broker_every * 60, t0 + args.reload_every * 60
    samples: list[tuple[float, dict]] = []
    broker_restarts = reloads = 0
    state_interval = cfg["publish"]["state_interval_s"]
    try:
        while (now := time.monotonic()) < end and daemon.poll() is None:
            if now >= next_sample:
                samples.append((now - t0, proc_usage(daemon.pid)))
                s = samples[-1][1]
                print(f"  {now - t0:6.0f} s  rss {s['rss_mb']:6.1f} MB  fds {s['fds']:3d}  threads {s['threads']:3d}", flush=True)
                next_sample += SAMPLE_S
            if now >= next_broker:
                broker.stop()
                time.sleep(BROKER_DOWN_S)
                broker.start()
                broker_restarts += 1
                next_broker += args.broker_every * 60
            if now >= next_reload:
                state_interval = 1.1 if state_interval == 1.0 else 1.0
                cfg["publish"]["state_interval_s"] = state_interval
                config.write_text(yaml.safe_dump(cfg))
                daemon.send_signal(signal.SIGHUP)
                reloads += 1
                next_reload += args.reload_every * 60
            time.sleep(0.5)
        crashed = daemon.poll()
        samples.append((time.monotonic() - t0, proc_usage(daemon.pid)) if crashed is None else (0.0, {}))
        # Let the last events reach the subscriber, then stop the daemon cleanly.
        logged = {(p, i) for _k, p, i in EVENT_LINE.findall(log_path.read_text(errors="replace"))}
        delivered = lambda: {(d["phase"], d["id"]) for d in  # noqa: E731
                             (json.loads(m.payload) for m in sub.on(f"{pfx}/events"))}
        sub.wait_for(lambda _m: delivered() >= logged, timeout=30)
        if crashed is None:
            daemon.terminate()
            daemon.wait(30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        camera.kill()
        sub.close()
        broker.stop()

    text = log_path.read_text(errors="replace")
    stats = [json.loads(m.payload) for m in sub.on(f"{pfx}/stats")]
    last = stats[-1] if stats else {}
    # ``skipped`` restarts with each reload's new source: sum the peak of each stretch.
    skipped, peak = 0, 0
    for st in stats:
        if st["skipped"] < peak:
            skipped += peak
        peak = st["skipped"]
    skipped += peak
    samples = [(t, s) for t, s in samples if s]
    warm = next((s for t, s in samples if t >= 60), samples[0][1])
    first, final = samples[0][1], samples[-1][1]
    lost = logged - delivered()
    figures = {
        "minutes": round((samples[-1][0]) / 60, 1),
        "rss_start_mb": round(first["rss_mb"], 1), "rss_after_1min_mb": round(warm["rss_mb"], 1),
        "rss_end_mb": round(final["rss_mb"], 1),
        "rss_growth_after_1min_mb": round(final["rss_mb"] - warm["rss_mb"], 1),
        "fds_min_max": [min(s["fds"] for _, s in samples), max(s["fds"] for _, s in samples)],
        "threads_min_max": [min(s["threads"] for _, s in samples), max(s["threads"] for _, s in samples)],
        "frames_processed": last.get("frames"), "frames_skipped": skipped,
        "frames_rejected_last_stretch": last.get("frames_rejected"),
        "camera_drops": len(re.findall(r"source \S+ offline: (?!stopped|finished)", text)),
        "broker_restarts": broker_restarts, "reloads": reloads,
        "reloads_applied": text.count("reload: new config applied"),
        "events_logged": len(logged), "events_delivered": len(logged) - len(lost), "events_lost": len(lost),
        "daemon_exit": crashed if crashed is not None else daemon.returncode,
        "tracebacks": text.count("Traceback"),
    }
    print()
    print(table([[k, str(v)] for k, v in figures.items()], ["figure", "value"]))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if not lost and figures["daemon_exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
