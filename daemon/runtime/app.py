"""The running daemon: threads, signals, health, MQTT, reload.

Threads:
* capture (``FrameSource``): fills a one-slot latest-frame holder, reconnects with back-off.
* pipeline: takes the newest frame, ``Pipeline.process`` → rules → publish; never a backlog.
* main (supervisor): signals, systemd notifications, stats, reload, the stuck-stage watchdog.
  It is the only thread that can notice a hung stage, so it never does pipeline work itself.
* each output's own threads (paho's network thread and the outbox pump inside the MQTT output).

The stages (capture, vision, rules, publish, web) never import this module: it builds them from
their config sections and hands the web endpoint callables and snapshots, not itself.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

from ..capture.source import FrameSource
from ..config import Config, ConfigError, load_config
from ..exitcodes import EX_CONFIG, EX_OK, EX_SOFTWARE
from ..model.tflite import ModelError
from ..publish.base import FanOut
from ..publish.outputs import OutputContext, make_publisher
from ..publish.payloads import event_payload, state_payload, stats_payload, update_payload
from ..rules import RuleError, RulesEngine
from ..stats import PipelineStats, rss_mb
from ..types import Observation
from ..vision.annotate import Overlay
from ..vision.detectors import DetectorError
from ..vision.pipeline import Pipeline
from ..web.http import HttpError, HttpServer, LiveFeed, PreviewSlot, WebView
from . import systemd
from .memory import release_freed_memory
from .updates import UpdateDriver, updates_folder

log = logging.getLogger("emotiond")


class Runner:
    """One configured pipeline with its source and rules, running in its own thread."""

    def __init__(self, cfg: Config, publisher: FanOut, stats: PipelineStats, preview: PreviewSlot | None = None,
                 live: LiveFeed | None = None) -> None:
        self.cfg = cfg
        self.preview = preview or PreviewSlot()
        self.live = live or LiveFeed(cfg.device)
        self.publisher = publisher
        self.pipeline = Pipeline.from_config(cfg, stats)  # loads the models: may raise ModelError
        self.rules = RulesEngine(cfg.rules, self.pipeline.labels, cfg.zones)
        self.source = FrameSource(cfg.source, on_status=publisher.publish_camera_status)
        self.device = cfg.device
        self.heartbeat = time.monotonic()
        self.finished = False
        self.crashed: BaseException | None = None
        self.faces = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pipeline", daemon=True)
        self._state_key: tuple | None = None
        self._state_pending = False
        self._state_sent = 0.0

    def start(self) -> None:
        self.source.start()
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self.source.stop()
        now = time.monotonic()
        for ev in self.rules.close(now, time.time()):
            self._publish_event(ev)

    def _publish_event(self, ev) -> None:
        self.publisher.publish_event(event_payload(ev, self.device))
        # Logged once committed (the MQTT output's outbox write is synchronous), so a power cut
        # can lose an event the log never named, but never one it did.
        log.info("event %s %s %s%s", ev.type, ev.phase, ev.id, f" level={ev.level}" if ev.level else "")

    def _loop(self) -> None:
        try:
            self._process_frames()
        except Exception as exc:  # noqa: BLE001 - the supervisor turns this into exit 70
            log.exception("pipeline thread failed")
            self.crashed = exc

    def _process_frames(self) -> None:
        stats = self.pipeline.stats
        interval = self.cfg.publish.state_interval_s
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            frame = self.source.get(timeout=0.25)
            if frame is None:
                if self.source.finished:
                    self.finished = True
                    return
                if not self.source.online:
                    # No frames at all is degraded sensing: rules such as driver_absent still run.
                    self._observe(Observation(t=time.monotonic(), t_wall=time.time(), labels=self.pipeline.labels))
                continue
            obs = self.pipeline.process(frame)
            self._observe(obs)
            if self.preview.viewers:
                self.preview.offer(frame.image, obs, Overlay(self.cfg.zones, self.rules.overlay()))
            stats.record("latency", (time.monotonic() - frame.t_capture) * 1000.0)
            self.faces = len(obs.faces)
            now = time.monotonic()
            if self.live.due(now):  # a page is open: its gauges and plots move with every sample
                self.live.sample(now, obs.t_wall, state_payload(obs, self.device), self.rules.live())
            primary = obs.primary
            key = (len(obs.faces), primary.track_id if primary else None, primary.label if primary else None)
            if key != self._state_key or interval == 0:  # 0: every frame (bench/latency.py)
                self._state_key = key
                self._state_pending = True
            if self._state_pending and now - self._state_sent >= interval:
                self.publisher.publish_state(state_payload(obs, self.device))
                self._state_pending = False
                self._state_sent = now

    def _observe(self, obs: Observation) -> None:
        t0 = time.perf_counter()
        for ev in self.rules.step(obs):
            self._publish_event(ev)
        self.pipeline.stats.record("rules", (time.perf_counter() - t0) * 1000.0)


class Daemon:
    def __init__(self, cfg: Config, config_path: str | Path | None = None) -> None:
        self.cfg = cfg
        self.config_path = Path(config_path) if config_path else None
        self.stats = PipelineStats()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.exit_code = EX_OK
        self.runner: Runner | None = None
        self.publisher: FanOut | None = None
        self.preview = PreviewSlot()
        # The live page's feed rides the publish fan-out as one more output, only with the
        # endpoint on (it is not rebuilt at a reload, so neither is this choice).
        self.live = LiveFeed(cfg.device)
        self._live_output = cfg.http.enabled
        self.http: HttpServer | None = None
        self.updates: UpdateDriver | None = None

    # -- commands and signals -------------------------------------------------------------
    def _on_signal(self, signum, _frame) -> None:
        if signum == signal.SIGHUP:
            self._reload.set()
        else:
            self._stop.set()

    def on_command(self, name: str, payload: bytes) -> dict:
        if name == "stats":
            self.publish_stats()
            return {"ok": True}
        if name == "reload":
            try:
                self._validate_new_config()
            except ConfigError as exc:
                return {"ok": False, "error": "invalid config, kept the running one", "problems": exc.problems}
            self._reload.set()
            return {"ok": True, "message": "reload scheduled"}
        if name == "update":
            if self.updates is None:
                return {"ok": False, "error": "fleet updates are off (updates.enabled: false)"}
            if not self.updates.request_check():
                return {"ok": False, "error": "a release is being tried; check again after its health window"}
            return {"ok": True, "message": "update check scheduled"}
        return {"ok": False, "error": f"unknown command {name!r}", "commands": ["stats", "reload", "update"]}

    def _validate_new_config(self, overlay: dict | None = None) -> Config:
        """The config file again, with the running fleet release's keys over it (or ``overlay``'s)."""
        if self.config_path is None:
            raise ConfigError("<none>", ["(file): the daemon was not started from a config file"])
        if overlay is None and self.updates is not None:
            overlay = self.updates.overlay()
        return load_config(self.config_path, overlay)

    # -- fleet updates (the driver's Host) ----------------------------------------------------
    def validate_overlay(self, overlay: dict) -> list[str]:
        try:
            self._validate_new_config(overlay)
        except ConfigError as exc:
            return exc.problems
        return []

    def switch(self, overlay: dict) -> str | None:
        """Run the config file with ``overlay`` over it (a fleet release), as a reload does."""
        try:
            new = self._validate_new_config(overlay)
        except ConfigError as exc:
            return "; ".join(exc.problems)
        return self._apply(new)

    def figures(self) -> tuple[int, int, str | None]:
        """(frames processed, faces classified, a stage's error) for the health window."""
        r = self.runner
        classify = self.stats.stages.get("classify")
        crashed = r.crashed if r is not None else None
        return self.stats.frames, classify.n if classify else 0, (
            f"{type(crashed).__name__}: {crashed}" if crashed is not None else None)

    def publish_update(self, status: dict) -> None:
        if self.publisher is not None:
            self.publisher.publish_update(update_payload(self.cfg.device, status))

    # -- lifecycle --------------------------------------------------------------------------
    def publish_stats(self) -> None:
        if self.publisher is None:
            return
        self.publisher.publish_stats(stats_payload({"fps": self.stats.fps(), **self.snapshot()}, self.cfg.device))

    def snapshot(self) -> dict:
        """The stats payload's body (all but ``fps``, whose window each reader keeps itself):
        built here only, for the stats topic and the metrics endpoint alike."""
        r = self.runner
        current, peak = rss_mb()
        return {
            "frames": self.stats.frames,
            "skipped": r.source.skipped if r else 0,
            "frames_rejected": r.source.rejected if r else 0,
            "frames_converted": r.source.converted if r else 0,
            "faces": r.faces if r else 0,
            "faces_skipped": dict(self.stats.faces_skipped),
            "faces_unaligned": r.pipeline.model.preprocessor.unaligned if r else 0,
            "latency_ms": self.stats.latency(),
            "rss_mb": current,
            "peak_rss_mb": peak,
            "uptime_s": self.stats.uptime(),
            "delegate": r.pipeline.model.delegate_in_use if r else None,
            **({"model": r.pipeline.model_info} if r else {}),
            "camera_online": bool(r and r.source.online),
            **(self.publisher.health() if self.publisher else {"broker_connected": False, "backlog": 0}),
        }

    def healthy(self) -> tuple[bool, str]:
        """Progress from both the pipeline and the capture thread, within hang_timeout_s."""
        r = self.runner
        if r is None:
            return False, "no pipeline"
        now = time.monotonic()
        limit = self.cfg.health.hang_timeout_s
        if now - r.heartbeat > limit:
            return False, f"pipeline thread made no progress for {now - r.heartbeat:.1f} s"
        if now - r.source.heartbeat > limit:
            return False, f"capture thread made no progress for {now - r.source.heartbeat:.1f} s"
        return True, "ok"

    def _check_stuck_stage(self) -> None:
        stage = self.runner.pipeline.stage if self.runner else None
        if stage is not None:
            name, since = stage
            took = time.monotonic() - since
            if took > self.cfg.health.stage_timeout_s:
                log.critical("stage %r has run for %.1f s (limit %.1f s): exiting so the service manager restarts us",
                             name, took, self.cfg.health.stage_timeout_s)
                systemd.notify("STATUS=stuck in " + name)
                os._exit(EX_SOFTWARE)  # a hung C call cannot be interrupted; the broker sends our Last Will

    def _status_line(self) -> str:
        r = self.runner
        cam = "online" if r and r.source.online else "offline"
        broker = "connected" if self.publisher and self.publisher.health().get("broker_connected") else "disconnected"
        return f"STATUS=frames {self.stats.frames}, faces {r.faces if r else 0}, camera {cam}, broker {broker}"

    def _do_reload(self) -> None:
        self._reload.clear()
        try:
            new = self._validate_new_config()
        except ConfigError as exc:
            log.error("reload rejected, keeping the running config: %s", exc)
            return
        if new == self.cfg:
            log.info("reload: config unchanged")
            return
        error = self._apply(new)
        if error is not None:
            log.error("reload failed, keeping the running config: %s", error)
        else:
            log.info("reload: new config applied")

    def _apply(self, new: Config) -> str | None:
        """Swap in a validated config (a reload, a fleet release): the pipeline rebuilt, the
        publisher only if its parts changed. None when applied; else why not, the running config kept."""
        if new == self.cfg:
            return None
        systemd.notify("RELOADING=1")
        try:
            if (new.outputs, new.mqtt, new.device, new.outbox) != (self.cfg.outputs, self.cfg.mqtt, self.cfg.device, self.cfg.outbox):
                publisher = self._make_publisher(new)
            else:
                publisher = self.publisher
            runner = Runner(new, publisher, self.stats, self.preview, self.live)
        except (ModelError, DetectorError, RuleError, OSError, ValueError) as exc:
            systemd.notify("READY=1")
            return str(exc)
        old_runner, old_pub = self.runner, self.publisher
        old_runner.stop()
        if publisher is not old_pub:
            old_pub.stop()
            publisher.start()
        self.cfg, self.runner, self.publisher = new, runner, publisher
        del old_runner, old_pub
        release_freed_memory()
        runner.start()
        systemd.notify("READY=1")
        return None

    def _start_updates(self) -> str | None:
        """The update driver, and the config with the committed release's keys over the file's.
        None when ready; else the error that stops the daemon (python-tuf missing: exit 78)."""
        from ..update.client import MissingDependency

        try:
            self.updates = UpdateDriver(self.cfg.updates, updates_folder(self.cfg.updates, self.cfg.outbox.state_dir), self)
        except MissingDependency as exc:
            return str(exc)
        except OSError as exc:
            return f"updates: cannot use the state directory: {exc}"
        overlay = self.updates.overlay()
        if overlay and self.config_path is not None:
            try:
                self.cfg = load_config(self.config_path, overlay)
                log.info("update: running release %s", self.updates.store.current)
            except ConfigError as exc:  # the config file changed under the release since it was checked
                log.error("update: release %s does not apply over %s (%s): running the config file as it is",
                          self.updates.store.current, self.config_path, exc)
        return None

    def _make_publisher(self, cfg: Config) -> FanOut:
        fanout = make_publisher(cfg.outputs, OutputContext(cfg.device, cfg.mqtt, cfg.outbox, self.on_command))
        if self._live_output:
            self.live.device = cfg.device
            fanout.publishers.append(self.live)
        return fanout

    def page_info(self) -> dict:
        """What the live page draws from the config (read anew by each page, so a reload shows)."""
        cfg, r = self.cfg, self.runner
        seat = cfg.tracker.primary_zone
        if isinstance(seat, tuple):
            x0, y0, x1, y1 = seat
            seat_polygon = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
        else:
            seat_polygon = [list(p) for p in cfg.zones[seat].polygon] if seat is not None else None
        return {
            "device": cfg.device,
            "labels": list(r.pipeline.labels) if r else [],
            "zones": {name: [list(p) for p in zone.polygon] for name, zone in cfg.zones.items()},
            "seat": {"name": seat if isinstance(seat, str) else None, "polygon": seat_polygon},
            "rules": [{"name": rule.name or rule.type, "type": rule.type} for rule in cfg.rules],
            "preview_fps": cfg.http.preview_fps,
            "sample_hz": self.live.sample_hz,
        }

    def web_view(self) -> WebView:
        return WebView(device=self.cfg.device, healthy=self.healthy, snapshot=self.snapshot, stats=self.stats,
                       preview=self.preview, live=self.live, page=self.page_info)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        if self.cfg.updates.enabled and (error := self._start_updates()) is not None:
            log.error("%s", error)
            return EX_CONFIG
        cfg = self.cfg
        try:
            self.publisher = self._make_publisher(cfg)
            self.runner = Runner(cfg, self.publisher, self.stats, self.preview, self.live)
            self.http = HttpServer(cfg.http, self.web_view()) if cfg.http.enabled else None
        except (ModelError, DetectorError, RuleError, HttpError) as exc:
            log.error("%s", exc)
            if self.publisher is not None:
                self.publisher.stop()
            return EX_CONFIG
        self.publisher.start()
        self.runner.start()
        if self.http is not None:
            self.http.start()
        if self.updates is not None:
            self.updates.start()
        info = self.runner.pipeline.model_info
        log.info("emotiond running: device %s, source %s, model %s (%s), delegate %s, outputs %s", cfg.device,
                 cfg.source.uri, info["model"], info["quantization"], info["delegate"],
                 ", ".join(p.name for p in self.publisher.publishers))
        if info.get("precision_reason"):
            log.info("classifier.precision %s: %s", cfg.classifier.precision, info["precision_reason"])
        systemd.notify("READY=1")
        wd = systemd.watchdog_interval()
        was_healthy = True
        next_wd = next_status = time.monotonic()
        next_stats = time.monotonic() + cfg.publish.stats_interval_s
        try:
            while not self._stop.wait(0.1):
                now = time.monotonic()
                if self._reload.is_set():
                    self._do_reload()
                if self.updates is not None:
                    try:
                        self.updates.tick(now)
                    except RuntimeError as exc:
                        log.critical("%s: exiting so the service manager starts the committed release", exc)
                        self.exit_code = EX_SOFTWARE
                        break
                if self.runner.finished:
                    log.info("source finished: %s", self.cfg.source.uri)
                    break
                if self.runner.crashed is not None:
                    self.exit_code = EX_SOFTWARE
                    break
                self._check_stuck_stage()
                if wd is not None and now >= next_wd:
                    ok, why = self.healthy()
                    if ok:
                        systemd.notify("WATCHDOG=1")
                        if not was_healthy:
                            log.info("progress again: watchdog pings resume")
                    elif was_healthy:
                        log.warning("not pinging the watchdog: %s", why)
                    was_healthy = ok
                    next_wd = now + wd
                if now >= next_status:
                    systemd.notify(self._status_line())
                    next_status = now + self.cfg.health.status_interval_s
                if now >= next_stats:
                    self.publish_stats()
                    next_stats = now + self.cfg.publish.stats_interval_s
        finally:
            systemd.notify("STOPPING=1")
            log.info("stopping")
            if self.updates is not None:
                self.updates.stop()
            if self.http is not None:
                self.http.stop()
            self.runner.stop()
            self.publish_stats()
            self.publisher.stop()
        return self.exit_code
