"""Fleet updates: what a check costs a device, and how long a release takes to reach a fleet.

1. **A check at an hourly schedule**: one device (the daemon's own ``daemon.update.client``)
   against a real repository made by ``fleet.publish`` and served over HTTP on loopback. The
   first check (no metadata yet) and then ``--checks`` checks with nothing new, half of them after
   the operator's cron re-signed the timestamp (what an hourly check mostly meets): CPU time of
   the process and bytes fetched per check.
2. **Publish to the whole fleet**: ``--devices`` simulated devices (threads, each with its own
   client and store: TUF refresh, the real downloads and verification, the atomic install and
   commit; the health window replaced by ``--window`` seconds), checking every ``--interval``
   seconds with a random phase; ``--canary`` of them in the canary group. Release 2 goes to
   the canary group; once every canary committed, to the default group. Time from the first
   ``rollout`` to the last device committed, and to each stage. An hourly schedule scales the
   waiting part by 3600 / interval (the downloads do not scale).

    python bench/updates.py --devices 100 --canary 5 --interval 2 --checks 40
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from daemon.update.client import Client  # noqa: E402
from daemon.update.store import Store  # noqa: E402
from fleet.publish import Repository  # noqa: E402
from update_repo import RepoServer  # noqa: E402

MODELS = REPO / "models"


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def check_cost(repo: Repository, url: str, folder: Path, checks: int) -> dict:
    c = Client(url, repo.metadata / "1.root.json", folder / "device")
    scratch = folder / "device" / "download" / "meta"
    t0, b0 = cpu_s(), c.bytes_fetched
    c.wanted("default", scratch)
    first = {"cpu_ms": (cpu_s() - t0) * 1000, "bytes": c.bytes_fetched - b0}
    quiet, resigned = [], []
    for i in range(checks):
        if i % 2:
            repo.timestamp()  # the operator's cron: a new timestamp, nothing else new
        t0, b0 = cpu_s(), c.bytes_fetched
        c.wanted("default", scratch)
        (resigned if i % 2 else quiet).append(((cpu_s() - t0) * 1000, c.bytes_fetched - b0))
    med = lambda xs, k: sorted(x[k] for x in xs)[len(xs) // 2]  # noqa: E731
    return {"first": first,
            "unchanged": {"cpu_ms": med(quiet, 0), "bytes": med(quiet, 1)},
            "new_timestamp": {"cpu_ms": med(resigned, 0), "bytes": med(resigned, 1)}}


class Device(threading.Thread):
    def __init__(self, group: str, url: str, root: Path, folder: Path, interval: float, window: float) -> None:
        super().__init__(daemon=True)
        self.group, self.interval, self.window = group, interval, window
        self.client = Client(url, root, folder)
        self.store = Store(folder)
        self.committed_at: float | None = None
        self.stop_flag = threading.Event()
        self.phase = random.random() * interval

    def run(self) -> None:
        time.sleep(self.phase)
        while not self.stop_flag.is_set():
            wanted = self.client.wanted(self.group, self.store.folder / "download" / "meta")
            if wanted is not None and wanted.version != self.store.current:
                dest = self.store.download_dir(wanted.version)
                self.client.download_release(wanted.version, dest)
                self.store.install(wanted.version, dest)
                self.store.begin(wanted.version)
                time.sleep(self.window)
                self.store.commit(wanted.version)
                if wanted.version == 2:
                    self.committed_at = time.monotonic()
            self.stop_flag.wait(self.interval)


def fleet_time(repo: Repository, url: str, folder: Path, n: int, canary: int, interval: float, window: float) -> dict:
    root = repo.metadata / "1.root.json"
    devices = [Device("canary" if i < canary else "default", url, root, folder / f"d{i}", interval, window)
               for i in range(n)]
    for d in devices:
        d.start()
    time.sleep(interval * 1.5)  # every device on release 1 first
    t0 = time.monotonic()
    repo.set_group("canary", 2)
    while not all(d.committed_at for d in devices[:canary]):
        time.sleep(0.05)
    t_canary = time.monotonic()
    repo.set_group("default", 2)
    while not all(d.committed_at for d in devices):
        time.sleep(0.05)
    t_all = time.monotonic()
    for d in devices:
        d.stop_flag.set()
    return {"devices": n, "canary": canary, "interval_s": interval, "window_s": window,
            "canary_s": round(t_canary - t0, 2), "widen_s": round(t_all - t_canary, 2), "total_s": round(t_all - t0, 2),
            "bytes_model": (MODELS / "emotion_wild.tflite").stat().st_size}  # release 2's model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--canary", type=int, default=5)
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between a device's checks (scaled hour)")
    ap.add_argument("--window", type=float, default=0.0, help="seconds each device spends in its health window")
    ap.add_argument("--checks", type=int, default=40)
    args = ap.parse_args()
    random.seed(1)
    folder = Path(tempfile.mkdtemp(prefix="emotiond-bench-updates-"))
    try:
        repo = Repository(folder / "repo", folder / "keys")
        repo.init()
        repo.add_release(1, MODELS / "emotion_ferplus.tflite")  # the shipped alternative, then the default
        repo.add_release(2, MODELS / "emotion_wild.tflite")
        repo.set_group("default", 1)
        server = RepoServer(folder / "repo")
        cost = check_cost(repo, server.url, folder, args.checks)
        print(f"check, first (no metadata yet): {cost['first']['cpu_ms']:.1f} ms CPU, {cost['first']['bytes']} bytes")
        print(f"check, nothing new:             {cost['unchanged']['cpu_ms']:.1f} ms CPU, {cost['unchanged']['bytes']} bytes")
        print(f"check, after a new timestamp:   {cost['new_timestamp']['cpu_ms']:.1f} ms CPU, "
              f"{cost['new_timestamp']['bytes']} bytes")
        per_day = 24 * cost["new_timestamp"]["bytes"]
        print(f"hourly: {per_day / 1024:.1f} KiB and {24 * cost['new_timestamp']['cpu_ms'] / 1000:.2f} s CPU a day "
              "(every check meeting a new timestamp: the upper bound)")
        fleet = fleet_time(repo, server.url, folder / "fleet", args.devices, args.canary, args.interval, args.window)
        scale = 3600 / args.interval
        print(f"{args.devices} devices ({args.canary} canary), a check every {args.interval:g} s: canary "
              f"{fleet['canary_s']:.1f} s, widen {fleet['widen_s']:.1f} s, publish -> whole fleet "
              f"{fleet['total_s']:.1f} s (~{fleet['total_s'] / args.interval:.1f} check intervals; at an hourly "
              f"schedule ~{fleet['total_s'] * scale / 3600:.1f} h plus the health windows)")
        print(json.dumps({"check": cost, "fleet": fleet}))
        server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
