"""``emotiond``: run the daemon, check a config, analyze files, list the installed models, or
print the version."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .exitcodes import EX_CONFIG, EX_NOINPUT


def _load(path: str):
    from .config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"emotiond: {exc}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    from .runtime.app import Daemon
    from .runtime.logs import setup_logging

    setup_logging(cfg.logging.level, cfg.logging.json_format)
    return Daemon(cfg, args.config).run()


def cmd_check(args: argparse.Namespace) -> int:
    """Each part that ``run`` needs, tried for real, with ok/failed per line."""
    results: list[tuple[str, bool, str]] = []
    from .config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
        results.append(("config", True, args.config))
    except ConfigError as exc:
        print(f"config   failed  {exc}")
        return EX_CONFIG

    from .model.tflite import ModelError, TfliteModel
    from .vision.signals import SIGNALS

    c = cfg.classifier
    try:
        m = TfliteModel.from_config(c)
        why = f"; {m.precision_reason}" if m.precision_reason else ""
        results.append(("model", True, f"{m.path} ({m.manifest.quantization.type}, delegate {m.delegate_in_use}{why})"))
    except ModelError as exc:
        results.append(("model", False, str(exc)))
    for signal in SIGNALS:
        section = getattr(cfg, signal.config_key)
        if section.enabled:
            try:
                signal(section, threads=c.threads)
                results.append((signal.config_key, True, signal.title or signal.name))
            except (ModelError, OSError, ValueError) as exc:
                results.append((signal.config_key, False, str(exc)))

    from .capture.source import FrameSource

    src = FrameSource(cfg.source)
    src.start()
    frame = src.get(timeout=args.timeout)
    src.stop()
    if frame is not None:
        h, w = frame.image.shape[:2]
        results.append(("source", True, f"{cfg.source.uri} ({w}x{h})"))
    else:
        results.append(("source", False, f"{cfg.source.uri}: no frame within {args.timeout:g} s"))

    if any(o.type == "mqtt" for o in cfg.outputs):
        from .publish.mqtt import probe_broker

        ok, msg = probe_broker(cfg.mqtt, cfg.device, timeout=args.timeout)
        results.append(("broker", ok, msg))

    if cfg.updates.enabled:
        results.append(("updates", *_check_updates(cfg.updates)))

    for name, ok, msg in results:
        print(f"{name:<8} {'ok' if ok else 'failed':<7} {msg}")
    return 0 if all(ok for _, ok, _ in results) else 1


def _check_updates(cfg) -> tuple[bool, str]:
    """The update repository verified from the shipped root (in a scratch folder: the device's
    own trusted metadata is left alone), and the release the rollout names for this group."""
    import tempfile
    from pathlib import Path

    from .update.client import Client, MissingDependency, UpdateRefused

    with tempfile.TemporaryDirectory(prefix="emotiond-check-") as tmp:
        try:
            wanted = Client(cfg.url, cfg.root, Path(tmp), cfg.timeout_s).wanted(cfg.group, Path(tmp) / "scratch")
        except MissingDependency as exc:
            return False, str(exc)
        except UpdateRefused as exc:
            return False, f"{cfg.url}: refused ({exc.reason}): {exc}"
    release = f"release {wanted.version}" if wanted else "no release yet"
    return True, f"{cfg.url} verified; group {cfg.group}: {release}"


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analyze import main as analyze_main

    return analyze_main(args.input, args.config, args.out, args.results)


def cmd_models(args: argparse.Namespace) -> int:
    """The models that came with this installation (or those in ``--dir``)."""
    from pathlib import Path

    from .model.catalog import installed, table
    from .model.paths import installed_models_dir

    folder = Path(args.dir) if args.dir else installed_models_dir()
    if folder is None or not folder.is_dir():
        print(f"emotiond models: no models folder {'at ' + str(folder) if folder else 'installed with this package'}", file=sys.stderr)
        return EX_NOINPUT
    print(f"models in {folder}")
    print(table(installed(folder)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; the documentation's CLI reference is generated from it."""
    ap = argparse.ArgumentParser(prog="emotiond", description="Facial emotion and driver-fatigue daemon (camera → TFLite → MQTT).")
    ap.add_argument("--version", action="version", version=f"emotiond {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--config", "-c", default="config.yaml", help="the config file (default: %(default)s)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", help="validate the config, load the model, open the source, reach the broker")
    p.add_argument("--config", "-c", default="config.yaml", help="the config file (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a frame and for the broker")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("analyze", help="run the pipeline over an image, image folder or video and write it annotated")
    p.add_argument("input", help="an image, a folder of images, or a video file")
    p.add_argument("--config", "-c", default=None, help="default: ./config.yaml if present, else built-in defaults")
    p.add_argument("--out", "-o", help="annotated output (a folder for a folder); default ./<name>.annotated.<ext>, "
                   "none with --results")
    p.add_argument("--results", "-r", help="one row per face (file, frame, time, track, box, label, probabilities, "
                   "signals) to FILE.csv or FILE.json; see docs/integrate/analyze.md")
    # The name before --results covered video only; kept so that scripts using it still work.
    p.add_argument("--timeline", dest="results", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_analyze)
    p = sub.add_parser("models", help="list the installed models: file, size, task, labels, measured accuracy")
    p.add_argument("--dir", help="list this folder instead of the installed models")
    p.set_defaults(func=cmd_models)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
