"""The model manifest: the one contract between the converter and the daemon.

A ``<model>.json`` beside every ``.tflite`` says how to feed the model (size, colour,
normalisation, crop margin, quantisation) and what it is worth (metrics). The daemon refuses a
model whose manifest is missing or disagrees with the tensors, so training and inference can
never silently drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MANIFEST_SCHEMA = 1


class _Open(BaseModel):
    """Manifests are forward compatible: tools may add keys the daemon does not know."""

    model_config = ConfigDict(extra="allow")


class Normalize(_Open):
    scale: float = Field(title="x_model = pixel_0_255 * scale + offset")
    offset: float = 0.0


class InputSpec(_Open):
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: Literal[1, 3]
    color: Literal["gray", "rgb"]
    normalize: Normalize


class Crop(_Open):
    margin: float = Field(0.0, ge=0.0, le=1.0, title="fraction of the box side added on each side")
    # Eye models: "box" cuts a square around each eye centre (the first CEW model); "eye_corners"
    # cuts each eye upright between its two corners, eye_widths wide (daemon/model/eye_crop.py).
    # Emotion models: "box" (margin above, the face's roll turned back) or "five_points": the face
    # mapped by its five landmarks onto ``template`` (daemon/model/face_align.py).
    align: Literal["box", "eye_corners", "five_points"] = Field("box", title="how the patch is cut")
    eye_widths: float = Field(1.6, gt=0.5, le=4.0, title="eye_corners: the patch side in eye widths")
    template: list[list[float]] | None = Field(
        None, title="five_points: eye centres, nose tip, mouth corners as fractions of the input side")

    @model_validator(mode="after")
    def _template(self) -> "Crop":
        if self.align == "five_points":
            t = self.template
            if t is None or len(t) != 5 or any(len(p) != 2 or not (0.0 <= p[0] <= 1.0 and 0.0 <= p[1] <= 1.0) for p in t):
                raise ValueError("crop.align five_points needs crop.template: five [x, y] fractions of the side")
            if not t[1][0] > t[0][0]:
                raise ValueError("crop.template: the second eye (the person's left) must be right of the first")
        return self


class Trust(_Open):
    """Eye models: the head poses within which the model's reading holds, as measured on
    held-out people (``bench/eye_views.py``); the eye signal says "unknown" outside them. The
    defaults are the first (CEW, frontal) model's: open eyes read closed beyond 20 degrees."""

    max_yaw_deg: float = Field(20.0, gt=0, le=90, title="head yaw (either side) up to which the reading holds")
    max_pitch_down_deg: float = Field(25.0, gt=0, le=90, title="head pitch down up to which the reading holds")
    # Beyond max_yaw_deg, a turned face's open eyes read 0.4-0.95 "closed" (the car clip at 45
    # degrees), shut eyes 0.97 and more: the reading still holds at its ends.
    turned_max_yaw_deg: float | None = Field(None, gt=0, le=90, title="up to this yaw, beyond max_yaw_deg, only sure readings hold")
    turned_closed_at: float = Field(0.97, gt=0.5, le=1.0, title="beyond max_yaw_deg: closed from this probability")
    turned_open_at: float = Field(0.4, ge=0.0, lt=0.5, title="beyond max_yaw_deg: open up to this probability")
    measured: str | None = Field(None, title="where the figures come from")


class Quantization(_Open):
    type: Literal["float32", "float16", "dynamic", "int8", "uint8"]
    input_scale: float | None = None
    input_zero_point: int | None = None
    output_scale: float | None = None
    output_zero_point: int | None = None


class Metrics(_Open):
    split: str
    accuracy: float
    macro_recall: float
    per_class_recall: dict[str, float]
    float_agreement: float | None = None


class Manifest(_Open):
    schema_version: int = MANIFEST_SCHEMA
    task: str = "emotion"
    labels: list[str] = Field(min_length=2)
    input: InputSpec
    crop: Crop = Crop()
    trust: Trust = Trust()
    quantization: Quantization
    flip_average: bool = Field(
        False, title="average the predictions of each face and its mirror image (what the metrics were measured with)")
    metrics: Metrics | None = None

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2) + "\n"


class ManifestError(ValueError):
    """A manifest is missing, unreadable, or does not describe its model."""


def manifest_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def load_manifest(model_path: str | Path) -> Manifest:
    path = manifest_path(model_path)
    if not path.is_file():
        raise ManifestError(f"model manifest not found: {path} (expected beside {model_path})")
    try:
        return Manifest.model_validate_json(path.read_text())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ManifestError(f"invalid manifest {path}: {problems}") from None


def save_manifest(manifest: Manifest, model_path: str | Path) -> Path:
    path = manifest_path(model_path)
    path.write_text(manifest.to_json())
    return path


_DTYPE_FOR_QUANT = {"int8": "int8", "uint8": "uint8"}


def check_against_tensors(
    manifest: Manifest, input_detail: dict[str, Any], output_detail: dict[str, Any], source: str = "model"
) -> None:
    """Raise ManifestError naming every way the manifest and the model's tensors differ."""
    problems: list[str] = []
    shape = [int(s) for s in input_detail["shape"]][1:]
    want = [manifest.input.height, manifest.input.width, manifest.input.channels]
    if shape != want:
        problems.append(f"input shape is {shape} (HWC) but manifest says {want}")
    n_out = int(output_detail["shape"][-1])
    if n_out != len(manifest.labels):
        problems.append(f"model has {n_out} outputs but manifest lists {len(manifest.labels)} labels")
    dtype = str(getattr(input_detail["dtype"], "__name__", input_detail["dtype"]))
    q = manifest.quantization.type
    expected_dtype = _DTYPE_FOR_QUANT.get(q, "float32")
    if dtype != expected_dtype:
        problems.append(f"input dtype is {dtype} but manifest quantization {q!r} implies {expected_dtype}")
    if q in _DTYPE_FOR_QUANT:
        scale, zp = input_detail.get("quantization", (0.0, 0))
        if manifest.quantization.input_scale is None or abs(scale - manifest.quantization.input_scale) > 1e-6 * max(1.0, scale):
            problems.append(f"input scale is {scale} but manifest says {manifest.quantization.input_scale}")
        if manifest.quantization.input_zero_point != zp:
            problems.append(f"input zero point is {zp} but manifest says {manifest.quantization.input_zero_point}")
    if problems:
        raise ManifestError(f"manifest does not match {source}: " + "; ".join(problems))
