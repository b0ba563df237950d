"""``emotiond models``: what models are installed, read from the files and their manifests.

One row per model file (``.tflite``, ``.onnx``) in the installed models folder (see
``daemon.model.paths``): file, size, task, labels and the accuracy its manifest records. A
model without a manifest (FaceMesh, YuNet: third-party models run by their own code) shows
the task its runner gives it and no figures; their cards say what they are worth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .manifest import ManifestError, load_manifest, manifest_path

MODEL_SUFFIXES = (".tflite", ".onnx")
# Third-party models without a manifest: the task their runner in daemon/ gives them.
_KNOWN_TASKS = {"face_landmark": "face mesh (head_pose signal)", "iris_landmark": "eyelids and iris (gaze signal)", "face_detection_yunet": "face detection (yunet detector)"}


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    size: int
    task: str
    labels: tuple[str, ...] = ()
    accuracy: float | None = None
    split: str | None = None
    quantization: str | None = None
    problem: str | None = None  # a manifest that is there but cannot be read
    ferplus_accuracy: float | None = None  # against the FER+ annotators' majority (emotion models)

    def row(self) -> list[str]:
        acc = f"{self.accuracy:.3f} ({self.split})" if self.accuracy is not None else "-"
        fp = f"{self.ferplus_accuracy:.3f}" if self.ferplus_accuracy is not None else "-"
        return [self.path.name, f"{self.size / 1e6:.1f} MB", self.task, ",".join(self.labels) or "-", acc, fp]


def describe(path: Path) -> ModelInfo:
    """One model file and what its manifest (if any) says about it."""
    size = path.stat().st_size
    if not manifest_path(path).is_file():
        task = next((t for prefix, t in _KNOWN_TASKS.items() if path.stem.startswith(prefix)), "-")
        return ModelInfo(path, size, task)
    try:
        m = load_manifest(path)
    except ManifestError as exc:
        return ModelInfo(path, size, "?", problem=str(exc))
    metrics = m.metrics
    ferplus = getattr(m, "metrics_ferplus", None)  # an extra field of the manifest (converter --ferplus)
    fp_acc = ferplus.get("accuracy") if isinstance(ferplus, dict) else None
    return ModelInfo(path, size, m.task, tuple(m.labels), metrics.accuracy if metrics else None,
                     metrics.split if metrics else None, m.quantization.type,
                     ferplus_accuracy=float(fp_acc) if isinstance(fp_acc, (int, float)) else None)


def installed(folder: Path) -> list[ModelInfo]:
    return [describe(p) for p in sorted(folder.iterdir()) if p.suffix in MODEL_SUFFIXES and p.is_file()]


def table(models: list[ModelInfo]) -> str:
    """A plain aligned table (what ``emotiond models`` prints)."""
    rows = [["file", "size", "task", "labels", "accuracy (split)", "FER+ majority"]] + [m.row() for m in models]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines += [f"warning: {m.path.name}: {m.problem}" for m in models if m.problem]
    return "\n".join(lines)
