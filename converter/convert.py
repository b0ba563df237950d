"""Convert a trained Keras model to TFLite variants, measure each, and write its manifest.

Variants (file suffix after the ``--out`` stem):

* ``int8`` (no suffix, the shipped default): full-integer, int8 input and output, calibrated on
  real training faces prepared by the daemon's own preprocessing.
* ``float16`` (``_fp16``): half-size weights, the GPU-delegate option; the TFLite analyzer's
  GPU-compatibility verdict is recorded.
* ``float32`` (``_fp32``): the reference conversion.
* ``dynamic`` (``_dynamic``): int8 weights, float activations.

``TFLiteConverter.from_keras_model`` works with Keras 3 on TF 2.21 (it exports a SavedModel
internally) and keeps the batch dimension dynamic, so the daemon can resize the input to N
faces; a ``tf.function`` concrete function does not freeze the Keras 3 variables and fails
calibration (READ_VARIABLE), so it is not used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from daemon.model.tflite import TfliteModel, with_mirrors
from daemon.model.manifest import Manifest, Metrics, Quantization, manifest_path, save_manifest
from daemon.model.preprocess import Preprocessor

from .datasets import Split, load_split, print_counts
from .provenance import training_provenance
from .evaluate import (
    ClassMetrics,
    agreement,
    ferplus_view,
    evaluate_keras,
    evaluate_tflite,
    float_manifest,
    limit_split,
    load_labelled_split,
    plot_confusion,
    save_confusion_json,
)

VARIANTS = ("int8", "float16", "float32", "dynamic")
SUFFIX = {"int8": "", "float16": "_fp16", "float32": "_fp32", "dynamic": "_dynamic"}

Representative = Callable[[], Iterator[list[np.ndarray]]]


def to_tflite(model, variant: str, representative: Representative | None = None, qat: bool = False) -> bytes:
    """One TFLite flatbuffer of ``model``; ``int8`` needs a representative dataset, unless the
    model is a quantisation-aware (fake-quant) graph that carries its own ranges (``qat``)."""
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if variant == "int8" and representative is None and not qat:
        raise ValueError("int8 conversion needs a representative dataset of real faces")
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant != "float32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        conv.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        if not qat:  # a QAT graph carries its ranges; the builtins-int8 guard would ask for a set anyway
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):  # Keras export prints its SavedModel signature
        return conv.convert()


def representative_faces(split: Split, manifest: Manifest, n: int, seed: int = 1337) -> Representative:
    """A seeded random sample of ``n`` real faces, each prepared by the daemon's float path."""
    faces = limit_split(split, n, seed)
    prep = Preprocessor(manifest, np.float32)

    if prep.aligns:
        from .align import with_points

        faces = with_points(faces)

    def gen() -> Iterator[list[np.ndarray]]:
        for i, (img, _) in enumerate(faces.iter_images()):
            yield [prep.prepare_face(prep.aligned(img, faces.points[i]) if prep.aligns else img)[None]]

    return gen


@dataclass
class GpuVerdict:
    compatible: bool
    incompatible_ops: list[str] = field(default_factory=list)


_OP_LINE = re.compile(r"^\s*Op#\d+\s+(\S+?)\(")
_WARNING = "GPU COMPATIBILITY WARNING: "


def parse_gpu_verdict(report: str) -> GpuVerdict:
    """Read the analyzer's text: a warning line follows each op the GPU delegate cannot run."""
    bad: list[str] = []
    op = "?"
    for line in report.splitlines():
        m = _OP_LINE.match(line)
        if m:
            op = m.group(1)
        elif line.startswith(_WARNING) and not line[len(_WARNING):].startswith("Subgraph#"):
            bad.append(f"{op}: {line[len(_WARNING):].strip()}")
    compatible = not bad and "looks compatible with GPU delegate" in report
    return GpuVerdict(compatible, bad)


def gpu_compatibility(content: bytes) -> GpuVerdict:
    """``tf.lite.experimental.Analyzer`` with ``gpu_compatibility=True``; it only prints."""
    import tensorflow as tf

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tf.lite.experimental.Analyzer.analyze(model_content=content, gpu_compatibility=True)
    return parse_gpu_verdict(buf.getvalue())


