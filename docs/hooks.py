"""MkDocs hook (mkdocs.yml ``hooks:``): the reference pages are generated from the code at build
time, and the repository's own documents that must stay where they are (the model cards beside
their models, systemd/README.md installed with the units) are shown from their one copy.

Generated pages:
  index.md               README.md, its links into docs/ made relative to the site (one front page)
  reference/config.md    every config key: type, default, constraint, title (daemon.config.fields);
                         a key without a title fails the build; the removed emotion models and
                         their replacements (daemon.model.lineup.REMOVED)
  reference/payloads.md  every MQTT / JSON-lines payload from its JSON Schema (daemon.schemas)
  reference/cli.md       the command line from its argparse parser (daemon.cli.build_parser)

Nothing here is written by hand twice: a key, payload field or option added to the code is on
its page at the next build, and tests/test_docs.py builds the site with --strict.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the checkout's daemon package, also when mkdocs runs outside the venv's editable install
    sys.path.insert(0, str(REPO))

# Repository files shown as pages where they are: (source in the repository, page in the site).
# The cards link to each other and to their images by plain relative names, so they keep one
# folder, with the images they name.
_CARDS = sorted((REPO / "models").glob("*CARD*.md"))
_CARD_TEXT = "".join(p.read_text(encoding="utf-8") for p in _CARDS)
MIRRORED = {
    **{f"models/{p.name}": f"models/cards/{p.name}" for p in _CARDS},
    **{f"models/{p.name}": f"models/cards/{p.name}" for p in sorted((REPO / "models").glob("*.png"))
       if f"]({p.name})" in _CARD_TEXT},
    "systemd/README.md": "install/systemd.md",
}


class MissingTitle(Exception):
    pass


# ---------------------------------------------------------------- configuration keys

def _bounds(metadata: list[Any]) -> str:
    """annotated_types constraints (Ge, Gt, Le, Lt, MinLen, MaxLen) as one short phrase."""
    attrs = {"Ge": "ge", "Gt": "gt", "Le": "le", "Lt": "lt", "MinLen": "min_length", "MaxLen": "max_length"}
    got = {type(m).__name__: getattr(m, attrs[type(m).__name__]) for m in metadata if type(m).__name__ in attrs}
    low = f"{got['Ge']} ≤" if "Ge" in got else f"{got['Gt']} <" if "Gt" in got else ""
    high = f"≤ {got['Le']}" if "Le" in got else f"< {got['Lt']}" if "Lt" in got else ""
    if low and high:
        parts = [f"{low} x {high}"]
    elif low:
        parts = [("≥ " if "Ge" in got else "> ") + low[:-2]]
    else:
        parts = [high] if high else []
    if "MinLen" in got:
        parts.append(f"at least {got['MinLen']} long")
    if "MaxLen" in got:
        parts.append(f"at most {got['MaxLen']} long")
    return ", ".join(parts)


def type_name(ann: Any) -> str:
    """A Python annotation in the words a config file's reader uses (YAML's, not Python's)."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if ann is type(None):
        return "null"
    if origin is typing.Annotated:
        inner = type_name(args[0])
        bounds = _bounds([m for a in args[1:] for m in getattr(a, "metadata", [a])])
        return f"{inner} ({bounds})" if bounds else inner
    if origin is typing.Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(parts + (["null"] if type(None) in args else []))
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if origin is dict:
        return f"map of {type_name(args[0])} to {type_name(args[1])}"
    return {"str": "string", "float": "number", "int": "integer", "bool": "boolean", "Path": "path",
            "PosixPath": "path", "SecretStr": "string (secret)"}.get(getattr(ann, "__name__", ""), str(ann))


def yaml_default(field: Any) -> str:
    """A field's default as it is written in the config file (false, null, 'text'), not Python's repr."""
    import yaml
    from daemon.config import shown_default

    if field.is_required():
        return shown_default(field)
    value = field.get_default(call_default_factory=True)
    if value is None:
        return ""
    if isinstance(value, Path):
        value = str(value)
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section(key: str) -> tuple[str, str]:
    """(top-level section, union member) of a key path: headings of the reference page."""
    top = key.split(".")[0].split("[")[0].split(" ")[0]
    member = key.split(").")[0] + ")" if " (type: " in key else ""
    return top, member


