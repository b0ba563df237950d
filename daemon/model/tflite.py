"""Emotion classification with the LiteRT interpreter, driven by the model's manifest.

Never TensorFlow: the interpreter comes from ``ai_edge_litert`` (or the older
``tflite_runtime``), a few MB instead of hundreds. The manifest beside the model is checked
against the model's tensors before the first frame, so a model and a manifest that disagree
stop the daemon with a message instead of producing confident nonsense.

Where it runs (``classifier.delegate``): ``cpu`` (XNNPACK); ``gpu``, LiteRT's own GPU
accelerator through the ``CompiledModel`` API (WebGPU, over Vulkan on Linux; ops the GPU cannot
run stay on the CPU); or the path of a vendor delegate library (EdgeTPU, Hexagon, ...) loaded
into the interpreter. ``delegate_in_use`` says what actually runs, ``fallback_reason`` why it is
not what was asked for. A GPU that fails after start hands the work to the CPU once, logged and
counted (``delegate_fallbacks``), and is not retried: no crash loop.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from ..types import Box
from .config import ClassifierConfig
from .manifest import Manifest, ManifestError, check_against_tensors, load_manifest
from .preprocess import Preprocessor

log = logging.getLogger(__name__)

_MAX_BATCH_SHAPES = 8  # interpreters kept, one per batch size seen
_EXACT_ROWS = 8  # batches up to four faces and their mirrors run at their own size; larger ones are padded


def batch_rows(n: int) -> int:
    """The batch size an ``n``-row batch runs at: itself up to ``_EXACT_ROWS``, else the next
    power of two. Every interpreter packs its own copy of the weights (XNNPACK): 11 MB for the
    int8 ensemble, 33 MB for its float sibling. The round-robin schedule classifies a few faces
    a frame, so those sizes stay exact (no padded work in the steady state); only bursts (every
    new face of a crowded first frame) share the buckets 16, 32, 64, 128."""
    return n if n <= _EXACT_ROWS else 1 << (n - 1).bit_length()


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


def _gpu_backend() -> str:
    """What LiteRT's GPU accelerator runs on here, for logs and stats."""
    if sys.platform.startswith("linux"):
        icd = os.environ.get("VK_ICD_FILENAMES") or os.environ.get("VK_DRIVER_FILES")
        return f"vulkan, {Path(icd.split(os.pathsep)[0]).name}" if icd else "vulkan"
    return "webgpu"


def _gpu_unavailable_hint() -> str | None:
    """Why no GPU can work on this machine, when it is plain (before LiteRT's terse error)."""
    if not sys.platform.startswith("linux"):
        return None
    icd = os.environ.get("VK_ICD_FILENAMES") or os.environ.get("VK_DRIVER_FILES")
    if icd:
        missing = [f for f in icd.split(os.pathsep) if f and not Path(f).is_file()]
        if missing:
            return f"VK_ICD_FILENAMES names a missing Vulkan driver manifest: {', '.join(missing)}"
    try:
        ctypes.CDLL("libvulkan.so.1")
    except OSError:
        return "no Vulkan loader (libvulkan.so.1): install libvulkan1 and the GPU's Vulkan driver"
    return None


