"""Measure a classifier (Keras or any ``.tflite``) on a labelled split.

Inputs are always made by ``daemon.model.preprocess.Preprocessor`` from a manifest, the function the
daemon runs, so a figure measured here is a figure for the daemon's own input path. The metric
arithmetic works on a confusion matrix with plain NumPy, so it is exact and testable without
TensorFlow. Flip averaging (each face and its mirror image) is applied when the manifest asks for
it (``flip_average``), as the daemon does, or on request (``tta_flip``) to measure whether it helps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from daemon.model.manifest import (
    Crop,
    InputSpec,
    Manifest,
    Normalize,
    Quantization,
    ManifestError,
)
from daemon.model.tflite import TfliteModel, mean_of_mirrors, with_mirrors
from daemon.model.preprocess import Preprocessor

from .datasets import DatasetError, Split, load_split

Predict = Callable[[np.ndarray], np.ndarray]  # a batch of model inputs → (N, C) probabilities


# ---------------------------------------------------------------- metric arithmetic (NumPy only)


@dataclass
class ClassMetrics:
    """Scores derived from one confusion matrix (rows: true class, columns: predicted class).

    A recall is None for a class absent from the split and a precision is None for a class
    never predicted: they are undefined, not zero, and macro recall averages the defined ones.
    """

    labels: list[str]
    confusion: np.ndarray
    accuracy: float
    recall: list[float | None]
    precision: list[float | None]
    f1: list[float | None]
    macro_recall: float
    macro_f1: float

    @property
    def support(self) -> list[int]:
        return self.confusion.sum(axis=1).astype(int).tolist()

    def per_class(self, values: list[float | None]) -> dict[str, float]:
        """``{label: value}`` for the defined values (the manifest's per-class form)."""
        return {k: v for k, v in zip(self.labels, values) if v is not None}

    def to_dict(self) -> dict:
        return {
            "labels": self.labels,
            "n": int(self.confusion.sum()),
            "accuracy": self.accuracy,
            "macro_recall": self.macro_recall,
            "macro_f1": self.macro_f1,
            "per_class_recall": dict(zip(self.labels, self.recall)),
            "per_class_precision": dict(zip(self.labels, self.precision)),
            "per_class_f1": dict(zip(self.labels, self.f1)),
            "support": dict(zip(self.labels, self.support)),
            "confusion": self.confusion.astype(int).tolist(),
        }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs as an (n, n) int64 matrix."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.shape[0]} labels but {y_pred.shape[0]} predictions")
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def metrics_from_confusion(confusion: np.ndarray, labels: list[str]) -> ClassMetrics:
    cm = np.asarray(confusion, dtype=np.int64)
    if cm.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix {cm.shape} does not fit {len(labels)} labels")
    hits = np.diag(cm)
    recall = [_ratio(hits[i], cm[i].sum()) for i in range(len(labels))]
    precision = [_ratio(hits[i], cm[:, i].sum()) for i in range(len(labels))]
    f1: list[float | None] = []
    for r, p in zip(recall, precision):
        if r is None:
            f1.append(None)
        elif p is None or p + r == 0:
            f1.append(0.0)  # present but never (correctly) predicted
        else:
            f1.append(2 * p * r / (p + r))
    defined = [r for r in recall if r is not None]
    scored = [v for v in f1 if v is not None]
    return ClassMetrics(
        labels=list(labels),
        confusion=cm,
        accuracy=float(hits.sum() / max(1, cm.sum())),
        recall=recall,
        precision=precision,
        f1=f1,
        macro_recall=float(np.mean(defined)) if defined else 0.0,
        macro_f1=float(np.mean(scored)) if scored else 0.0,
    )


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of samples on which two models' top-1 classes agree."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare {a.shape[0]} predictions with {b.shape[0]}")
    return float(np.mean(a == b)) if a.size else 0.0


# ---------------------------------------------------------------- reports


def save_confusion_json(metrics: ClassMetrics, path: str | Path, **extra) -> Path:
    path = Path(path)
    path.write_text(json.dumps({**extra, **metrics.to_dict()}, indent=2) + "\n")
    return path