def config_reference() -> str:
    from daemon.config import fields

    untitled = [key for key, field in fields() if not field.title]
    if untitled:  # the reference is only as good as its titles: a key without one fails the build
        raise MissingTitle(f"config keys without a title (Field(..., title=...)): {', '.join(untitled)}")
    out = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models at build time (`daemon.config.fields`, the same walk as",
        "`python -m daemon.config`): every key the config accepts, with its type, default, constraint and",
        "title. Unknown keys are errors; how the file is read: [Configure](../configure/index.md).",
        "Keys of a kind (`rules[] (type: ...)`, `detector (type: ...)`, `outputs[] (type: ...)`)",
        "apply to an entry whose `type` is that kind.",
    ]
    last: tuple[str, str] = ("", "")
    header = ["", "| key | type | default | constraint | meaning |", "| --- | --- | --- | --- | --- |"]
    for key, field in fields():
        top, member = _section(key)
        if top != last[0]:
            out += ["", f"## {top}"]
            if not member:
                out += header
        if member and member != last[1]:
            out += ["", f"### {member}"] + header
        last = (top, member)
        default = yaml_default(field)
        out.append(f"| `{_cell(key)}` | {_cell(type_name(field.annotation))} | {default and f'`{_cell(default)}`'} "
                   f"| {_cell(_bounds(field.metadata))} | {_cell(field.title or '')} |")
    return "\n".join(out + removed_models()) + "\n"


def removed_models() -> list[str]:
    """The emotion models no longer shipped and what to name instead: the table the config check
    quotes (daemon.model.lineup.REMOVED), so the page and the error cannot disagree."""
    from daemon.model.lineup import REMOVED, REMOVED_IN

    return ["", "## Removed models", "",
            f"`classifier.model` naming one of these files, when no file of that name is there, stops `emotiond check`"
            f" and start-up (exit 78) with the replacement. They were removed in emotiond {REMOVED_IN}"
            " ([Models](../models/index.md) says why).", "",
            "| removed | use instead |", "| --- | --- |"] + [f"| `{name}` | {_cell(instead)} |"
                                                             for name, instead in REMOVED.items()]


# ---------------------------------------------------------------- payloads (JSON Schemas)

_SCHEMA_WORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
                 "minProperties", "pattern", "format")


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """A node with its local $ref (and allOf of refs) merged in."""
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref:
        target = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        node = {**_resolve(target, root), **node}
    for sub in node.pop("allOf", []):
        if "if" not in sub:
            sub = _resolve(sub, root)
            node = {**sub, **node, "properties": {**sub.get("properties", {}), **node.get("properties", {})},
                    "required": [*sub.get("required", []), *node.get("required", [])]}
    return node


def _schema_type(node: dict[str, Any], root: dict[str, Any]) -> str:
    node = _resolve(node, root)
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return " or ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    if "oneOf" in node or "anyOf" in node:
        return " or ".join(_schema_type(s, root) for s in node.get("oneOf", node.get("anyOf", [])))
    kinds = node.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = []
    for k in kinds:
        if k == "array" and "items" in node:
            words.append(f"array of {_schema_type(node['items'], root)}")
        else:
            words.append(k)
    return " or ".join(words)


def _schema_bounds(node: dict[str, Any], root: dict[str, Any]) -> str:
    node = _resolve(node, root)
    alts = node.get("oneOf", node.get("anyOf", []))
    parts = [f"{w} {node[w]}" if w != "pattern" else f"pattern `{node[w]}`" for w in _SCHEMA_WORDS if w in node]
    parts += [b for a in alts if (b := _schema_bounds(a, root))]
    return _cell(", ".join(parts))