def quantization_of(content: bytes, variant: str) -> Quantization:
    """The quantisation as the converted model states it (input scale and zero point)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    if variant != "int8":
        return Quantization(type=variant)
    (in_scale, in_zp), (out_scale, out_zp) = inp["quantization"], out["quantization"]
    return Quantization(
        type=variant, input_scale=float(in_scale), input_zero_point=int(in_zp),
        output_scale=float(out_scale), output_zero_point=int(out_zp),
    )


def latency_ms(model: TfliteModel, face: np.ndarray, runs: int = 200) -> float:
    """Median time of one single-face invoke (one thread), after a warm-up; with flip averaging
    the face and its mirror image go through one invoke, as in the daemon."""
    x = model.preprocessor.prepare_face(face)[None]
    if model.manifest.flip_average:
        x = with_mirrors(x)
    model.predict(x)
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        model.predict(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def variant_path(stem: str | Path, variant: str) -> Path:
    stem = Path(stem)
    return stem.with_name(stem.name + SUFFIX[variant] + ".tflite")


@dataclass
class VariantResult:
    variant: str
    path: Path | None = None
    size_bytes: int = 0
    metrics: ClassMetrics | None = None
    float_agreement: float | None = None
    latency_ms: float | None = None
    latency_runs: int = 0
    gpu: GpuVerdict | None = None
    error: str | None = None
    predictions: np.ndarray | None = None  # on the split, as the daemon runs the model
    ferplus: ClassMetrics | None = None  # against the FER+ majority (convert --ferplus)
    ckplus: ClassMetrics | None = None  # on CK+48 (convert --ckplus)


def variant_manifest(
    base: Manifest, quant: Quantization, result: VariantResult, split_name: str, content: bytes,
    extra: dict,
) -> Manifest:
    m = result.metrics
    metrics = Metrics(
        split=split_name, accuracy=m.accuracy, macro_recall=m.macro_recall,
        per_class_recall=m.per_class(m.recall), float_agreement=result.float_agreement,
        per_class_precision=m.per_class(m.precision), macro_f1=m.macro_f1, n=int(m.confusion.sum()),
    )
    fields = base.model_dump(exclude={"quantization", "metrics"})
    gpu = None if result.gpu is None else {
        "compatible": result.gpu.compatible, "incompatible_ops": result.gpu.incompatible_ops,
        "checked_by": "tf.lite.experimental.Analyzer",
    }
    return Manifest(
        **fields, quantization=quant, metrics=metrics, size_bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        latency_ms=round(result.latency_ms, 4),
        latency_method=f"median of {result.latency_runs} single-face invokes, ai_edge_litert, 1 thread",
        gpu_compatibility=gpu, **extra,
    )


def convert_variant(
    model, variant: str, base: Manifest, split: Split, float_pred: np.ndarray, out_stem: Path,
    representative: Representative | None, extra: dict, batch: int = 256, latency_runs: int = 200, qat: bool = False,
    ferplus=None, ckplus: Split | None = None,
) -> VariantResult:
    """Convert, write, measure and describe one variant (its files: .tflite, .json, confusion)."""
    result = VariantResult(variant)
    content = to_tflite(model, variant, representative if variant == "int8" else None, qat)
    quant = quantization_of(content, variant)
    manifest = base.model_copy(update={"quantization": quant})
    tfl = TfliteModel(f"<{variant} conversion>", threads=1, content=content, manifest=manifest)
    ev = evaluate_tflite(tfl, split, batch)
    result.metrics, result.predictions = ev.metrics, ev.predictions
    result.float_agreement = agreement(ev.predictions, float_pred)
    result.latency_ms, result.latency_runs = latency_ms(tfl, split.image(0), latency_runs), latency_runs
    if variant == "float16":
        result.gpu = gpu_compatibility(content)
    path = variant_path(out_stem, variant)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    stem = path.with_suffix("")
    if ferplus is not None:  # the second view: against the ten annotators' majority
        result.ferplus = ferplus_view(ev.probs, ferplus, split.labels)
        m = result.ferplus
        extra = {**extra, "metrics_ferplus": {
            "split": split.name, "reference": "FER+ majority (ties and unknown/contempt/NF majorities left out)",
            "n": int(m.confusion.sum()), "left_out": {**ferplus.no_majority, **ferplus.dropped},
            "accuracy": m.accuracy, "macro_recall": m.macro_recall, "per_class_recall": m.per_class(m.recall),
            "per_class_precision": m.per_class(m.precision)}}
        save_confusion_json(m, f"{stem}.ferplus.confusion.json", model=path.name, split=split.name, reference="FER+ majority")
    if ckplus is not None:  # a second distribution: posed lab faces (validation only)
        m = evaluate_tflite(tfl, ckplus, batch).metrics
        result.ckplus = m
        extra = {**extra, "metrics_ckplus": {
            "split": "CK+48 (contempt left out)", "n": int(m.confusion.sum()), "accuracy": m.accuracy,
            "macro_recall": m.macro_recall, "per_class_recall": m.per_class(m.recall),
            "per_class_precision": m.per_class(m.precision)}}
        save_confusion_json(m, f"{stem}.ckplus.confusion.json", model=path.name, split="ckplus48", reference="CK+48")
        plot_confusion(m, f"{stem}.ckplus.confusion.png", f"{path.name} [CK+48]")
    save_manifest(variant_manifest(base, quant, result, split.name, content, extra), path)
    title = f"{path.name} [{split.name}]"
    save_confusion_json(result.metrics, f"{stem}.confusion.json", model=path.name, split=split.name)
    plot_confusion(result.metrics, f"{stem}.confusion.png", title)
    result.path, result.size_bytes = path, len(content)
    return result


def format_table(results: list[VariantResult], keras_metrics: ClassMetrics | None = None) -> str:
    lines = [f"{'variant':<9} {'size KB':>8} {'accuracy':>8} {'macro rec':>9} {'agree':>6} {'ms/face':>8}  file"
             + ("   [FER+ majority: accuracy, macro recall]" if any(r.ferplus for r in results) else "")
            + ("   [CK+48: accuracy, min recall]" if any(r.ckplus for r in results) else "")]
    if keras_metrics is not None:
        lines.append(
            f"{'keras':<9} {'-':>8} {keras_metrics.accuracy:>8.4f} {keras_metrics.macro_recall:>9.4f} "
            f"{1.0:>6.3f} {'-':>8}  (reference)"
        )
    for r in results:
        if r.error:
            lines.append(f"{r.variant:<9} FAILED: {r.error}")
            continue
        lines.append(
            f"{r.variant:<9} {r.size_bytes / 1024:>8.1f} {r.metrics.accuracy:>8.4f} {r.metrics.macro_recall:>9.4f} "
            f"{r.float_agreement:>6.3f} {r.latency_ms:>8.3f}  {r.path}"
            + (f"   [{r.ferplus.accuracy:.4f}, {r.ferplus.macro_recall:.4f}]" if r.ferplus else "")
            + (f"   [{r.ckplus.accuracy:.4f}, {min(v for v in r.ckplus.recall if v is not None):.4f}]" if r.ckplus else "")
        )
    return "\n".join(lines)


def parse_class_offsets(text: str, labels: list[str]) -> dict[str, float]:
    """``"neutral=-0.3,angry=0.2"`` → ``{"neutral": -0.3, "angry": 0.2}``; a class the model does
    not have, or a value that is not a number, is an error naming it."""
    out: dict[str, float] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in labels:
            raise ValueError(f"--class-offset {item!r}: want CLASS=NUMBER with CLASS one of {labels}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--class-offset {item!r}: {value!r} is not a number") from None
    return out


def balance_output(model, prior: np.ndarray, tau: float, extra: list[float] | None = None) -> list[float]:
    """Logit adjustment by the training prior (Menon et al. 2021, "Long-tail learning via logit
    adjustment"): the softmax layer ``probs`` gets ``-tau * log(prior)`` added to its bias, so the
    model answers ``p(c | x) / prior(c)^tau`` renormalised, at no cost (the graph is unchanged).
    ``tau`` 0.5 is the square-root balancing the members' class weights use (``--class-weight
    sqrt``); rare classes (disgust, fear) gain recall for a little accuracy on common ones.
    ``extra`` (one per class) is added on top: a class's own offset, chosen on validation sets
    where the prior alone does not fit (``--class-offset``). Returns the offsets added."""
    layer = model.get_layer("probs")
    kernel, bias = layer.get_weights()
    offset = -float(tau) * np.log(np.clip(np.asarray(prior, np.float64), 1e-6, 1.0))
    if extra is not None:
        offset = offset + np.asarray(extra, np.float64)
    layer.set_weights([kernel, (bias + offset).astype(bias.dtype)])
    return [round(float(v), 6) for v in offset]


def convert_cli(args) -> int:
    import keras

    model_path = Path(args.model)
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {model_path}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")

    model = keras.models.load_model(model_path, compile=False)
    rep_split = load_split(args.data, args.rep_split)
    labels = rep_split.labels
    if model.output_shape[-1] != len(labels):
        raise ValueError(f"{model_path} has {model.output_shape[-1]} outputs but {args.data} has {len(labels)} classes")
    split = limit_split(load_labelled_split(args.data, args.split, labels), args.limit)
    print_counts(split)
    base = float_manifest(model.input_shape, labels, args.margin, args.task)
    if args.flip_average:
        base = base.model_copy(update={"flip_average": True})
    if getattr(args, "align", "box") == "five_points":
        from .align import fer_template

        template = fer_template(rep_split)
        base = base.model_copy(update={"crop": base.crop.model_copy(update={"align": "five_points", "template": template})})
        print(f"faces cut by five points onto {template} (the mean of {args.rep_split}'s)")
    representative = representative_faces(rep_split, base, args.rep_samples) if "int8" in variants else None
    ferplus = None
    if getattr(args, "ferplus", None):
        from .ferplus import describe, load_ferplus

        ferplus = load_ferplus(split, args.ferplus)
        print(describe(ferplus))
    ckplus = None
    if getattr(args, "ckplus", None):
        from .datasets import load_ckplus

        ckplus = load_ckplus(args.ckplus, labels)
    balance = None
    class_offsets = parse_class_offsets(getattr(args, "class_offset", None) or "", labels)
    if getattr(args, "balance", 0.0) or class_offsets:
        # the prior is the training split's: its FER+ vote distributions, else its labels
        if getattr(args, "ferplus", None):
            prior = load_ferplus(rep_split, args.ferplus).dist.mean(axis=0)
        else:
            prior = np.bincount(rep_split.y, minlength=len(labels)) / len(rep_split)
        offsets = balance_output(model, prior, args.balance, [class_offsets.get(c, 0.0) for c in labels])
        balance = {"tau": args.balance, "prior": dict(zip(labels, np.round(prior, 6).tolist())),
                   "split": args.rep_split, "logit_offsets": offsets}
        if class_offsets:
            balance["class_offsets"] = class_offsets
        print(f"output balanced by the {args.rep_split} prior^{args.balance} and {class_offsets or 'no class offset'}: "
              f"logit offsets {offsets}")

    t0 = time.time()
    reference = evaluate_keras(model, base, split, args.batch)
    print(f"keras model: accuracy {reference.metrics.accuracy:.4f} on {len(split)} images ({time.time() - t0:.0f} s)")
    extra = {
        "source_model": model_path.name,
        "data": {"path": str(args.data), "split": args.split, "representative": f"{args.rep_samples} faces of {args.rep_split}"},
        "training": training_provenance(model_path),
    }
    if balance:
        extra["output_balance"] = balance
    results: list[VariantResult] = []
    for variant in variants:
        t0 = time.time()
        try:
            r = convert_variant(
                model, variant, base, split, reference.predictions, Path(args.out), representative, extra,
                args.batch, args.latency_runs, ferplus=ferplus, ckplus=ckplus,
            )
            print(f"{variant}: wrote {r.path} and {manifest_path(r.path).name} ({time.time() - t0:.0f} s)")
        except Exception as exc:  # one failing variant must not cost the others
            r = VariantResult(variant, error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            print(f"{variant}: FAILED ({r.error})")
        results.append(r)
    print()
    print(format_table(results, reference.metrics))
    fp16 = next((r for r in results if r.gpu is not None), None)
    if fp16:
        verdict = "compatible" if fp16.gpu.compatible else f"incompatible ops: {fp16.gpu.incompatible_ops}"
        print(f"float16 GPU delegate (analyzer): {verdict}")
    return 0 if all(r.error is None for r in results) else 1