class GpuRunner:
    """The model on LiteRT's GPU accelerator (``CompiledModel``, GPU with CPU fallback for ops
    the GPU cannot run). Batches are padded to a capacity that only grows (powers of two), so
    the accelerator is not re-initialised each time the number of faces changes."""

    def __init__(self, content: bytes, threads: int, n_classes: int, out_dtype) -> None:
        hint = _gpu_unavailable_hint()
        if hint:
            raise ModelError(f"no usable GPU: {hint}")
        try:
            from ai_edge_litert.compiled_model import CompiledModel, CpuOptions, HardwareAccelerator, Options
        except ImportError as exc:
            raise ModelError(f"no LiteRT CompiledModel API ({exc}): pip install 'ai-edge-litert>=2.1'") from None
        opts = Options(hardware_accelerators=HardwareAccelerator.GPU | HardwareAccelerator.CPU,
                       cpu_options=CpuOptions(num_threads=threads))
        try:
            self.model = CompiledModel.from_buffer(content, options=opts)
        except (RuntimeError, ValueError) as exc:
            first = " ".join(str(exc).split())[:200]
            raise ModelError(
                f"LiteRT's GPU accelerator found no usable GPU ({first}); check the Vulkan driver "
                "(vulkaninfo) and that XDG_RUNTIME_DIR is set"
            ) from None
        self.fully_accelerated = bool(self.model.is_fully_accelerated())
        self.n_classes = n_classes
        self.out_dtype = out_dtype
        self.capacity = 0
        self._in = self._out = None

    def describe(self) -> str:
        how = "fully accelerated" if self.fully_accelerated else "some ops on the CPU"
        return f"gpu ({_gpu_backend()}, {how})"

    def run(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        if n > self.capacity:
            self.capacity = 1 << (n - 1).bit_length()
            self.model.resize_input_tensor(0, [self.capacity, *batch.shape[1:]])
            self._in, self._out = self.model.create_input_buffers(0), self.model.create_output_buffers(0)
        if n < self.capacity:
            batch = np.concatenate([batch, np.zeros((self.capacity - n, *batch.shape[1:]), batch.dtype)])
        self._in[0].write(np.ascontiguousarray(batch))
        self.model.run_by_index(0, self._in, self._out)
        out = self._out[0].read(self.capacity * self.n_classes, self.out_dtype)
        return np.asarray(out).reshape(self.capacity, self.n_classes)[:n]


class TfliteModel:
    """One emotion model: ``classify(frame, boxes)`` gives one probability row per face.

    Batches of different sizes get their own interpreter (kept in a small LRU), so a frame with
    the same number of faces as the last one never pays for ``resize_tensor_input`` and
    ``allocate_tensors``, and one whose count flickers between 1 and 2 does not either; beyond
    four faces the sizes are bucketed (:func:`batch_rows`), which bounds the memory. The
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
        self.delegate_fallbacks = 0  # times a delegate failed after start and the CPU took over
        self._delegate_library: str | None = None
        self._gpu: GpuRunner | None = None
        self.precision_reason: str | None = None  # why from_config chose this file over the configured one
        # The first interpreter is allocated at the batch one face runs at (a face and its mirror
        # when the manifest asks for flip averaging): every interpreter packs its own copy of the
        # weights (XNNPACK), so one built at batch 1 and never run would cost that copy for nothing.
        self._first_rows = 2 if manifest.flip_average else 1
        first = self._build_with_delegate(delegate, fallback)
        self._input = first.get_input_details()[0]
        self._output = first.get_output_details()[0]
        if delegate == "gpu":
            self._start_gpu(fallback)
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
            inp = interp.get_input_details()[0]
            if self._first_rows != inp["shape"][0] and inp.get("shape_signature", inp["shape"])[0] == -1:
                interp.resize_tensor_input(inp["index"], [self._first_rows, *inp["shape"][1:]], strict=False)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load model {self.path}: {exc}") from None
        return interp

    def _load_delegate(self, library: str) -> object:
        """A vendor delegate library (EdgeTPU, Hexagon, ...) for the interpreter."""
        try:
            ctypes.CDLL(library)  # a clean OSError for a missing library, before LiteRT tries
            return self._lite.load_delegate(library)
        except (ValueError, RuntimeError, OSError) as exc:
            msg = str(exc).splitlines()[0]
            raise ModelError(f"delegate {library!r} could not be loaded ({msg if library in msg else f'{library}: {msg}'})") from None

    def _build_with_delegate(self, spec: str, fallback: bool):
        """The interpreter: plain for "cpu" and "gpu" (the GPU runs beside it, see ``_start_gpu``;
        the interpreter gives the tensor details and is the CPU fallback), else with the library."""
        if spec in ("cpu", "gpu"):
            return self._interpreter()
        try:
            interp = self._interpreter([self._load_delegate(spec)])
        except ModelError as exc:
            if not fallback:
                raise ModelError(f"{exc}; set classifier.fallback: true to run on the CPU instead") from None
            self.fallback_reason = str(exc)
            log.warning("%s; falling back to the CPU", exc)
            return self._interpreter()
        self.delegate_in_use = spec
        self._delegate_library = spec
        log.info("model %s runs on delegate %s", self.path.name, spec)
        return interp

    def _start_gpu(self, fallback: bool) -> None:
        try:
            self._gpu = GpuRunner(self._content, self.threads, int(self._output["shape"][-1]), self._output["dtype"])
        except ModelError as exc:
            if not fallback:
                raise ModelError(f"classifier.delegate gpu: {exc}; set classifier.fallback: true to run on the CPU instead") from None
            self.fallback_reason = str(exc)
            log.warning("classifier.delegate gpu: %s; falling back to the CPU", exc)
            return
        self.delegate_in_use = self._gpu.describe()
        log.info("model %s runs on %s", self.path.name, self.delegate_in_use)

    def _gpu_failed(self, exc: Exception) -> None:
        """The GPU broke after start: the CPU takes over for good (logged, counted, not retried)."""
        self._gpu = None
        self.delegate_fallbacks += 1
        self.delegate_in_use = "cpu"
        self.fallback_reason = f"gpu failed while running: {' '.join(str(exc).split())[:200]}"
        log.warning("model %s: %s; running on the CPU from now on", self.path.name, self.fallback_reason)

    def info(self) -> dict:
        """What runs, for logs, stats and metrics."""
        out = {"model": self.path.name, "quantization": self.manifest.quantization.type,
               "delegate": self.delegate_in_use, "delegate_fallbacks": self.delegate_fallbacks}
        if self.fallback_reason:
            out["fallback_reason"] = self.fallback_reason
        if self.precision_reason:
            out["precision_reason"] = self.precision_reason
        return out

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
        if self._gpu is not None:
            try:
                return _dequantize(self._gpu.run(batch), self._output)
            except (RuntimeError, ValueError, OSError) as exc:
                self._gpu_failed(exc)
        rows = batch_rows(n)
        if rows != n:  # zero rows are valid input; their outputs are dropped
            padded = np.zeros((rows, *batch.shape[1:]), batch.dtype)
            padded[:n] = batch
            batch = padded
        interp = self._for_batch(rows)
        interp.set_tensor(self._input["index"], batch)
        interp.invoke()
        return _dequantize(interp.get_tensor(self._output["index"])[:n], self._output)

    def classify(self, frame: np.ndarray, boxes: Sequence[Box], rolls: Sequence[float | None] | None = None,
                 points: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
        """Every face of a frame in one batch → (N, classes) probabilities in ``self.labels`` order;
        ``points`` (five landmarks per box, or None) cut the faces of a model aligned by them,
        ``rolls`` (degrees, one per box, or None) turn the others upright (``Preprocessor.prepare``)."""
        batch = self.preprocessor.prepare(frame, boxes, mirror=self.flip_average, rolls=rolls, points=points)
        return mean_of_mirrors(self.predict(batch)) if self.flip_average else self.predict(batch)

    @classmethod
    def from_config(cls, cfg: ClassifierConfig) -> "TfliteModel":
        """The emotion classifier of a ``classifier:`` section: the one place it is built (the
        pipeline and ``emotiond check`` both call this)."""
        from .precision import NoFloatSibling, choose_model

        model = Path(cfg.model)
        try:
            quantization = load_manifest(model).quantization.type
        except ManifestError as exc:
            raise ModelError(str(exc)) from None
        try:
            choice = choose_model(model, cfg.precision, cfg.delegate, quantization)
        except NoFloatSibling as exc:
            raise ModelError(str(exc)) from None
        if choice.reason:  # the daemon logs it at start-up (with the model line); analyze stays quiet
            log.debug("classifier.precision %s: %s", cfg.precision, choice.reason)
        built = cls(choice.path, threads=cfg.threads, delegate=cfg.delegate, fallback=cfg.fallback)
        built.precision_reason = choice.reason
        return built
