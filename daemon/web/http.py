"""The daemon's optional local HTTP endpoint: ``/healthz``, ``/metrics``, ``/preview.mjpg``,
``/stream`` (Server-Sent Events: the payloads MQTT gets, see ``live``) and ``/`` (the live page:
plain HTML, CSS and one script in ``page/``, shipped in the package, no build step). Off by
default; with it off nothing listens.

The server is the standard library's ``ThreadingHTTPServer``: a few GET routes, one thread per
client, no dependency beyond ``prometheus-client`` (for the exposition format only, imported
when the endpoint is enabled). A web framework would add more to the device install than
these routes need.

The preview is the only place an image leaves the process. It costs one attribute check per
frame while nobody watches: the pipeline thread hands the newest (frame, observation) to
:class:`PreviewSlot` only while a viewer is connected, and JPEG encoding happens in the
viewer's thread, at most ``preview_fps`` times a second however many viewers there are.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import urlsplit

from ..publish.payloads import encode, stats_payload
from .config import TOKEN_ENV, HttpConfig
from .live import LiveFeed, sse_frame
from .preview import PreviewSlot
from .view import WebView

__all__ = ["HttpConfig", "HttpError", "HttpServer", "LiveFeed", "PreviewSlot", "TOKEN_ENV", "WebView"]

log = logging.getLogger(__name__)

BOUNDARY = "frame"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
# The page's files (package data), by route: a fixed list, so no path from a request reaches the disk.
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/index.html": ("index.html", "text/html; charset=utf-8"),
              "/live.js": ("live.js", "text/javascript; charset=utf-8"), "/live.css": ("live.css", "text/css; charset=utf-8")}
ROUTES = ["/", "/healthz", "/metrics", "/preview.mjpg", "/stream"]
HEALTH_EVERY_S = 2.0  # the page's health panel: a stats payload from the snapshot (MQTT's comes every stats_interval_s)
FIRST_HEALTH_S = 0.5
PING_EVERY_S = 15.0  # an SSE comment keeps proxies and the browser from timing the stream out
DRAIN_S = 1.0  # at shutdown, streams get this long to send what is left (the camera going offline)


class HttpError(RuntimeError):
    """The endpoint is enabled but cannot start (library missing, port taken)."""


def page_file(name: str) -> bytes:
    return resources.files(__package__).joinpath("page", name).read_bytes()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a viewer's streaming thread never delays shutdown
    block_on_close = False
    endpoint: HttpServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "emotiond"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        ep = self.server.endpoint
        if not ep.authorized(self.headers.get("Authorization")):
            # One challenge per header: Chromium reads only the first of a comma-separated list
            # and, finding Bearer, would never offer its Basic login (nor use a URL's user:token@).
            self._reply(HTTPStatus.UNAUTHORIZED, b'{"error": "missing or wrong token"}\n', "application/json",
                        [("WWW-Authenticate", 'Basic realm="emotiond"'), ("WWW-Authenticate", 'Bearer realm="emotiond"')])
            return
        route = urlsplit(self.path).path
        if route == "/healthz":
            ok, why = ep.view.healthy()
            body = json.dumps({"status": "ok" if ok else "unhealthy", "reason": why}).encode() + b"\n"
            self._reply(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, body, "application/json")
        elif route == "/metrics":
            body, ctype = ep.metrics()
            self._reply(HTTPStatus.OK, body, ctype)
        elif route == "/preview.mjpg":
            self._stream(ep)
        elif route == "/stream":
            self._events(ep)
        elif route in PAGE_FILES:
            name, ctype = PAGE_FILES[route]
            self._reply(HTTPStatus.OK, ep.page_files[name], ctype)
        else:
            self._reply(HTTPStatus.NOT_FOUND, json.dumps({"error": "not found", "routes": ROUTES}).encode() + b"\n",
                        "application/json")

    def _reply(self, status: HTTPStatus, body: bytes, ctype: str, headers: list[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, ep: HttpServer) -> None:
        """multipart/x-mixed-replace: one JPEG part per preview frame until the client leaves."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        cfg, slot = ep.cfg, ep.view.preview
        period = 1.0 / cfg.preview_fps
        seq, due = 0, time.monotonic()
        try:
            with slot.watching():
                while not ep.stopping.is_set():
                    got = slot.jpeg(seq, period, cfg.preview_quality, timeout=1.0)
                    if got is None:
                        continue  # no frame (camera offline): keep the connection, wait on
                    seq, data = got
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                    self.wfile.write(head + data + b"\r\n")
                    due = max(due + period, time.monotonic())
                    ep.stopping.wait(due - time.monotonic())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the viewer left

    def _events(self, ep: HttpServer) -> None:
        """text/event-stream: ``hello`` (what the page draws from the config), the replay (open
        alerts, last events, newest state, stats, camera status), then every payload as it is
        published, a stats payload from the snapshot every HEALTH_EVERY_S, and ``bye`` when the
        daemon stops. Written from this viewer's thread only."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        feed, view = ep.view.live, ep.view
        fps_t, fps_frames = time.monotonic(), view.stats.frames
        try:
            with feed.watching(), ep.streaming():
                self.wfile.write(b"retry: 2000\n\n" + sse_frame("hello", encode(view.page())))
                seq, msgs = feed.replay()
                next_ping = time.monotonic()
                next_health = next_ping + FIRST_HEALTH_S  # a window long enough for a frame rate
                while True:
                    self.wfile.write(b"".join(m.data for m in msgs))
                    now = time.monotonic()
                    if now >= next_health and not feed.closed:
                        frames = view.stats.frames
                        fps = (frames - fps_frames) / (now - fps_t) if now > fps_t else 0.0
                        fps_t, fps_frames = now, frames
                        snap = stats_payload({"fps": round(fps, 2), **view.snapshot()}, view.device)
                        self.wfile.write(sse_frame("stats", encode(snap)))
                        next_health = now + HEALTH_EVERY_S
                    if now >= next_ping:
                        self.wfile.write(b": ping\n\n")
                        next_ping = now + PING_EVERY_S
                    self.wfile.flush()
                    if feed.closed:
                        break
                    got = feed.wait(seq, timeout=max(0.05, min(next_health, next_ping) - time.monotonic()))
                    if got is None:  # fell behind the ring: start over from the newest of everything
                        seq, msgs = feed.replay()
                        continue
                    msgs = got
                    if msgs:
                        seq = msgs[-1].seq
                self.wfile.write(b"".join(m.data for m in feed.wait(seq, timeout=0) or []) + sse_frame("bye", b"{}"))
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the viewer left

    def log_message(self, fmt: str, *args) -> None:
        log.debug("http %s " + fmt, self.client_address[0], *args)


class HttpServer:
    """The endpoint of one daemon. Creating it binds the port (errors: HttpError); ``start``
    serves in a background thread; ``stop`` ends every stream and closes the socket."""

    def __init__(self, cfg: HttpConfig, view: WebView) -> None:
        try:
            from .metrics import DaemonCollector, exposition
        except ImportError as exc:
            raise HttpError(f"http.enabled needs prometheus-client ({exc.name} is missing): pip install 'emotiond[http]'") from None
        from prometheus_client import CollectorRegistry, ProcessCollector

        self.cfg, self.view = cfg, view
        self.stopping = threading.Event()
        self.page_files = {name: page_file(name) for name, _ in PAGE_FILES.values()}
        self._streams = 0
        self._streams_cond = threading.Condition()
        self._token = cfg.token_value()
        self.registry = CollectorRegistry()
        self.registry.register(DaemonCollector(view))
        ProcessCollector(registry=self.registry)
        self._exposition = exposition
        try:
            self._server = _Server((cfg.host, cfg.port), _Handler)
        except OSError as exc:
            raise HttpError(f"http: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror}") from None
        self._server.endpoint = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        if self._token is None and cfg.host not in _LOOPBACK:
            log.warning("http endpoint on %s without a token: anyone who can reach it sees the camera", cfg.host)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def authorized(self, header: str | None) -> bool:
        """No token configured, or ``Bearer <token>`` (or Basic auth with the token as the
        password, so a browser can ask for it); compared in constant time."""
        if self._token is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                value = base64.b64decode(value, validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                return False
        elif scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), self._token.encode())

    @contextmanager
    def streaming(self) -> Iterator[None]:
        """Counts the open event streams, so ``stop`` can let them send what is left."""
        with self._streams_cond:
            self._streams += 1
        try:
            yield
        finally:
            with self._streams_cond:
                self._streams -= 1
                self._streams_cond.notify_all()

    def metrics(self) -> tuple[bytes, str]:
        return self._exposition(self.registry)

    def start(self) -> None:
        self._thread.start()
        log.info("http endpoint on http://%s:%d/ (%s)", self.cfg.host, self.port,
                 "token required" if self._token else "no token")

    def stop(self) -> None:
        self.view.live.close()
        with self._streams_cond:  # each stream sends what is queued (the camera going offline) and "bye"
            self._streams_cond.wait_for(lambda: self._streams == 0, DRAIN_S)
        self.stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