def _schema_rows(node: dict[str, Any], root: dict[str, Any], path: str, required: bool) -> list[str]:
    node = _resolve(node, root)
    rows = []
    if path:
        rows.append(f"| `{_cell(path)}` | {_cell(_schema_type(node, root))} | {'yes' if required else 'no'} "
                    f"| {_schema_bounds(node, root)} | {_cell(node.get('description', ''))} |")
    alts = [_resolve(a, root) for a in node.get("oneOf", node.get("anyOf", []))]
    for obj in [node, *alts]:
        for name, sub in obj.get("properties", {}).items():
            rows += _schema_rows(sub, root, f"{path}.{name}" if path else name, name in obj.get("required", []))
        extra = obj.get("additionalProperties")
        if isinstance(extra, dict):
            rows += _schema_rows(extra, root, f"{path}.<name>" if path else "<name>", False)
        if isinstance(obj.get("items"), dict) and _resolve(obj["items"], root).get("properties"):
            rows += _schema_rows(obj["items"], root, f"{path}[]", False)[1:]
    return rows


def _conditions(schema: dict[str, Any], root: dict[str, Any]) -> list[str]:
    """if/then parts of a schema (at its top or in its allOf), each as a sentence and its rows."""
    out = []
    for part in [schema, *schema.get("allOf", [])]:
        if "if" not in part:
            continue
        when = ", ".join(f"`{k}` is `{json.dumps(v.get('const'))}`" for k, v in part["if"].get("properties", {}).items())
        then = part.get("then", {})
        if then.get("required"):
            out += ["", f"When {when}: " + ", ".join(f"`{r}`" for r in then["required"]) + " required."]
        for name, sub in then.get("properties", {}).items():
            out += ["", f"When {when}, `{name}` is:", "", "| field | type | required | constraint | meaning |",
                    "| --- | --- | --- | --- | --- |", *_schema_rows(sub, root, name, True)]
    return out


def payload_reference() -> str:
    from daemon.schemas import NAMES, load

    out = [
        "# Payload reference",
        "",
        "Generated from the JSON Schemas (`daemon/schemas/*.json`, draft 2020-12) at build time. The tests",
        "validate real payloads against the same schemas; the state schema's face signals come from the",
        "signal registry. Topics, QoS and examples: [MQTT topics](../integrate/mqtt.md).",
    ]
    for name in NAMES:
        schema = load(name)
        out += ["", f"## {name}", "", schema.get("title", ""), "",
                "| field | type | required | constraint | meaning |", "| --- | --- | --- | --- | --- |",
                *_schema_rows(schema, schema, "", True), *_conditions(schema, schema), "",
                f'??? note "the {name} JSON Schema"', "",
                "    ```json", *("    " + line for line in json.dumps(schema, indent=2).splitlines()), "    ```"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- command line

def cli_reference() -> str:
    from daemon.cli import build_parser

    parser = build_parser()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width: the page's must not depend on it
    try:
        out = ["# Command-line reference", "",
               "Generated from the argparse parser (`daemon.cli.build_parser`) at build time: what",
               "`emotiond --help` and `emotiond <command> --help` print. Examples and exit codes:",
               "[Command line](../integrate/cli.md).", "", "```", parser.format_help().rstrip(), "```"]
        subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for name, sub in subs.choices.items():
            out += ["", f"## emotiond {name}", "", "```", sub.format_help().rstrip(), "```"]
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(out) + "\n"


def home_page() -> str:
    # README.md links only into docs/ (a link elsewhere fails --strict here), so one rewrite
    # makes its links the site's.
    return re.sub(r"\]\(docs/", "](", (REPO / "README.md").read_text(encoding="utf-8"))


GENERATED = {"index.md": home_page, "reference/config.md": config_reference, "reference/payloads.md": payload_reference,
             "reference/cli.md": cli_reference}


# ---------------------------------------------------------------- MkDocs events

def on_files(files, config):
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import File

    try:
        pages = {uri: make() for uri, make in GENERATED.items()}
    except MissingTitle as exc:
        raise PluginError(str(exc)) from None  # mkdocs build stops with this one line
    for uri, content in pages.items():
        files.append(File.generated(config, uri, content=content))
    for source, uri in MIRRORED.items():
        files.append(File.generated(config, uri, abs_src_path=str(REPO / source)))
    return files
