"""``emotiond analyze --results FILE.csv|.json``: one row per face, in stable columns.

A row per face seen in each image or video frame (and one row with empty face columns for an
image or frame without a face, so that every input is accounted for). The columns, in order:

* ``file``: the image, or the video, the row comes from
* ``frame``: the frame number in the video, or the image's position in the folder (from 0)
* ``time_s``: seconds into the video (frame / fps); empty for images
* ``track``, ``primary``: the face's track id (it follows a face across video frames) and
  whether it is the primary face (the driver: the largest face in ``tracker.primary_zone``)
* ``x``, ``y``, ``w``, ``h``: the face box in pixels
* ``label``, ``confidence``: the most probable emotion and its probability
* ``p_<label>``: every class probability, in the model's label order
* the face signals' columns (``eye_closed``, ``head_pose.yaw``, ...): empty where a signal is
  off or did not measure that face (most run on the primary face only)

The column set depends only on the model's labels and the registered signals, never on what
was found. CSV has a header line; JSON is a list of objects with the same keys (null where
CSV is empty), so ``pandas.read_csv`` and ``pandas.read_json`` give the same table. Both are
written row by row as the input is processed: a folder of any size is never held in memory.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import IO, Any

from .types import Observation
from .vision.signals import signal_cells, signal_columns

FACE_COLUMNS = ("track", "primary", "x", "y", "w", "h", "label", "confidence")
SUFFIXES = (".csv", ".json")


class ResultsError(Exception):
    """The results file cannot be used: a name that is neither .csv nor .json (``usage``), or a
    path that cannot be written."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def columns(labels: tuple[str, ...] | list[str]) -> list[str]:
    """The columns of a results table for a model with these labels."""
    return ["file", "frame", "time_s", *FACE_COLUMNS, *(f"p_{name}" for name in labels), *signal_columns()]


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def face_rows(file: str, frame: int, time_s: float | None, obs: Observation) -> list[list[Any]]:
    """The rows of one image or frame, as values under ``columns(obs.labels)`` (None = empty)."""
    head = [file, frame, _r(time_s)]
    if not obs.faces:
        return [head + [None] * (len(FACE_COLUMNS) + len(obs.labels) + len(signal_columns()))]
    return [
        head + [f.track_id, f.primary, *(int(v) for v in f.box), f.label, _r(f.confidence),
                *((_r(p) for p in f.probs) if f.probs is not None else [None] * len(obs.labels)),
                *(_r(v) for v in signal_cells(f.signals))]
        for f in obs.faces
    ]


class ResultsWriter:
    """Streams rows to ``path`` (.csv or .json, by its name) as they come."""

    def __init__(self, path: Path, labels: tuple[str, ...]) -> None:
        suffix = path.suffix.lower()
        if suffix not in SUFFIXES:
            raise ResultsError(f"--results {path}: the name must end in .csv or .json", usage=True)
        self.path, self.columns = path, columns(labels)
        self.json = suffix == ".json"
        self.rows = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: IO[str] = path.open("w", newline="", encoding="utf-8")
        except OSError as exc:
            raise ResultsError(f"cannot write {path}: {exc.strerror}") from None
        if self.json:
            self._fh.write("[")
        else:
            self._csv = csv.writer(self._fh)
            self._csv.writerow(self.columns)

    def add(self, file: str, frame: int, time_s: float | None, obs: Observation) -> None:
        for values in face_rows(file, frame, time_s, obs):
            if self.json:
                self._fh.write(("\n" if self.rows == 0 else ",\n") + json.dumps(dict(zip(self.columns, values))))
            else:
                self._csv.writerow(["" if v is None else int(v) if isinstance(v, bool) else v for v in values])
            self.rows += 1

    def close(self) -> None:
        if self.json:
            self._fh.write("\n]\n")
        self._fh.close()
