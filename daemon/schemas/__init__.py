"""JSON Schemas (draft 2020-12) of every payload emotiond publishes, shipped inside the package.

``load("state")`` returns the schema dict; ``validator("state")`` a jsonschema validator (jsonschema
is needed only by tests and tools, never by the running daemon). The state schema's face object
is completed from the face signal registry: each signal declares the schema of its value, so a
new signal is in the schema without editing it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

NAMES = ("state", "event", "stats", "reply", "update")


@cache
def load(name: str) -> dict[str, Any]:
    if name not in NAMES:
        raise KeyError(f"no payload schema named {name!r} (have: {', '.join(NAMES)})")
    schema = json.loads(resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8"))
    if name == "state":
        from ..vision.signals import state_schema_properties

        face = next(s for s in schema["properties"]["primary"]["oneOf"] if s.get("type") == "object")
        signals = state_schema_properties()
        face["properties"].update(signals)
        face["required"] = [*face["required"], *signals]
    return schema


def validator(name: str):
    """A ``jsonschema.Draft202012Validator`` for one payload kind (imports jsonschema lazily)."""
    from jsonschema import Draft202012Validator

    schema = load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
