"""The real daemon as a subprocess (``python -m daemon run``) for the end-to-end tests.

``daemon_config`` writes a config for a test broker, ``DaemonProcess`` runs and stops it with
its log in a file (a pipe could fill and block the daemon), and ``check_payload`` validates
every JSON message against the package's schemas.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from broker import Broker
from conftest import REPO, TALKING_HEAD, read_frames
from daemon import schemas

EYE_MODEL = REPO / "models" / "eye_state.tflite"
from daemon.exitcodes import EX_CONFIG  # noqa: E402,F401 - re-exported to the tests
VALIDATORS = {name: schemas.validator(name) for name in schemas.NAMES}
TOPIC_SCHEMA = {"state": "state", "events": "event", "stats": "stats", "reply": "reply", "update": "update"}
EVENT_LINE = re.compile(r"\bevent (\w+) (start|update|end) ([0-9a-f-]{36})\b")


def prefix(device: str) -> str:
    return f"emotiond/{device}"


def labels_of(model: Path) -> list[str]:
    """The labels of a model's manifest (the JSON beside the .tflite)."""
    return json.loads(model.with_suffix(".json").read_text())["labels"]


def merge(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``, section by section (nested dicts merged, anything else replaced)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def alternating_clip(path: Path, face_s: float = 2.0, blank_s: float = 2.5, cycles: int = 3, fps: int = 25) -> Path:
    """Talking head, grey, talking head, grey... (mp4v): with a short ``driver_absent`` the daemon
    raises and ends one alert per cycle, and its state changes every few seconds."""
    import cv2

    faces = read_frames(TALKING_HEAD, limit=int(face_s * fps))
    h, w = faces[0].shape[:2]
    grey = np.full((h, w, 3), 128, np.uint8)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert out.isOpened(), "OpenCV cannot write mp4v"
    for _ in range(cycles):
        for frame in faces + [grey] * int(blank_s * fps):
            out.write(frame)
    out.release()
    return path


def daemon_config(folder: Path, broker: Broker | None, device: str, model: Path, **sections: Any) -> Path:
    """A config.yaml in ``folder``: the given sections over test defaults (short intervals,
    outbox in ``folder``, no rules, eyes off). Returns the file's path."""
    base = {
        "device_id": device,
        "classifier": {"model": str(model)},
        "eyes": {"enabled": False, "model": str(EYE_MODEL)},
        "rules": [],
        "mqtt": {"host": "127.0.0.1", "port": broker.port if broker else 1, "reconnect_max_s": 2},
        "publish": {"state_interval_s": 0.2, "stats_interval_s": 1.0},
        "outbox": {"state_dir": str(folder / "state")},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(merge(base, sections), sort_keys=False))
    return path


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``python -m daemon ARGS`` to completion (check, --version, a run that must fail)."""
    return subprocess.run([sys.executable, "-m", "daemon", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


class DaemonProcess:
    """``python -m daemon run --config FILE`` in the background; stderr goes to ``log_path``."""

    def __init__(self, config: Path, log_path: Path | None = None, python_flags: tuple[str, ...] = ()) -> None:
        self.config = config
        self.log_path = log_path or config.with_name(f"daemon-{time.monotonic_ns()}.log")
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in wait()/kill()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, *python_flags, "-m", "daemon", "run", "--config", str(config)],
                                     cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[tuple[str, str, str]]:
        """(type, phase, id) of every event the daemon logged (app.py logs each once the outbox holds it)."""
        return EVENT_LINE.findall(self.log())

    def wait_log(self, pattern: str, timeout: float = 30.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m := re.search(pattern, self.log()):
                return m
            if not self.running:
                break
            time.sleep(0.1)
        raise AssertionError(f"no log line matching {pattern!r} within {timeout} s (rc {self.proc.poll()}):\n{self.log()[-3000:]}")

    def wait(self, timeout: float) -> int:
        """Exit code, failing the test (and killing the process) if it runs past ``timeout``."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"daemon still running after {timeout} s:\n{self.log()[-3000:]}") from None
        self._log.close()
        return rc

    def terminate(self, timeout: float = 5.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.running:
            self.proc.kill()
        self.proc.wait()
        self._log.close()


def check_payload(topic_kind: str, payload: bytes) -> dict:
    """Parse a JSON payload and validate it against the schema of its topic."""
    doc = json.loads(payload)
    VALIDATORS[TOPIC_SCHEMA[topic_kind]].validate(doc)
    return doc


def check_all_payloads(messages, pfx: str) -> dict[str, list[dict]]:
    """Every message under ``pfx``: JSON ones validated, plain ones online/offline. By topic kind."""
    seen: dict[str, list] = {}
    for m in messages:
        kind = m.topic[len(pfx) + 1:]
        if kind in TOPIC_SCHEMA:
            seen.setdefault(kind, []).append(check_payload(kind, m.payload))
        elif kind in ("status", "camera/status"):
            assert m.payload in (b"online", b"offline"), f"{m.topic}: {m.payload!r}"
            seen.setdefault(kind, []).append(m.payload.decode())
        elif not kind.startswith("cmd/"):
            raise AssertionError(f"unexpected topic {m.topic}")
    return seen
