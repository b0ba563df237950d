"""Fleet updates driven: check, download, install, switch, health window, commit or roll back.

A checker thread asks the repository (``updates.interval_s``, and at once on ``cmd/update``)
which release the device's group should run; a new one is downloaded and verified (TUF), its
model is tried on the golden face and its config fragment validated with the config file
(an invalid one is refused here: it never reaches a running daemon, so no exit 78, no restart
loop), then installed beside the running release. The supervisor thread (``tick``) does the
switch, through the same path as a reload, and watches the health window; a release that
passes is committed, one that fails is rolled back to the committed one and failed for good.
Every step is published, retained, on ``<prefix>/update`` and logged with its reason.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from ..publish.outbox import default_state_dir
from ..update.client import Client, UpdateRefused
from ..update.config import UpdatesConfig
from ..update.health import Before, HealthWindow, golden_check
from ..update.store import Store

log = logging.getLogger("emotiond.update")

BEFORE_S = 10.0  # frames/s before a switch is measured over this many seconds


class Host(Protocol):
    """What the driver needs from the daemon (``Daemon`` in app.py)."""

    def validate_overlay(self, overlay: dict) -> list[str]: ...

    def switch(self, overlay: dict) -> str | None: ...

    def figures(self) -> tuple[int, int, str | None]: ...

    def publish_update(self, status: dict[str, Any]) -> None: ...


def updates_folder(cfg: UpdatesConfig, outbox_state_dir: Path | None) -> Path:
    return cfg.state_dir or ((outbox_state_dir or default_state_dir()) / "updates")


class UpdateDriver:
    def __init__(self, cfg: UpdatesConfig, folder: Path, host: Host) -> None:
        self.cfg = cfg
        self.host = host
        self.store = Store(folder)
        self.client = Client(cfg.url or "", cfg.root or Path(), folder, cfg.timeout_s)  # MissingDependency
        note = self.store.at_start(cfg.max_attempts)
        if note:
            log.warning("update: %s", note)
        self.status: dict[str, Any] = {
            "group": cfg.group, "version": self.store.current, "state": "idle", "target": None, "reason": note,
            "reason_code": "interrupted" if note else None, "checks": 0, "check_bytes": 0, "refused": {},
            "rolled_back": 0, "committed": 0}
        self._lock = threading.Lock()  # the status: the checker and the supervisor both publish
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ready: int | None = None  # installed, waiting for the supervisor to switch
        self._window: HealthWindow | None = None
        self._trying: int | None = None
        self._history: collections.deque[tuple[float, int, int]] = collections.deque()
        self._thread = threading.Thread(target=self._loop, name="updates", daemon=True)

    # -- what runs ---------------------------------------------------------------------------
    def overlay(self) -> dict:
        """The keys the running release sets over the config file (reloads keep them)."""
        return self.store.overlay(self._trying if self._trying is not None else self.store.current)

    def start(self) -> None:
        self.publish()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(2.0)

    def request_check(self) -> bool:
        """``cmd/update``: check now (False while a release is being tried)."""
        if self._ready is not None or self._window is not None:
            return False
        self._wake.set()
        return True

    def publish(self, **changes: Any) -> None:
        with self._lock:
            self.status.update(changes)
            self.status["check_bytes"] = self.client.bytes_fetched
            status = dict(self.status, refused=dict(self.status["refused"]))
        try:
            self.host.publish_update(status)
        except Exception:  # noqa: BLE001 - a status that cannot go out must not stop an update
            log.exception("update status not published")

    def _refused(self, code: str, message: str, target: int | None = None) -> None:
        with self._lock:
            self.status["refused"][code] = self.status["refused"].get(code, 0) + 1
        log.warning("update refused (%s): %s", code, message)
        self.publish(state="refused", reason=message, reason_code=code, target=target)

    # -- checker thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        wait = self.cfg.first_check_s
        while not self._stop.is_set():
            self._wake.wait(wait)
            self._wake.clear()
            wait = self.cfg.interval_s
            if self._stop.is_set():
                return
            if self._ready is not None or self._window is not None:
                continue
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the checker logs and goes on with the next check
                log.exception("update check failed")

    def check(self) -> None:
        """One check: nothing, a refusal, or a release installed and handed to the supervisor."""
        with self._lock:
            self.status["checks"] += 1
        folder = self.store.folder
        try:
            wanted = self.client.wanted(self.cfg.group, folder / "download" / "meta")
        except UpdateRefused as exc:
            self._refused(exc.reason, str(exc))
            return
        current = self.store.current
        if wanted is None or wanted.version == current:
            self.publish(state="idle", target=None, version=current)
            return
        v = wanted.version
        if (why := self.store.failed(v)) is not None:
            self.publish(state="failed", target=v, reason=why, reason_code="failed_before")
            return
        if current is not None and v < current and not wanted.downgrade:
            self._refused("older_version", f"the rollout asks for release {v}, older than release {current} "
                                           "running, without marking it a downgrade", v)
            return
        log.info("update: release %d for group %s (running %s): downloading", v, self.cfg.group, current)
        self.publish(state="downloading", target=v, reason=None, reason_code=None)
        dest = self.store.download_dir(v)
        try:
            release = self.client.download_release(v, dest)
        except UpdateRefused as exc:
            self._refused(exc.reason, str(exc), v)
            return
        if (problem := self._verify(release, dest)) is not None:
            code, message = problem
            self.store.fail(v, message)
            self._refused(code, f"release {v}: {message}", v)
            return
        self.store.install(v, dest)
        log.info("update: release %d installed beside release %s", v, current)
        self._ready = v

    def _verify(self, release: dict, folder: Path) -> tuple[str, str] | None:
        """Before anything runs it: the model on its golden face, the config fragment with the
        config file (the overlay as it will apply, pointing into the download)."""
        files = release["files"]
        if "model" in files:
            golden = files.get("golden")
            problem = golden_check(folder / files["model"]["name"], folder / golden["name"] if golden else None,
                                   golden.get("label") if golden else None)
            if problem is not None:
                return "invalid_model", problem
        overlay = self.store.overlay_of(folder)
        problems = self.host.validate_overlay(overlay)
        if problems:
            return "invalid_config", "invalid config, not installed: " + "; ".join(problems)
        return None

    # -- supervisor thread ------------------------------------------------------------------
    def _before(self, now: float) -> Before:
        old = next(((t, f, c) for t, f, c in self._history if now - t <= BEFORE_S), None)
        frames, classified, _ = self.host.figures()
        if old is None or now - old[0] < 1.0:
            return Before(0.0, classified > 0)
        return Before((frames - old[1]) / (now - old[0]), classified > old[2])

    def tick(self, now: float) -> None:
        """Called by the supervisor loop: sample the figures, switch, watch the window."""
        frames, classified, error = self.host.figures()
        self._history.append((now, frames, classified))
        while self._history and now - self._history[0][0] > BEFORE_S + 1:
            self._history.popleft()
        if self._window is None and self._ready is not None:
            self._switch(now)
        elif self._window is not None:
            self._window.observe(frames, classified, error)
            verdict = self._window.verdict(now)
            if verdict is not None:
                self._decide(*verdict)

    def _switch(self, now: float) -> None:
        v, self._ready = self._ready, None
        before = self._before(now)
        self.store.begin(v)
        self._trying = v
        self.publish(state="trying", target=v, reason=None, reason_code=None)
        log.info("update: switching to release %d (before: %.1f frames/s, faces classified: %s)", v, before.fps,
                 before.faces_classified)
        error = self.host.switch(self.store.overlay(v))
        if error is not None:
            self._decide(False, f"cannot start: {error}", code="invalid_model")
            return
        frames, classified, _ = self.host.figures()
        c = self.cfg
        self._window = HealthWindow(before, c.health_window_s, c.min_frames, c.min_fps_share, c.require_faces,
                                    time.monotonic(), frames, classified)

    def _decide(self, ok: bool, detail: str, code: str = "unhealthy") -> None:
        v, self._trying, self._window = self._trying, None, None
        if ok:
            self.store.commit(v)
            log.info("update: release %d committed (%s)", v, detail)
            self.publish(state="committed", version=v, target=None, reason=detail, reason_code=None,
                         committed=self.status["committed"] + 1)
            return
        log.warning("update: release %d rolled back to release %s: %s", v, self.store.current, detail)
        error = self.host.switch(self.store.overlay(self.store.current))
        self.store.fail(v, detail)
        self.publish(state="rolled_back", version=self.store.current, target=v, reason=detail, reason_code=code,
                     rolled_back=self.status["rolled_back"] + 1)
        if error is not None:
            raise RuntimeError(f"rollback to release {self.store.current} failed too: {error}")
