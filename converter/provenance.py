"""How a trained model was made: read by ``convert`` (into the manifest) and written beside an
ensemble by ``ensemble``. Its own module so those two do not import each other."""

from __future__ import annotations

import json
from pathlib import Path

PROVENANCE_SUFFIX = ".provenance.json"


def training_provenance(model_path: Path) -> dict | None:
    """How the model was made: ``<model>.provenance.json`` written by ``converter ensemble``, else
    ``train_config.json`` written by ``converter train`` beside the model, if present."""
    prov = model_path.with_name(model_path.stem + PROVENANCE_SUFFIX)
    if prov.is_file():
        return json.loads(prov.read_text())
    cfg = model_path.parent / "train_config.json"
    if not cfg.is_file():
        return None
    info = json.loads(cfg.read_text())
    best = model_path.parent / "best.json"
    if best.is_file():
        info["best_val_accuracy"] = json.loads(best.read_text()).get("val_accuracy")
    return info
