"""What the web endpoint may see of a running daemon (built by the runtime, read per request)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..stats import PipelineStats
from .live import LiveFeed
from .preview import PreviewSlot


@dataclass(frozen=True)
class WebView:
    """What the endpoint may see of a running daemon: callables and shared objects, never the
    daemon itself (the web layer does not import the runtime that drives it). Callables are
    read anew on every request, so a reload is followed without telling the server."""

    device: str
    healthy: Callable[[], tuple[bool, str]]  # (ok, reason), as /healthz reports it
    snapshot: Callable[[], dict[str, Any]]  # the stats payload's body, without fps
    stats: PipelineStats  # frame counters and per-stage latency rings
    preview: PreviewSlot
    live: LiveFeed  # the payloads for the live page's event stream
    page: Callable[[], dict[str, Any]]  # what the page draws from the config: zones, the seat, labels, rules
