"""Emotion classification with the LiteRT interpreter, driven by the model's manifest.

Never TensorFlow: the interpreter comes from ``ai_edge_litert`` (or the older
``tflite_runtime``), a few MB instead of hundreds. The manifest beside the model is checked
against the model's tensors before the first frame, so a model and a manifest that disagree
stop the daemon with a message instead of producing confident nonsense.
"""

from __future__ import annotations

import ctypes
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from ..types import Box
from .config import ClassifierConfig
from .manifest import Manifest, ManifestError, check_against_tensors, load_manifest
from .preprocess import Preprocessor

log = logging.getLogger(__name__)

GPU_DELEGATE_LIBRARIES = (
    "libtensorflowlite_gpu_delegate.so",
    "libtensorflowlite_gpu_gl.so",
    "libtensorflowlite_gpu.so",
)
_MAX_BATCH_SHAPES = 8  # interpreters kept, one per batch size seen


class ModelError(RuntimeError):
    """The model cannot be used: missing file or manifest, mismatch, no interpreter, no delegate."""


def _litert():
    """The interpreter module: ai_edge_litert, else tflite_runtime (same API)."""
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        try:
            from tflite_runtime import interpreter
        except ImportError:
            raise ModelError(
                "no TFLite interpreter installed: pip install ai-edge-litert (or tflite-runtime)"
            ) from None
    return interpreter


def with_mirrors(faces: np.ndarray) -> np.ndarray:
    """Prepared faces (N, H, W, C) followed by their mirror images: one batch for flip averaging."""
    return np.concatenate([faces, faces[:, :, ::-1]])


def mean_of_mirrors(probs: np.ndarray) -> np.ndarray:
    """(2N, classes) probabilities of faces then their mirrors → (N, classes), their mean."""
    n = len(probs) // 2
    return (probs[:n] + probs[n:]) * 0.5


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    if values.dtype.kind in "iu":
        scale, zero_point = detail["quantization"]
        return (values.astype(np.float32) - zero_point) * np.float32(scale)
    return values.astype(np.float32, copy=False)


