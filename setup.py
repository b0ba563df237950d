"""Build hook: the wheel carries the default models as package data in ``daemon/models/``.

The models stay at the repository root (``models/``: the config, tests, bench and converter
name them there); ``build_py`` copies the ones a fresh install needs into the built package,
where ``daemon.model.paths`` finds them. Everything else about the package is in
pyproject.toml. The sdist carries the same files (MANIFEST.in), so a wheel built from it has
them too.
"""

from __future__ import annotations

import glob
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

# The defaults config.yaml names (emotion, eye state, FaceMesh, Iris), their manifests, any shipped
# detector (ONNX), and the cards and licences that must travel with them. The emotion lineup is
# daemon/model/lineup.py's SHIPPED (issue 33: the default, its float sibling, one alternative);
# training logs and confusion matrices stay in the repository.
PACKAGED_MODELS = (
    # the default: one MobileNetV2-96, int8, and its float sibling (classifier.precision auto/float)
    "emotion_wild.tflite", "emotion_wild.json", "emotion_wild_fp16.tflite", "emotion_wild_fp16.json",
    # the alternative, int8 only: the same network's cost, closest to people on webcam faces (FER+)
    "emotion_ferplus.tflite", "emotion_ferplus.json",
    "eye_state.tflite", "eye_state.json",
    "face_landmark.tflite", "iris_landmark.tflite",
    "*.onnx",
    "*CARD*.md", "LICENSE*",
)


def packaged_model_files(root: str = "models") -> list[str]:
    found: set[str] = set()
    for pattern in PACKAGED_MODELS:
        found.update(p for p in glob.glob(os.path.join(root, pattern)) if os.path.isfile(p))
    return sorted(found)


class build_py_with_models(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads <repository>/models directly
            return
        files = packaged_model_files()
        if not any(f.endswith(".tflite") for f in files):
            raise SystemExit("setup.py: no models/*.tflite to package; run from a complete checkout")
        target = os.path.join(self.build_lib, "daemon", "models")
        os.makedirs(target, exist_ok=True)
        for path in files:
            shutil.copy2(path, os.path.join(target, os.path.basename(path)))


setup(cmdclass={"build_py": build_py_with_models})
