"""The daemon's configuration: one YAML file validated by pydantic, every problem reported.

Each stage owns the models of its own sections (capture, vision and its detector and face
signal plug-ins, model, rules, publish and its outputs, web); this module only composes them, resolves relative paths against the config
file's folder, checks that the files the config names exist, and turns every problem into one
line with its key path. An invalid file stops the daemon with exit code 78 (EX_CONFIG), which
the systemd unit does not restart on.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from .capture.config import SourceConfig, is_path
from .configbase import Section, key_path
from .exitcodes import EX_CONFIG  # noqa: F401 - re-exported for callers that load configs
from .model.config import ClassifierConfig
from .model import lineup, paths as model_paths
from .publish.mqtt_config import MqttConfig, MqttOutputConfig, PublishConfig
from .publish.outbox import OutboxConfig
from .publish.outputs import OutputConfig
from .rules import DEFAULT_RULES, RuleConfig
from .update.config import UpdatesConfig
from .vision.config import PipelineConfig
from .vision.detectors import DetectorConfig, YunetConfig
from .vision.signals import SIGNALS
from .vision.tracking import TrackerConfig
from .vision.zones import ZoneConfig
from .web.config import HttpConfig


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", title="log level")
    json_format: bool = Field(False, alias="json", title="one JSON object per line (for journald/Loki)")


class HealthConfig(Section):
    stage_timeout_s: float = Field(
        10.0, gt=0, title="a detection/inference call running longer than this exits the process (systemd restarts it)"
    )
    hang_timeout_s: float = Field(
        10.0, gt=0, title="no progress from the pipeline or capture thread for this long stops the systemd watchdog pings"
    )
    status_interval_s: float = Field(5.0, gt=0, title="how often the systemd STATUS= line is refreshed")


class _Config(Section):
    device_id: str | None = Field(None, title="device id in topics and payloads (default: the hostname)")
    source: SourceConfig = SourceConfig()
    detector: DetectorConfig = YunetConfig()
    tracker: TrackerConfig = TrackerConfig()
    zones: dict[str, ZoneConfig] = Field(
        default_factory=dict, title="named polygons in frame fractions, e.g. the driver's seat or a shop's entrance "
                                    "(tracker.primary_zone and the visitors rule name them)")
    classifier: ClassifierConfig = ClassifierConfig()
    pipeline: PipelineConfig = PipelineConfig()
    rules: list[RuleConfig] = Field(
        default_factory=lambda: TypeAdapter(list[RuleConfig]).validate_python(DEFAULT_RULES),
        title="event rules, see docs/configure/rules.md (default: config.yaml's driver rules and sustained anger)")
    outputs: list[OutputConfig] = Field(
        default_factory=lambda: [MqttOutputConfig()],
        title="where payloads go: mqtt (the mqtt: section) and/or jsonl (JSON lines to a file or stdout)")
    mqtt: MqttConfig = MqttConfig()
    publish: PublishConfig = PublishConfig()
    outbox: OutboxConfig = OutboxConfig()
    health: HealthConfig = HealthConfig()
    logging: LoggingConfig = LoggingConfig()
    http: HttpConfig = HttpConfig()
    updates: UpdatesConfig = UpdatesConfig()

    @field_validator("device_id")
    @classmethod
    def device_id_is_a_topic_level(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "+#/\0")):
            raise ValueError("must be a non-empty MQTT topic level: no '+', '#', '/' or NUL")
        return v

    @model_validator(mode="after")
    def _outputs_distinct(self) -> _Config:
        names = [getattr(o, "name", o.type) for o in self.outputs]
        if not names:
            raise ValueError("outputs: name at least one output (mqtt or jsonl)")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"outputs: {', '.join(dupes)} named more than once; give each output a distinct name")
        return self

    @model_validator(mode="after")
    def _zone_names_exist(self) -> _Config:
        named = [("tracker.primary_zone", self.tracker.primary_zone)] if isinstance(self.tracker.primary_zone, str) else []
        for i, rule in enumerate(self.rules):
            named += [(f"rules[{i}].zones", z) for z in getattr(rule, "zones", None) or ()]
        for where, name in named:
            if name not in self.zones:
                known = ", ".join(sorted(self.zones)) or "none"
                raise ValueError(f"{where}: zone {name!r} is not defined under zones: (defined: {known})")
        return self

    @model_validator(mode="after")
    def _signals_have_their_signals(self) -> _Config:
        # gaze reads head_pose's mesh. Left at its default it follows head_pose off (a config
        # that turns head pose off means no driver signals); turned on in the file, the
        # contradiction is refused like a rule's.
        for signal in SIGNALS:
            section = getattr(self, signal.config_key)
            off = next((k for k in signal.needs_signals if not getattr(self, k).enabled), None)
            if not section.enabled or off is None:
                continue
            if signal.config_key in self.model_fields_set and "enabled" in section.model_fields_set:
                raise ValueError(f"{signal.config_key}.enabled: the {signal.config_key} signal needs the {off} "
                                 f"signal; set {off}.enabled: true or {signal.config_key}.enabled: false")
            object.__setattr__(self, signal.config_key, section.model_copy(update={"enabled": False}))
        return self

    @model_validator(mode="after")
    def _rules_have_their_signals(self) -> _Config:
        # A driver rule without the signal it reads would run and never alert (distraction
        # without head pose), or alert wrongly (fatigue without head pose counts a glance down
        # at the lap as closed eyes). Rules the file names: the contradiction is refused with
        # the key path to change. The default rules (no ``rules:`` key): those whose signals the
        # file turns off are left out, as a shop camera with the driver signals off expects.
        def off(rule: Any) -> str | None:
            return next((k for k in rule.needs_signals if not getattr(self, k).enabled), None)

        if "rules" not in self.model_fields_set:
            object.__setattr__(self, "rules", [r for r in self.rules if off(r) is None])  # frozen: set once, here
        for i, rule in enumerate(self.rules):
            if (key := off(rule)) is not None:
                raise ValueError(f"{key}.enabled: rules[{i}] ({rule.type}) needs the {key} signal; "
                                 f"set {key}.enabled: true or remove the rule")
        return self

    @property
    def device(self) -> str:
        return self.device_id or socket.gethostname()


# One section per face signal plug-in (``eyes:``, ...), taken from the signal registry, so that
# adding a signal never edits this file.
Config = create_model(
    "Config", __base__=_Config, __doc__="The whole config.yaml: every stage's sections.",
    **{s.config_key: (s.Config, Field(default_factory=s.Config, title=s.title)) for s in SIGNALS},
)


def _models_in(ann: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (a model, a union, a list of a union...)."""
    import typing

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return [m for a in typing.get_args(ann) for m in _models_in(a)]


