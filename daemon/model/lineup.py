"""The emotion models emotiond ships, and the ones it no longer ships with what replaces each.

A user chooses between few models (issue 33): the default ``emotion_wild.tflite`` (int8) with its
float sibling ``emotion_wild_fp16.tflite`` (``classifier.precision``, daemon/model/precision.py),
and one alternative, ``emotion_ferplus.tflite`` (int8 only), that agrees best with people on
FER-2013-like webcam faces at the same cost. Earlier models were taken out of models/, the wheel
and the .deb; a config that still names one is refused by the config check with the replacement
(daemon/config.py), instead of a bare "file not found". This table is that message's one source;
README.md's models table says why the lineup is what it is.
"""

from __future__ import annotations

from pathlib import Path

from .. import __version__

DEFAULT = "emotion_wild.tflite"
# What ships (setup.py's PACKAGED_MODELS, MANIFEST.in and tests/test_packaging.py list the same).
SHIPPED = ("emotion_wild.tflite", "emotion_wild_fp16.tflite", "emotion_ferplus.tflite")
# The release that stopped shipping them: the first one after the lineup was cut (this package).
REMOVED_IN = __version__

_DEFAULT_OR_FERPLUS = "emotion_wild.tflite (the default) or emotion_ferplus.tflite"
_DEFAULT_FLOAT = "emotion_wild_fp16.tflite (the default's float sibling)"
# removed file name -> what to name instead (the int8 files map to int8 files, float to float)
REMOVED: dict[str, str] = {
    "emotion.tflite": _DEFAULT_OR_FERPLUS,  # the three-network FER-2013 ensemble
    "emotion_fp16.tflite": _DEFAULT_FLOAT,
    # one MobileNetV2-96 on FER-2013's labels: emotion_ferplus is that network at the same cost
    "emotion_fast.tflite": "emotion_ferplus.tflite (the same network and cost) or emotion_wild.tflite (the default)",
    "emotion_fast_fp16.tflite": _DEFAULT_FLOAT,
    "emotion_student.tflite": _DEFAULT_OR_FERPLUS,  # the distilled student
    "emotion_student_fp16.tflite": _DEFAULT_FLOAT,
    # emotion_ferplus ships int8 only; precision auto runs it where no sibling is beside it
    "emotion_ferplus_fp16.tflite": "emotion_ferplus.tflite (int8) or " + _DEFAULT_FLOAT,
}


def removed_message(path: Path) -> str | None:
    """Why a model path that names a removed file is refused, with its replacement; None for any
    other name (a user's own file of a removed name is used when it exists: the caller asks only
    about files that are missing)."""
    replacement = REMOVED.get(path.name)
    if replacement is None:
        return None
    return f"models/{path.name} was removed in emotiond {REMOVED_IN}: use {replacement}"