def plot_confusion(metrics: ClassMetrics, path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (each row is a true class's recall profile), with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = metrics.confusion
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(metrics.labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.6 + 0.7 * n))
    ax.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(n):
        for j in range(n):
            colour = "white" if rows[i, j] > 0.5 else "black"
            ax.text(j, i, f"{rows[i, j]:.2f}\n{cm[i, j]}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(n), metrics.labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), metrics.labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    heading = f"accuracy {metrics.accuracy:.3f}, macro recall {metrics.macro_recall:.3f}"
    ax.set_title(f"{title}\n{heading}" if title else heading, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def format_report(metrics: ClassMetrics) -> str:
    """Per-class recall/precision/F1 table for the terminal."""
    fmt = lambda v: "   -  " if v is None else f"{v:6.3f}"  # noqa: E731
    lines = [f"{'class':<10} {'n':>6} {'recall':>6} {'prec':>6} {'f1':>6}"]
    for i, name in enumerate(metrics.labels):
        lines.append(
            f"{name:<10} {metrics.support[i]:>6} {fmt(metrics.recall[i])} {fmt(metrics.precision[i])} {fmt(metrics.f1[i])}"
        )
    lines.append(
        f"accuracy {metrics.accuracy:.4f}  macro recall {metrics.macro_recall:.4f}  macro F1 {metrics.macro_f1:.4f}"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------- models and inputs


def float_manifest(input_shape: tuple, labels: list[str], margin: float = 0.1, task: str = "emotion") -> Manifest:
    """The manifest of a float model trained by ``converter.train``: grey or RGB input of the
    model's size, normalised with ``train.NORMALIZE``."""
    from .train import NORMALIZE

    h, w, c = (int(v) for v in input_shape[-3:])
    return Manifest(
        task=task,
        labels=list(labels),
        input=InputSpec(
            height=h, width=w, channels=c, color="gray" if c == 1 else "rgb",
            normalize=Normalize(scale=NORMALIZE[0], offset=NORMALIZE[1]),
        ),
        crop=Crop(margin=margin),
        quantization=Quantization(type="float32"),
    )


def load_tflite(path: str | Path) -> TfliteModel:
    """A .tflite file and its manifest, loaded by the daemon's own classifier (one thread, CPU),
    so what the converter measures is what the device runs."""
    from daemon.model.tflite import ModelError

    try:
        return TfliteModel(path, threads=1)
    except ModelError as exc:
        raise ManifestError(str(exc)) from None


def keras_predict(model) -> Predict:
    return lambda x: np.asarray(model.predict_on_batch(x), dtype=np.float32)


def limit_split(split: Split, limit: int | None, seed: int = 1337) -> Split:
    """A seeded random subset of ``limit`` images (a folder split is ordered by class, so the
    first N would be one class)."""
    if not limit or limit >= len(split):
        return split
    rng = np.random.default_rng(seed)
    return split.subset(np.sort(rng.permutation(len(split))[:limit]))


def predict_split(
    predict: Predict, preprocessor: Preprocessor, split: Split, batch: int = 256, tta_flip: bool = False
) -> np.ndarray:
    """(N, C) probabilities for every image of the split, fed in batches; a model aligned by
    five points gets each face cut by the split's landmarks (``converter.align.with_points``)
    with the daemon's own crop."""
    if preprocessor.aligns:
        from .align import with_points

        split = with_points(split)  # YuNet's points of each face, cached under build/landmarks
    outs: list[np.ndarray] = []
    x = np.empty((batch, *preprocessor.shape), dtype=preprocessor.dtype)
    for start in range(0, len(split), batch):
        n = min(batch, len(split) - start)
        for i in range(n):
            face = split.image(start + i)
            if preprocessor.aligns:
                face = preprocessor.aligned(face, split.points[start + i])
            preprocessor.prepare_face(face, out=x[i])
        # flip averaging as the daemon does it: faces and mirrors in one call
        probs = mean_of_mirrors(predict(with_mirrors(x[:n]))) if tta_flip else predict(x[:n])
        outs.append(np.array(probs, dtype=np.float32))
    return np.concatenate(outs) if outs else np.zeros((0, len(split.labels)), np.float32)


@dataclass
class Evaluation:
    metrics: ClassMetrics
    probs: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


def evaluate(
    predict: Predict, preprocessor: Preprocessor, split: Split, batch: int = 256, tta_flip: bool = False
) -> Evaluation:
    # A manifest that asks for flip averaging is evaluated the way the daemon will run it.
    probs = predict_split(predict, preprocessor, split, batch, tta_flip or preprocessor.manifest.flip_average)
    labels = preprocessor.manifest.labels
    if probs.shape[1] != len(labels):
        raise ValueError(f"model has {probs.shape[1]} outputs but the manifest lists {len(labels)} labels")
    cm = confusion_matrix(split.y, probs.argmax(axis=1), len(labels))
    return Evaluation(metrics_from_confusion(cm, labels), probs)


def ferplus_view(probs: np.ndarray, targets, labels: list[str]) -> ClassMetrics:
    """Metrics against the FER+ majority: ``probs`` are a whole split's (in its order),
    ``targets`` that split's ``FerPlusTargets``; images without a majority are left out."""
    has = targets.majority >= 0
    pred = probs[targets.index[has]].argmax(axis=1)
    return metrics_from_confusion(confusion_matrix(targets.majority[has], pred, len(labels)), labels)


def format_views(views: dict[str, ClassMetrics]) -> str:
    """Per-class recall of several views side by side, then each one's accuracy and macro recall."""
    names = list(views)
    first = views[names[0]]
    lines = [f"{'class':<10} " + " ".join(f"{n + ' n':>12} {n + ' recall':>16}" for n in names)]
    for i, label in enumerate(first.labels):
        cells = []
        for n in names:
            m = views[n]
            r = m.recall[i]
            cells.append(f"{m.support[i]:>12} {'-' if r is None else f'{r:.3f}':>16}")
        lines.append(f"{label:<10} " + " ".join(cells))
    for n in names:
        m = views[n]
        lines.append(f"{n}: {int(m.confusion.sum())} images, accuracy {m.accuracy:.4f}, macro recall {m.macro_recall:.4f}")
    return "\n".join(lines)


def evaluate_keras(model, manifest: Manifest, split: Split, batch: int = 256, tta_flip: bool = False) -> Evaluation:
    return evaluate(keras_predict(model), Preprocessor(manifest, np.float32), split, batch, tta_flip)


def evaluate_tflite(model: TfliteModel, split: Split, batch: int = 256, tta_flip: bool = False) -> Evaluation:
    return evaluate(model.predict, model.preprocessor, split, batch, tta_flip)


def load_labelled_split(data: str | Path, split: str, labels: list[str]) -> Split:
    """The split with its labels in the model's order, or a clear error if they cannot match."""
    loaded = load_split(data, split, labels=None if str(data).lower().endswith(".csv") else labels)
    if loaded.labels != list(labels):
        raise DatasetError(f"{data} has labels {loaded.labels} but the model's are {list(labels)}")
    return loaded


# ---------------------------------------------------------------- command line


def evaluate_cli(args) -> int:
    model_path = Path(args.model)
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {model_path}")
    if model_path.suffix == ".tflite":
        tfl = load_tflite(model_path)
        manifest = tfl.manifest
        split = limit_split(load_labelled_split(args.data, args.split, manifest.labels), args.limit)
        result = evaluate_tflite(tfl, split, args.batch, args.tta_flip)
    else:
        import keras

        model = keras.models.load_model(model_path, compile=False)
        if args.manifest:
            manifest = Manifest.model_validate_json(Path(args.manifest).read_text())
        else:
            labels = load_split(args.data, args.split).labels
            manifest = float_manifest(model.input_shape, labels)
        split = limit_split(load_labelled_split(args.data, args.split, manifest.labels), args.limit)
        result = evaluate_keras(model, manifest, split, args.batch, args.tta_flip)
    flip = " (flip-averaged)" if args.tta_flip else ""
    print(f"{model_path} on {args.data} [{args.split}], {len(split)} images{flip}")
    print(format_report(result.metrics))
    views = {"original": result.metrics}
    if getattr(args, "ferplus", None):
        from .ferplus import describe, load_ferplus

        targets = load_ferplus(split, args.ferplus)
        views["ferplus"] = ferplus_view(result.probs, targets, manifest.labels)
        print(describe(targets))
        print(format_views({"ferplus": views["ferplus"], "original": result.metrics}))
    if getattr(args, "ckplus", None):
        from .datasets import load_ckplus

        ck = load_ckplus(args.ckplus, manifest.labels)
        if model_path.suffix == ".tflite":
            views["ckplus"] = evaluate_tflite(tfl, ck, args.batch, args.tta_flip).metrics
        else:
            views["ckplus"] = evaluate_keras(model, manifest, ck, args.batch, args.tta_flip).metrics
        print(f"CK+48 ({args.ckplus}, contempt left out), {len(ck)} images")
        print(format_report(views["ckplus"]))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = model_path.stem + ("_flip" if args.tta_flip else "")
        info = {"model": str(model_path), "data": str(args.data), "split": args.split, "tta_flip": args.tta_flip}
        print(f"wrote {save_confusion_json(result.metrics, out / f'{stem}.metrics.json', **info)}")
        print(f"wrote {plot_confusion(result.metrics, out / f'{stem}.confusion.png', f'{model_path.name} [{args.split}]')}")
        if "ferplus" in views:
            m = views["ferplus"]
            print(f"wrote {save_confusion_json(m, out / f'{stem}.ferplus.metrics.json', **info, reference='FER+ majority')}")
            print(f"wrote {plot_confusion(m, out / f'{stem}.ferplus.confusion.png', f'{model_path.name} [{args.split}, FER+ majority]')}")
        if "ckplus" in views:
            m = views["ckplus"]
            print(f"wrote {save_confusion_json(m, out / f'{stem}.ckplus.metrics.json', **info, reference='CK+48')}")
            print(f"wrote {plot_confusion(m, out / f'{stem}.ckplus.confusion.png', f'{model_path.name} [CK+48]')}")
    return 0