_UNION_TAGS = {m.model_fields["type"].default
               for m in (*_models_in(RuleConfig), *_models_in(DetectorConfig), *_models_in(OutputConfig))}


class ConfigError(Exception):
    """Every problem with a config file, one per line, each with its key path."""

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__(f"invalid config {path}:\n" + "\n".join(f"  {p}" for p in problems))


def _loc(loc: tuple[Any, ...]) -> str:
    """The key path of a pydantic error, without the union tags pydantic adds (``rules[0]``,
    not ``rules[0].sustained_emotion``): the tag is the value of ``type``, not a key."""
    kept: list[Any] = []
    for part in loc:
        if isinstance(part, str) and part in _UNION_TAGS and kept and (isinstance(kept[-1], int) or kept[-1] == "detector"):
            continue
        kept.append(part)
    return key_path(tuple(kept))


def _resolve_paths(model: BaseModel, base: Path) -> BaseModel:
    """Make every relative Path in the (nested, frozen) config absolute against ``base`` (a
    model file absent there is the installed package's, see ``daemon.model.paths``)."""
    update: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        new = _resolve_value(value, base)
        if new is not value:
            update[name] = new
    return model.model_copy(update=update) if update else model


def _resolve_value(value: Any, base: Path) -> Any:
    if isinstance(value, Path):
        return model_paths.resolve(value, base)
    if isinstance(value, BaseModel):
        return _resolve_paths(value, base)
    if isinstance(value, list):
        items = [_resolve_value(v, base) for v in value]
        return items if any(a is not b for a, b in zip(items, value)) else value
    return value


def _missing_files(cfg: Config) -> list[str]:
    """Files the config names that must exist before anything starts."""
    need: list[tuple[str, Path | None]] = [("classifier.model", cfg.classifier.model)]
    for signal in SIGNALS:
        section = getattr(cfg, signal.config_key)
        if section.enabled:
            need += [(f"{signal.config_key}.{k}", v) for k, v in section if isinstance(v, Path)]
    need.append(("detector.model", getattr(cfg.detector, "model", None)))
    tls = getattr(cfg.mqtt, "tls", None)
    if tls is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            need.append((f"mqtt.tls.{key}", getattr(tls, key, None)))
    need.append(("mqtt.password_file", getattr(cfg.mqtt, "password_file", None)))
    if cfg.updates.enabled:
        need.append(("updates.root", cfg.updates.root))
    return [_not_found(key, Path(path)) for key, path in need if path is not None and not Path(path).is_file()]


