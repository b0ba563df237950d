"""Where model files are found: next to the config, else the models installed with the package.

A config names models by relative paths like ``models/emotion_wild.tflite`` (the built-in defaults
do too). Such a path is first taken relative to the config file's folder, as every path is;
when nothing is there, the same file name is looked up in the models that came with the
package, so ``emotiond analyze face.jpg`` works from any folder after ``pip install`` and an
``/etc/emotiond/config.yaml`` that says ``models/emotion_wild.tflite`` finds the packaged one:

1. ``<site-packages>/daemon/models/``: the wheel (and the .deb's venv) carry the default
   models there (``setup.py`` copies them from the repository's ``models/`` at build time);
2. ``<repository>/models/``: a git checkout or an editable install, where the package is
   ``<repository>/daemon``.

Absolute paths, and relative ones that exist, are never redirected: a user's own model wins.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # .../daemon
MODELS_PREFIX = "models"
# Only model files are redirected: a config's other relative paths (a JSON lines output that
# does not exist yet, an outbox folder) must never land on a packaged file of the same name.
MODEL_SUFFIXES = (".tflite", ".onnx")


def installed_models_dir() -> Path | None:
    """The folder of the models that came with this installation (see the module docstring),
    or None when there is none."""
    packaged = _PACKAGE / "models"
    if packaged.is_dir():
        return packaged
    checkout = _PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / MODELS_PREFIX).is_dir():
        return checkout / MODELS_PREFIX
    return None


def packaged_model(relative: Path) -> Path | None:
    """The installed model that a relative config path such as ``models/emotion_wild.tflite`` (or a
    bare ``emotion_wild.tflite``) stands for, when it exists."""
    parts = relative.parts
    if relative.is_absolute() or not parts or relative.suffix not in MODEL_SUFFIXES:
        return None
    if parts[0] == MODELS_PREFIX:
        parts = parts[1:]
    if len(parts) != 1:  # only the flat models folder is shipped
        return None
    folder = installed_models_dir()
    if folder is None:
        return None
    candidate = folder / parts[0]
    return candidate if candidate.is_file() else None


def resolve(value: Path, base: Path) -> Path:
    """A config path made absolute: ``base / value``, or the packaged model when that is absent.

    Used for every path in a config: only a model path (.tflite, .onnx) that does not exist
    beside the config and whose name is one of the installed models is redirected, so other
    files (TLS keys, outputs, a cascade) keep their one meaning."""
    if value.is_absolute():
        return value
    local = Path(os.path.normpath(base / value))
    if local.exists():
        return local
    return packaged_model(value) or local
