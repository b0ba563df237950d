"""The daemon's sd_notify protocol, observed as systemd would: a real AF_UNIX datagram socket
in NOTIFY_SOCKET, WATCHDOG_USEC set, the daemon run as a subprocess on a real clip.

Checked: READY=1, regular WATCHDOG=1, STATUS=, STOPPING=1 on SIGTERM; the pings stop when the
capture thread hangs (a FIFO in an image folder: cv2.imread blocks opening it) and go on
while a camera is merely missing; SIGHUP applies a valid config and keeps the old one on an
invalid config. No broker is needed: the daemon keeps running without one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO, TALKING_HEAD, read_frames, shared_file

pytestmark = pytest.mark.slow  # each test runs the daemon for several seconds

WATCHDOG_USEC = 2_000_000  # systemd would kill after 2 s without a ping; pings every 1 s
WATCHDOG_S = WATCHDOG_USEC / 1e6
START_TIMEOUT_S = 90  # imports and model load on a busy 2-core machine


@pytest.fixture(autouse=True)
def _daemon_importable():
    res = subprocess.run([sys.executable, "-c", "import daemon.runtime.app"], cwd=REPO, capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"daemon.runtime.app does not import yet: {res.stderr.strip().splitlines()[-1]}")


class NotifySocket:
    """What systemd's notify socket receives: (monotonic time, message) per datagram."""

    def __init__(self) -> None:
        # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer.
        self._dir = tempfile.mkdtemp(prefix="sdnotify")
        self.path = os.path.join(self._dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            with self._lock:
                # One datagram may carry several newline-separated assignments.
                self.messages += [(now, line) for line in data.decode().splitlines()]

    def times(self, message: str, since: float = 0.0) -> list[float]:
        with self._lock:
            return [t for t, m in self.messages if m == message and t >= since]

    def matching(self, prefix: str, since: float = 0.0) -> list[str]:
        with self._lock:
            return [m for t, m in self.messages if m.startswith(prefix) and t >= since]

    def wait_for(self, message: str, timeout: float, since: float = 0.0, proc: subprocess.Popen | None = None) -> float:
        """Time of the first ``message`` at or after ``since``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if got := self.times(message, since):
                return got[0]
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"daemon exited with {proc.returncode} before {message}")
            time.sleep(0.05)
        pytest.fail(f"no {message} within {timeout} s; got {[m for _, m in self.messages]}")

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self._dir)


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    ns = NotifySocket()
    yield ns
    ns.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, source: str, model: Path, **source_opts) -> Path:
    opts = "".join(f", {k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in source_opts.items())
    path.write_text(
        "device_id: sdnotify-test\n"
        f"source: {{uri: '{source}'{opts}}}\n"
        f"classifier: {{model: '{model}'}}\n"
        "eyes: {enabled: false}\n"
        f"mqtt: {{host: 127.0.0.1, port: {free_port()}}}\n"  # nothing listens: no broker needed
        # A hang is declared after 1.5 s without progress, so a test sees the pings stop
        # soon; STATUS= every second.
        "health: {hang_timeout_s: 1.5, status_interval_s: 1.0}\n"
    )
    return path


class Daemon:
    """``python -m daemon run`` as systemd starts it, its log in a file."""

    def __init__(self, config: Path, notify: NotifySocket, workdir: Path) -> None:
        self.log_path = workdir / "daemon.log"
        self._log = self.log_path.open("w")
        env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC=str(WATCHDOG_USEC),
                   STATE_DIRECTORY=str(workdir), PYTHONUNBUFFERED="1")
        env.pop("WATCHDOG_PID", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "daemon", "run", "--config", str(config)],
                                     cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def run_daemon(notify, tmp_path) -> Iterator:
    started: list[Daemon] = []

    def start(config: Path) -> Daemon:
        d = Daemon(config, notify, tmp_path)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def max_gap(times: list[float], until: float) -> float:
    """The longest stretch without a ping, counting the stretch from the last one to ``until``."""
    points = sorted(times) + [until]
    return max(b - a for a, b in zip(points, points[1:]))


def test_ready_watchdog_status_and_stopping(notify, run_daemon, tmp_path, emotion_model):
    clip = shared_file(TALKING_HEAD)
    d = run_daemon(write_config(tmp_path / "config.yaml", str(clip), emotion_model, loop=True, realtime=True))
    ready = notify.wait_for("READY=1", START_TIMEOUT_S, proc=d.proc)

    time.sleep(3 * WATCHDOG_S)
    now = time.monotonic()
    pings = notify.times("WATCHDOG=1", since=ready)
    assert len(pings) >= 2, notify.messages
    assert max_gap(pings, now) < WATCHDOG_S, f"systemd would have killed it: pings at {pings}"
    status = notify.matching("STATUS=", since=ready)
    assert status and any("camera online" in s for s in status), status

    sent_term = time.monotonic()
    assert d.stop() == 0, d.log()
    assert notify.times("STOPPING=1", since=sent_term), notify.messages


def test_pings_stop_when_the_capture_thread_hangs(notify, run_daemon, tmp_path, emotion_model):
    # An image folder whose last "image" is a FIFO nobody writes: cv2.imread blocks opening
    # it, the capture thread stops making progress, as with a driver call that never returns.
    folder = tmp_path / "frames"
    folder.mkdir()
    import cv2

    for i, frame in enumerate(read_frames(TALKING_HEAD, limit=20)):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), frame)
    fifo = folder / "999.jpg"
    os.mkfifo(fifo)
    d = run_daemon(write_config(tmp_path / "config.yaml", str(folder), emotion_model, realtime=True, fps=10))
    try:
        ready = notify.wait_for("READY=1", START_TIMEOUT_S, proc=d.proc)
        # Wait for silence: at least twice WatchdogSec without a ping while the daemon lives.
        deadline = time.monotonic() + 60
        while True:
            now = time.monotonic()
            pings = notify.times("WATCHDOG=1", since=ready)
            last = max(pings, default=ready)
            if now - last >= 2 * WATCHDOG_S:
                break
            assert now < deadline, f"the pings never stopped: {pings}"
            assert d.proc.poll() is None, d.log()
            time.sleep(0.1)
        assert d.proc.poll() is None, "the daemon exited instead of hanging"
        # The main loop is alive (it still reports status); it is the health check that stopped.
        assert notify.matching("STATUS=", since=last + WATCHDOG_S)
        assert "not pinging the watchdog: capture thread made no progress" in d.log()
    finally:
        # Let the blocked open() return (then EOF: not an image), so the daemon can exit.
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK) if d.proc.poll() is None else None
        if fd is not None:
            os.close(fd)


def test_pings_go_on_while_a_camera_is_missing(notify, run_daemon, tmp_path, emotion_model):
    d = run_daemon(write_config(tmp_path / "config.yaml", "/dev/video99", emotion_model,
                                reconnect_initial_s=0.2, reconnect_max_s=1.0))
    ready = notify.wait_for("READY=1", START_TIMEOUT_S, proc=d.proc)
    time.sleep(4 * WATCHDOG_S)
    now = time.monotonic()
    pings = notify.times("WATCHDOG=1", since=ready)
    assert len(pings) >= 3, notify.messages
    assert max_gap(pings, now) < WATCHDOG_S, f"pings at {pings}"
    assert any("camera offline" in s for s in notify.matching("STATUS=", since=ready))
    assert d.proc.poll() is None
    assert d.stop() == 0, d.log()


def test_sighup_applies_a_valid_config_and_keeps_the_old_on_an_invalid_one(notify, run_daemon, tmp_path, emotion_model):
    clip = shared_file(TALKING_HEAD)
    config = write_config(tmp_path / "config.yaml", str(clip), emotion_model, loop=True, realtime=True)
    d = run_daemon(config)
    ready = notify.wait_for("READY=1", START_TIMEOUT_S, proc=d.proc)
    t = time.monotonic()
    while not any("camera online" in s for s in notify.matching("STATUS=", since=ready)):
        assert time.monotonic() - t < 30, notify.messages
        time.sleep(0.1)

    # Valid change: the camera that is not there. Applied → the status says offline.
    write_config(config, "/dev/video99", emotion_model)
    hup = time.monotonic()
    d.proc.send_signal(signal.SIGHUP)
    notify.wait_for("READY=1", 60, since=hup, proc=d.proc)
    t = time.monotonic()
    while not any("camera offline" in s for s in notify.matching("STATUS=", since=hup)):
        assert time.monotonic() - t < 30, notify.messages
        time.sleep(0.1)
    assert "reload: new config applied" in d.log()

    # Invalid change (an unknown key): rejected with its key path, the running config kept.
    config.write_text(config.read_text() + "publish: {no_such_key: 1}\n")
    hup = time.monotonic()
    d.proc.send_signal(signal.SIGHUP)
    t = time.monotonic()
    while "reload rejected" not in d.log():
        assert time.monotonic() - t < 30, d.log()
        assert d.proc.poll() is None, d.log()
        time.sleep(0.1)
    assert "publish.no_such_key" in d.log()
    time.sleep(2 * WATCHDOG_S)
    assert d.proc.poll() is None
    assert notify.times("WATCHDOG=1", since=hup)
    assert all("camera offline" in s for s in notify.matching("STATUS=", since=hup))
    assert d.stop() == 0, d.log()


def test_a_stage_over_its_time_limit_exits_non_zero(notify, run_daemon, tmp_path, emotion_model):
    """The stuck-stage watchdog: a detection or inference call running longer than
    health.stage_timeout_s ends the process (systemd restarts it). A limit of 1 ms makes every
    real Haar detection on this clip "stuck", so the path runs without faking a hang."""
    clip = shared_file(TALKING_HEAD)
    config = write_config(tmp_path / "config.yaml", str(clip), emotion_model, loop=True, realtime=False)
    config.write_text(config.read_text().replace("health: {", "health: {stage_timeout_s: 0.001, "))
    d = run_daemon(config)
    notify.wait_for("READY=1", START_TIMEOUT_S, proc=d.proc)
    try:
        code = d.proc.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail("the daemon did not exit on a stage over its time limit")
    assert code == 70, d.log()  # EX_SOFTWARE: Restart=on-failure restarts it
    assert "has run for" in d.log()
    assert notify.matching("STATUS=stuck in ")