class TfliteModel:
    """One emotion model: ``classify(frame, boxes)`` gives one probability row per face.

    Batches of different sizes get their own interpreter (kept in a small LRU), so a frame with
    the same number of faces as the last one never pays for ``resize_tensor_input`` and
    ``allocate_tensors``, and one whose count flickers between 1 and 2 does not either. The
    model bytes are read once and shared by those interpreters. Not thread-safe: one pipeline
    thread owns it.
    """

    def __init__(
        self, model_path: str | Path, threads: int = 1, delegate: str = "cpu", fallback: bool = True,
        *, content: bytes | None = None, manifest: Manifest | None = None,
    ) -> None:
        """``content`` and ``manifest`` stand in for the files (the converter measures a model it
        has just converted with this same class); ``model_path`` then only names it in messages."""
        self.path = Path(model_path)
        self.threads = threads
        if content is None:
            if not self.path.is_file():
                raise ModelError(f"model file not found: {self.path}")
            content = self.path.read_bytes()
        if manifest is None:
            try:
                manifest = load_manifest(self.path)
            except ManifestError as exc:
                raise ModelError(str(exc)) from None
        self.manifest: Manifest = manifest
        self.labels: list[str] = list(self.manifest.labels)
        self._lite = _litert()
        self._content = content
        self.delegate_in_use = "cpu"
        self.fallback_reason: str | None = None
        self._delegate_library: str | None = None
        first = self._build_with_delegate(delegate, fallback)
        self._input = first.get_input_details()[0]
        self._output = first.get_output_details()[0]
        try:
            check_against_tensors(self.manifest, self._input, self._output, source=str(self.path))
        except ManifestError as exc:
            raise ModelError(str(exc)) from None
        self.preprocessor = Preprocessor(self.manifest, self._input["dtype"])
        # Flip averaging follows the manifest (the model's figures were measured with it).
        self.flip_average = self.manifest.flip_average
        self._by_batch: OrderedDict[int, object] = OrderedDict()
        self._fixed_batch = int(self._input["shape_signature"][0]) if "shape_signature" in self._input else -1
        self._by_batch[int(self._input["shape"][0])] = first

    # -- construction ---------------------------------------------------------------------

    def _interpreter(self, delegates: list | None = None):
        try:
            interp = self._lite.Interpreter(
                model_content=self._content, num_threads=self.threads, experimental_delegates=delegates
            )
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load model {self.path}: {exc}") from None
        return interp

    def _load_delegate(self, spec: str) -> tuple[object, str]:
        """(delegate, library) for "gpu" (the usual GPU libraries in turn) or a library path."""
        libraries = GPU_DELEGATE_LIBRARIES if spec == "gpu" else (spec,)
        errors = []
        for lib in libraries:
            try:
                ctypes.CDLL(lib)  # a clean OSError for a missing library, before LiteRT tries
                return self._lite.load_delegate(lib), lib
            except (ValueError, RuntimeError, OSError) as exc:
                msg = str(exc).splitlines()[0]
                errors.append(msg if lib in msg else f"{lib}: {msg}")
        raise ModelError(f"delegate {spec!r} could not be loaded ({'; '.join(errors)})")

    def _build_with_delegate(self, spec: str, fallback: bool):
        if spec == "cpu":
            return self._interpreter()
        try:
            delegate, library = self._load_delegate(spec)
            interp = self._interpreter([delegate])
        except ModelError as exc:
            if not fallback:
                raise ModelError(f"{exc}; set classifier.fallback: true to run on the CPU instead") from None
            self.fallback_reason = str(exc)
            log.warning("%s; falling back to the CPU", exc)
            return self._interpreter()
        self.delegate_in_use = spec
        self._delegate_library = library
        log.info("model %s runs on delegate %s", self.path.name, library)
        return interp

    def _for_batch(self, n: int):
        """The interpreter allocated for a batch of ``n`` (built on first use, LRU-bounded)."""
        interp = self._by_batch.get(n)
        if interp is not None:
            self._by_batch.move_to_end(n)
            return interp
        delegates = [self._lite.load_delegate(self._delegate_library)] if self._delegate_library else None
        interp = self._lite.Interpreter(model_content=self._content, num_threads=self.threads, experimental_delegates=delegates)
        idx = self._input["index"]
        interp.resize_tensor_input(idx, [n, *self._input["shape"][1:]], strict=False)
        interp.allocate_tensors()
        self._by_batch[n] = interp
        if len(self._by_batch) > _MAX_BATCH_SHAPES:
            self._by_batch.popitem(last=False)
        return interp

    # -- inference ------------------------------------------------------------------------

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Prepared inputs (N, H, W, C) in the model's dtype → (N, classes) float32 probabilities."""
        n = batch.shape[0]
        if n == 0:
            return np.empty((0, len(self.labels)), np.float32)
        if self._fixed_batch == 1 and n > 1:  # a model exported with batch 1: one face at a time
            return np.concatenate([self.predict(batch[i : i + 1]) for i in range(n)])
        interp = self._for_batch(n)
        interp.set_tensor(self._input["index"], batch)
        interp.invoke()
        return _dequantize(interp.get_tensor(self._output["index"]), self._output)

    def classify(self, frame: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """Every face of a frame in one batch → (N, classes) probabilities in ``self.labels`` order."""
        if not self.flip_average:
            return self.predict(self.preprocessor.prepare(frame, boxes))
        return mean_of_mirrors(self.predict(self.preprocessor.prepare(frame, boxes, mirror=True)))

    @classmethod
    def from_config(cls, cfg: ClassifierConfig) -> "TfliteModel":
        """The emotion classifier of a ``classifier:`` section: the one place it is built (the
        pipeline and ``emotiond check`` both call this)."""
        return cls(cfg.model, threads=cfg.threads, delegate=cfg.delegate, fallback=cfg.fallback)