def _not_found(key: str, path: Path) -> str:
    """One missing file's line: a model emotiond no longer ships says what replaces it
    (daemon/model/lineup.py), any other file where it was looked for."""
    if key == "classifier.model" and (removed := lineup.removed_message(path)):
        return f"{key}: {removed} (not found: {path})"
    return f"{key}: file not found: {path}{_installed_hint(path)}"


def _installed_hint(path: Path) -> str:
    """Where else a missing model was looked for (a relative model path falls back to the
    installed models, see ``daemon.model.paths``)."""
    folder = model_paths.installed_models_dir()
    if path.parent.name != model_paths.MODELS_PREFIX or folder is None or path.parent == folder:
        return ""
    return f" (nor {folder / path.name} among the installed models)"


def merge(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``, section by section (nested mappings merged, anything else replaced):
    how a fleet update's config fragment and model apply over the config file."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_config(data: Any, path: str | Path = "<config>", base_dir: Path | None = None,
                 overlay: dict | None = None) -> Config:
    """``overlay``: keys set over the file's (an installed fleet update, ``daemon/update/store.py``);
    a problem it causes is reported like the file's own."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, [f"(top level): expected a mapping of sections, got {type(data).__name__}"])
    if overlay:
        data = merge(data, overlay)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            msg = e["msg"]
            if e["type"] == "extra_forbidden":
                msg = "unknown key"
            if not e["loc"] and e["type"] == "value_error" and isinstance(e.get("ctx", {}).get("error"), ValueError):
                # A whole-config check names its own key path first ("head_pose.enabled: ...").
                problems.append(str(e["ctx"]["error"]))
                continue
            problems.append(f"{_loc(e['loc'])}: {msg}" + (f" (got {e['input']!r})" if e["type"] != "extra_forbidden" and not isinstance(e["input"], (dict, list)) else ""))
        raise ConfigError(path, problems) from None
    base = base_dir or Path.cwd()
    cfg = _resolve_paths(cfg, base)
    if is_path(cfg.source.uri) and not Path(cfg.source.uri).is_absolute():
        # A file or folder source is a path like the others, relative to the config file.
        cfg = cfg.model_copy(update={"source": cfg.source.model_copy(update={"uri": os.path.normpath(base / cfg.source.uri)})})
    missing = _missing_files(cfg)
    if missing:
        raise ConfigError(path, missing)
    return cfg


def load_config(path: str | Path, overlay: dict | None = None) -> Config:
    """Read, validate and resolve a config file (with ``overlay``'s keys over it); raise
    ConfigError listing every problem."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(path, [f"(file): cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError(path, [f"(yaml) {where}: {getattr(exc, 'problem', exc)}"]) from None
    return parse_config(data, p, p.resolve().parent, overlay)




def fields(model: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, FieldInfo]]:
    """(key path, pydantic field) for every config key, the sections and each kind of a union
    (a rule, a detector, an output) walked through: reference() and the documentation's
    generated reference page (docs/hooks.py: type, default, constraint, title) both list these, so
    neither can drift from what the validator accepts."""
    import typing

    rows: list[tuple[str, FieldInfo]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        subs = _models_in(field.annotation)
        if subs:
            many = len(subs) > 1 or typing_list(field.annotation)
            for sub in subs:
                tag = sub.model_fields.get("type")
                label = f"{key}[]" if typing_list(field.annotation) else key
                if typing.get_origin(field.annotation) is dict:
                    label += ".<name>"  # zones: the user names each entry
                if many and tag is not None:
                    label += f" (type: {tag.default})"
                rows += [r for r in fields(sub, f"{label}.") if not r[0].endswith(".type")]
            continue
        rows.append((key, field))
    return rows


def shown_default(field: FieldInfo) -> str:
    """A field's default as the reference shows it: '' for none, 'required' where there is none."""
    if field.is_required():
        return "required"
    default = field.get_default(call_default_factory=True)
    return "" if default is None else repr(str(default) if isinstance(default, Path) else default)


def reference(model: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key path, default, title) for every config key (``python -m daemon.config`` prints the
    table; the documentation's configuration reference is generated from fields())."""
    return [(key, shown_default(field), field.title or "") for key, field in fields(model, prefix)]


def typing_list(ann: Any) -> bool:
    import typing

    return typing.get_origin(ann) is list


if __name__ == "__main__":
    print("| key | default | meaning |\n| --- | --- | --- |")
    for key, default, title in reference():
        print(f"| `{key}` | {default and f'`{default}`'} | {title} |")
