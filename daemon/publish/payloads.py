"""JSON payloads for the MQTT topics (design section 3); shapes are fixed by daemon/schemas/.

Builders run only when something is published (state at most every ``state_interval_s``),
never per frame, so they favour plain readable dicts over cleverness.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..types import Event, FaceState, Observation
from ..vision.signals import signals_json

SCHEMA_VERSION = 1


def iso(t_wall: float) -> str:
    """UTC ISO 8601 with milliseconds and a ``Z``: ``2025-01-31T12:00:00.123Z``."""
    return datetime.fromtimestamp(t_wall, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _envelope(device: str, t_wall: float | None) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "device": device, "ts": iso(time.time() if t_wall is None else t_wall)}


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays (e.g. in rule details) as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as sent on the wire."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=_plain).encode()


def probs_json(probs: Any, labels: tuple[str, ...]) -> dict[str, float] | None:
    """Class probabilities by label, rounded: the form of every payload and timeline (None for a
    face not classified)."""
    if probs is None:
        return None
    return {label: round(float(p), 4) for label, p in zip(labels, probs)}


def _face(face: FaceState, labels: tuple[str, ...]) -> dict[str, Any]:
    """A face in the state payload: emotion, probabilities, and every face signal by name."""
    return {
        "track_id": int(face.track_id),
        "emotion": face.label,
        "confidence": round(float(face.confidence), 4),
        "probs": probs_json(face.probs, labels),
        **signals_json(face.signals),
    }


def state_payload(obs: Observation, device: str, tracks: int | None = None) -> dict[str, Any]:
    """What the camera sees now: how many faces and the primary face (the driver)."""
    primary = obs.primary
    return {
        **_envelope(device, obs.t_wall),
        "faces_present": bool(obs.faces),
        "faces": len(obs.faces),
        "tracks": len(obs.faces) if tracks is None else int(tracks),
        "primary": None if primary is None else _face(primary, obs.labels),
    }


def event_payload(event: Event, device: str, t_wall: float | None = None) -> dict[str, Any]:
    """One alert step; ``id`` is the alert's UUID so consumers can drop QoS 1 duplicates."""
    return {
        **_envelope(device, t_wall),
        "id": event.id,
        "type": event.type,
        "rule": event.rule,
        "phase": event.phase,
        "level": event.level,
        "started_at": iso(event.started_at),
        "ended_at": None if event.ended_at is None else iso(event.ended_at),
        "details": dict(event.details),
    }


def stats_payload(snapshot: Mapping[str, Any], device: str, t_wall: float | None = None) -> dict[str, Any]:
    """Health numbers; ``inference_ms`` is the classify stage's median unless given."""
    body = dict(snapshot)
    if "inference_ms" not in body:
        classify = (body.get("latency_ms") or {}).get("classify")
        body["inference_ms"] = classify["p50"] if classify else None
    return {**_envelope(device, t_wall), **body}


def camera_payload(online: bool, device: str) -> dict[str, Any]:
    """The camera's state as JSON, for outputs that carry JSON only (MQTT sends the plain
    ``online``/``offline`` string on its retained ``camera/status`` topic)."""
    return {**_envelope(device, None), "online": online}


def reply_payload(device: str, command: str, ok: bool, *, result: Mapping[str, Any] | None = None,
                  error: str | None = None, request_id: str | None = None) -> dict[str, Any]:
    """The answer to one ``cmd/<name>`` message, published on ``<prefix>/reply``."""
    reply: dict[str, Any] = {**_envelope(device, None), "command": command, "ok": ok}
    if request_id is not None:
        reply["request_id"] = request_id
    if result is not None:
        reply["result"] = dict(result)
    if error is not None:
        reply["error"] = error
    return reply


def update_payload(device: str, status: Mapping[str, Any]) -> dict[str, Any]:
    """Where the device stands with fleet updates (retained on ``<prefix>/update``): the release
    it runs, the one it is on its way to, the last outcome and why, its counts."""
    return {**_envelope(device, None), **status}
