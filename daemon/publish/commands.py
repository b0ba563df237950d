"""Remote commands on ``<prefix>/cmd/<name>``: validate, dispatch, answer; never raise.

Anyone who can publish to the broker can reach this code, so every message is checked (name,
size, JSON shape) before the application sees it, and whatever goes wrong becomes an error reply
on ``<prefix>/reply`` and a count, not an exception in paho's network thread.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from .payloads import reply_payload

log = logging.getLogger(__name__)

CommandHandler = Callable[[str, bytes], dict]
NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
REQUEST_ID_MAX = 64
LOG_EVERY_S = 10.0  # rejected commands are logged at most this often (a flood must not flood the journal)


class CommandError(Exception):
    """A handler raises this to reject a command with a message for the reply."""


def parse_args(payload: bytes, max_bytes: int) -> dict[str, Any]:
    """An empty payload or a JSON object of at most ``max_bytes``; anything else is a CommandError."""
    if len(payload) > max_bytes:
        raise CommandError(f"payload too large ({len(payload)} bytes, limit {max_bytes})")
    if not payload.strip():
        return {}
    try:
        args = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError covers JSONDecodeError
        raise CommandError(f"payload is not valid UTF-8 JSON ({type(exc).__name__})") from None
    except RecursionError:
        raise CommandError("payload is nested too deeply") from None
    if not isinstance(args, dict):
        raise CommandError(f"payload must be empty or a JSON object, got {type(args).__name__}")
    return args


class CommandRouter:
    """Turns one incoming command message into one reply payload (a dict for ``reply.json``)."""

    def __init__(self, device: str, handler: CommandHandler | None, max_bytes: int = 4096) -> None:
        self.device = device
        self.handler = handler
        self.max_bytes = max_bytes
        self.handled = 0
        self.rejected = 0
        self._logged_at = float("-inf")

    def handle(self, name: str, payload: bytes) -> dict[str, Any]:
        shown = name[:64]
        request_id = None
        try:
            if not NAME.fullmatch(name):
                raise CommandError("invalid command name (expected [a-z][a-z0-9_]{0,31})")
            args = parse_args(payload, self.max_bytes)
            rid = args.get("id")
            request_id = rid if isinstance(rid, str) and len(rid) <= REQUEST_ID_MAX else None
            ok, result, error = self._dispatch(name, payload)
        except CommandError as exc:
            ok, result, error = False, None, str(exc)
        if ok:
            self.handled += 1
        else:
            self._reject(shown, error or "command failed")
        return reply_payload(self.device, shown, ok, result=result, error=error, request_id=request_id)

    def _dispatch(self, name: str, payload: bytes) -> tuple[bool, dict | None, str | None]:
        if name == "ping":
            return True, {"pong": True}, None
        if self.handler is None:
            raise CommandError(f"unknown command {name!r}")
        try:
            answer = dict(self.handler(name, payload) or {})
        except CommandError:
            raise
        except Exception as exc:  # the application's bug must not kill paho's thread
            log.exception("command %r failed", name)
            raise CommandError(f"internal error ({type(exc).__name__})") from None
        ok = bool(answer.pop("ok", True))
        error = answer.pop("error", None)
        if not ok and not isinstance(error, str):
            error = "command failed"
        return ok, answer or None, error if not ok else None

    def _reject(self, name: str, error: str) -> None:
        self.rejected += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning("rejected command %r: %s (%d rejected so far)", name, error, self.rejected)
