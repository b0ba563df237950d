"""The cost of an open live page: the pipeline's frames/s with no viewer and with one.

One real daemon (``python -m daemon run``, the shipped config.yaml with ``http.enabled``,
pinned to one core with ``taskset``) plays the talking-head clip as fast as it can (``realtime:
false``, looped), so any work a viewer puts on the pipeline shows as fewer frames/s. The
windows alternate in one process (none, viewer, none, viewer, ...), so drift from other jobs
on the machine falls on both sides; frames/s is ``emotiond_frames_total`` over each window, read
from /metrics at the window's edges, and CPU ms per frame is the daemon process's user+system
time over the same window (all its threads: the viewer's own threads in the daemon count too)
divided by its frames, which other jobs on a shared machine disturb much less than frames/s.
Medians over the rounds. The viewers run in this process, on the other cores:

* ``stream``: one client reading ``/stream`` (the SSE feed: the pipeline builds a state payload
  and the rules' figures 5 times a second while it is open);
* ``page``: ``/stream`` plus ``/preview.mjpg`` (what the page opens: the preview's JPEG encode
  runs in the viewer's thread, on the daemon's core, at ``http.preview_fps``);
* ``chromium``: the page itself in headless Chromium (Selenium), on the other cores.

    python bench/live_page.py --seconds 10 --rounds 3 --viewers stream page
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import yaml

from _common import TALKING_HEAD, machine, require, table
from _daemon import daemon_config, make_broker, start_daemon, stop
from broker import free_port  # tests/broker.py, on the path through _daemon


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all threads (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def frames_total(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    return float(re.search(r"^emotiond_frames_total (\S+)$", body, re.M).group(1))


class Reader(threading.Thread):
    """Reads one endless response (``/stream`` or ``/preview.mjpg``) and throws it away."""

    def __init__(self, port: int, path: str) -> None:
        super().__init__(daemon=True)
        self.port, self.path, self.bytes = port, path, 0
        self._done = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", self.path)
        resp = conn.getresponse()
        try:
            while not self._done.is_set():
                chunk = resp.read1(65536)
                if not chunk:
                    break
                self.bytes += len(chunk)
        finally:
            conn.close()

    def stop(self) -> None:
        self._done.set()
        self.join(5)


class Viewer:
    """One viewer of a kind, opened and closed around a window."""

    def __init__(self, kind: str, port: int, profile: Path) -> None:
        self.kind, self.port, self.profile = kind, port, profile
        self.readers: list[Reader] = []
        self.browser = None

    def open(self) -> None:
        if self.kind == "chromium":
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service

            opts = webdriver.ChromeOptions()
            opts.binary_location = "/usr/bin/chromium"
            for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                         "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
                         "--window-size=1280,1300", f"--user-data-dir={self.profile}"):
                opts.add_argument(flag)
            self.browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
            self.browser.get(f"http://127.0.0.1:{self.port}/")
            return
        paths = ["/stream"] + (["/preview.mjpg"] if self.kind == "page" else [])
        self.readers = [Reader(self.port, p) for p in paths]
        for r in self.readers:
            r.start()

    def close(self) -> int:
        if self.browser is not None:
            self.browser.quit()
            self.browser = None
            return 0
        for r in self.readers:
            r.stop()
        return sum(r.bytes for r in self.readers)


def wait_listening(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port} after {timeout} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each window")
    ap.add_argument("--rounds", type=int, default=3, help="windows of each kind")
    ap.add_argument("--viewers", nargs="+", default=["stream", "page"], choices=["stream", "page", "chromium"])
    ap.add_argument("--cpus", default="0", help="taskset CPU list for the daemon")
    args = ap.parse_args()
    require(TALKING_HEAD)
    print(machine())
    daemon_cpus = {int(c) for c in args.cpus.split(",")}
    others = set(os.sched_getaffinity(0)) - daemon_cpus
    if others:
        os.sched_setaffinity(0, others)  # the viewers (and a Chromium started from here) off the daemon's core
    results: dict[str, list[float]] = {"none": [], **{k: [] for k in args.viewers}}
    cpu_ms: dict[str, list[float]] = {k: [] for k in results}
    sent: dict[str, list[int]] = {k: [] for k in args.viewers}
    with tempfile.TemporaryDirectory(prefix="emotiond-livepage-") as tmp:
        folder = Path(tmp)
        broker = make_broker(folder / "broker")
        port = free_port()
        cfg_path = daemon_config(folder, broker, "livepage", {"uri": str(TALKING_HEAD), "realtime": False, "loop": True})
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["http"] = {"enabled": True, "port": port}
        cfg_path.write_text(yaml.safe_dump(cfg))
        proc = start_daemon(cfg_path, args.cpus)
        try:
            wait_listening(port)
            time.sleep(3.0)  # warm-up: models loaded, caches filled
            for _ in range(args.rounds):
                for kind in ["none", *args.viewers]:
                    viewer = Viewer(kind, port, folder / f"profile-{kind}") if kind != "none" else None
                    if viewer:
                        viewer.open()
                        time.sleep(1.0)  # connected and streaming before the window opens
                    f0, t0, c0 = frames_total(port), time.monotonic(), cpu_s(proc.pid)
                    time.sleep(args.seconds)
                    f1, t1, c1 = frames_total(port), time.monotonic(), cpu_s(proc.pid)
                    results[kind].append((f1 - f0) / (t1 - t0))
                    cpu_ms[kind].append(1000.0 * (c1 - c0) / max(1.0, f1 - f0))
                    if viewer:
                        sent[kind].append(viewer.close())
                        time.sleep(0.5)
        finally:
            stop(proc)
            broker.stop()
    base, base_cpu = statistics.median(results["none"]), statistics.median(cpu_ms["none"])
    rows = []
    for kind, fps in results.items():
        med, cpu = statistics.median(fps), statistics.median(cpu_ms[kind])
        kb = sum(sent.get(kind) or [0]) / max(1, len(sent.get(kind) or [])) / args.seconds / 1024
        rows.append([kind, f"{med:.1f}", " ".join(f"{x:.1f}" for x in fps), f"{med / base:.2f}",
                     f"{cpu:.2f}", f"{cpu - base_cpu:+.2f}", "-" if kind in ("none", "chromium") else f"{kb:.0f}"])
    print(f"daemon pinned with taskset -c {args.cpus}; viewers on CPUs {sorted(others) or 'the same'}; "
          f"{args.rounds} rounds of {args.seconds:g} s windows; clip {TALKING_HEAD.name}, realtime: false, looped")
    print(table(rows, ["viewer", "frames/s (median)", "per window", "ratio to none", "daemon CPU ms/frame",
                       "vs none", "KiB/s to the viewer"]))


if __name__ == "__main__":
    main()
