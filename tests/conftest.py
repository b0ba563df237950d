"""Shared test helpers: the real data in ../shared/data and small real models built from it.

Data is never copied into the repository; a test that needs a file skips with the reason when
it is absent (CI always has it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SHIPPED_MODEL = REPO / "models" / "emotion_wild.tflite"  # the default (issue 33)
FER_LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]  # folder (alphabetical) order
TALKING_HEAD = "videos/talking_head_640x360.mp4"
STREET = "videos/street_multiface_1920x1080.mp4"
YUNET = "detectors/face_detection_yunet_2023mar.onnx"
_TINY_VERSION = 1  # bump when the tiny model recipe changes (it is cached in .pytest_cache)


def shared_file(relpath: str) -> Path:
    """A path under ../shared/data, or skip the test saying which file is missing."""
    path = SHARED / relpath
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (tests read ../shared/data beside the repo)")
    return path


def read_frames(relpath: str, limit: int | None = None, step: int = 1) -> list[np.ndarray]:
    """Decoded BGR frames of a shared clip (every ``step``-th, at most ``limit``)."""
    import cv2

    cap = cv2.VideoCapture(str(shared_file(relpath)))
    frames: list[np.ndarray] = []
    i = 0
    while (limit is None or len(frames) < limit) and cap.grab():
        if i % step == 0:
            ok, frame = cap.retrieve()
            if ok:
                frames.append(frame)
        i += 1
    cap.release()
    return frames


def fer_faces(n: int, split: str = "train") -> list[np.ndarray]:
    """``n`` real FER-2013 faces (grey 48x48), taken round-robin over the classes."""
    import cv2

    root = shared_file(f"fer2013/{split}")
    per_class = [sorted((root / label).glob("*.jpg"))[: n // len(FER_LABELS) + 1] for label in FER_LABELS]
    paths = [p for group in zip(*per_class) for p in group][:n]
    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]


def _build_tiny_model(out: Path, quantize: bool) -> Path:
    """A tiny untrained CNN (48x48x1 → 7 softmax), converted with TFLiteConverter.

    Its predictions are meaningless, but its tensors, quantisation and manifest are real, which
    is what the classifier's contract is about. int8 calibration uses real faces, fed through
    the daemon's own float preprocessing (the path the converter uses too).
    """
    tf = pytest.importorskip("tensorflow")
    import keras

    from daemon.model.manifest import Crop, InputSpec, Manifest, Normalize, Quantization, save_manifest
    from daemon.model.preprocess import Preprocessor

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((48, 48, 1)),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(7, activation="softmax"),
        ]
    )
    spec = InputSpec(height=48, width=48, channels=1, color="gray", normalize=Normalize(scale=1 / 127.5, offset=-1.0))
    manifest = Manifest(labels=FER_LABELS, input=spec, crop=Crop(margin=0.1), quantization=Quantization(type="float32"))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        prep = Preprocessor(manifest, np.float32)
        faces = [prep.prepare_face(f)[None] for f in fer_faces(64)]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([f] for f in faces)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    path = out / ("tiny_int8.tflite" if quantize else "tiny_float32.tflite")
    path.write_bytes(converter.convert())
    if quantize:
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path))
        (in_scale, in_zp), (out_scale, out_zp) = (
            interp.get_input_details()[0]["quantization"],
            interp.get_output_details()[0]["quantization"],
        )
        manifest.quantization = Quantization(
            type="int8", input_scale=in_scale, input_zero_point=in_zp, output_scale=out_scale, output_zero_point=out_zp
        )
    save_manifest(manifest, path)
    return path


def _cached_model(request: pytest.FixtureRequest, quantize: bool) -> Path:
    """Build once per checkout (importing TensorFlow and converting takes seconds); once per
    session when pytest runs without its cache (-p no:cacheprovider)."""
    name = f"tiny_emotion_model_v{_TINY_VERSION}"
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        folder = Path(cache.mkdir(name))
    else:
        folder = request.getfixturevalue("tmp_path_factory").getbasetemp() / name
        folder.mkdir(exist_ok=True)
    path = folder / ("tiny_int8.tflite" if quantize else "tiny_float32.tflite")
    if not (path.is_file() and path.with_suffix(".json").is_file()):
        path = _build_tiny_model(folder, quantize)
    return path


@pytest.fixture(scope="session")
def tiny_emotion_model(request: pytest.FixtureRequest) -> Path:
    """Full-integer int8 tiny model + manifest; path of the .tflite."""
    return _cached_model(request, quantize=True)


@pytest.fixture(scope="session")
def tiny_float_model(request: pytest.FixtureRequest) -> Path:
    """float32 tiny model + manifest; path of the .tflite."""
    return _cached_model(request, quantize=False)


@pytest.fixture(scope="session")
def emotion_model(request: pytest.FixtureRequest) -> Path:
    """The shipped default when it is there (models/emotion_wild.tflite), else the tiny int8 one."""
    if SHIPPED_MODEL.is_file() and SHIPPED_MODEL.with_suffix(".json").is_file():
        return SHIPPED_MODEL
    return _cached_model(request, quantize=True)


def copy_model(model: Path, folder: Path) -> Path:
    """Model + manifest copied into ``folder`` (for tests that edit the manifest)."""
    dst = folder / model.name
    shutil.copy(model, dst)
    shutil.copy(model.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A real Mosquitto on a free loopback port, shared by the tests of one module."""
    from broker import MOSQUITTO, make_broker

    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    b = make_broker(tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


def wait_until(cond, timeout: float = 15.0, step: float = 0.01) -> bool:
    """Poll ``cond()`` until it is true (True) or ``timeout`` seconds pass (False)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


@pytest.fixture
def config(tmp_path: Path, emotion_model: Path) -> Path:
    """A small config file for analyze and results tests: the emotion model under test and the
    shipped eye model (eyes off when it is absent)."""
    eye_model = REPO / "models" / "eye_state.tflite"
    path = tmp_path / "config.yaml"
    eyes = f"{{model: '{eye_model}'}}" if eye_model.is_file() else "{enabled: false}"
    path.write_text(f"classifier: {{model: '{emotion_model}'}}\neyes: {eyes}\n")
    return path
