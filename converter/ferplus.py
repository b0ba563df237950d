"""FER+ votes (ten annotators per FER-2013 face) as targets and as an evaluation reference.

The votes file is the CSV in ``../shared/data/fer2013/ferplus/`` (``train.csv`` for the
``train`` split, ``publictest.csv`` for ``test``): ``file`` (``<class>/<name>.jpg`` under the
split's folder), ``class`` (FER-2013's own label), then one count per FER+ category
(``neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF``) and
``dist``. The seven emotions map onto the model's classes (``happiness`` → ``happy`` ...). The
three others, decided so that the daemon keeps its seven-class contract:

* ``NF`` (not a face): an image whose largest vote count is NF is dropped, from training and
  from evaluation; its remaining votes are noise about a non-face.
* ``unknown``: the annotator could not tell. Those votes are dropped and the distribution is
  renormalised over the emotions; an image whose largest count is unknown has no majority.
* ``contempt``: no class of the daemon's (rules, payloads and the retail summaries name seven
  emotions), and FER+ marks it on under 1 % of the faces. Its votes are dropped like unknown's
  rather than folded into disgust, so that disgust is not taught with faces people called
  contempt; a contempt-majority image has no majority.

Training targets are the renormalised distribution over the seven emotions (Barsoum et al.
2016's probability mode); images with no emotion vote left are dropped. The evaluation
reference is the *majority*: the category with the largest count, when it is one of the seven
emotions and no other category has as many votes; ties and unknown/NF/contempt majorities are
left out and counted by reason.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .datasets import DatasetError, Split

FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
# FER+ category -> the model's class name; the others (contempt, unknown, NF) are not classes
FERPLUS_TO_CLASS = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
                    "anger": "angry", "disgust": "disgust", "fear": "fear"}
VOTE_FILES = {"train": "train.csv", "test": "publictest.csv"}
NO_MAJORITY = -1


def votes_file(ferplus: str | Path, split: str) -> Path:
    """The votes CSV of a split inside a FER+ folder, or the CSV itself when one is given."""
    p = Path(ferplus)
    if p.suffix.lower() == ".csv":
        return p
    if split not in VOTE_FILES:
        raise DatasetError(f"FER+ has votes for the splits {sorted(VOTE_FILES)}, not {split!r}")
    return p / VOTE_FILES[split]


def read_votes(path: str | Path) -> dict[str, np.ndarray]:
    """``{file: (10,) int votes}`` from a FER+ votes CSV; a malformed row is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"FER+ votes file not found: {path}")
    out: dict[str, np.ndarray] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", *FERPLUS_COLUMNS} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: header lacks columns {sorted(missing)}")
        for line_no, row in enumerate(reader, start=2):
            try:
                v = np.array([int(row[c]) for c in FERPLUS_COLUMNS], dtype=np.int32)
            except (TypeError, ValueError):
                raise DatasetError(f"{path}:{line_no}: the vote counts must be integers") from None
            if v.min() < 0:
                raise DatasetError(f"{path}:{line_no}: a negative vote count")
            out[row["file"].replace("\\", "/")] = v
    if not out:
        raise DatasetError(f"{path}: no rows")
    return out


@dataclass
class FerPlusTargets:
    """A split restricted to the faces FER+ can teach, with their targets.

    ``split``: the kept images (labels: the original FER-2013 ones, for the second view);
    ``dist``: (N, C) vote distributions over the split's classes, each summing to 1;
    ``majority``: (N,) the FER+ majority class, or ``NO_MAJORITY`` (-1);
    ``index``: (N,) where each kept image is in the split it was made from;
    ``dropped``/``no_majority``: counts by reason.
    """

    split: Split
    dist: np.ndarray
    majority: np.ndarray
    index: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)
    no_majority: dict[str, int] = field(default_factory=dict)


def _rel(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def ferplus_targets(split: Split, votes: dict[str, np.ndarray]) -> FerPlusTargets:
    """Match a folder split's images (``<class>/<file>``) to their votes; see the module docstring."""
    if split.paths is None:
        raise DatasetError("FER+ votes name image files: use the folder layout of FER-2013, not the CSV")
    cols = [FERPLUS_COLUMNS.index(k) for k in FERPLUS_TO_CLASS]
    classes = [FERPLUS_TO_CLASS[k] for k in FERPLUS_TO_CLASS]
    missing = set(classes) - set(split.labels)
    if missing:
        raise DatasetError(f"the split's classes {split.labels} lack FER+ emotions {sorted(missing)}")
    to_model = np.array([split.labels.index(c) for c in classes])
    nf, n_cls = FERPLUS_COLUMNS.index("NF"), len(split.labels)
    keep: list[int] = []
    dists: list[np.ndarray] = []
    majority: list[int] = []
    dropped: Counter = Counter()
    no_major: Counter = Counter()
    matched = 0
    for i, path in enumerate(split.paths):
        v = votes.get(_rel(path))
        if v is None:
            dropped["no FER+ row"] += 1
            continue
        matched += 1
        top = int(v.max())
        if top == 0:
            dropped["no votes"] += 1
            continue
        if v[nf] == top:
            dropped["not a face (NF majority)"] += 1
            continue
        emo = v[cols].astype(np.float64)
        if emo.sum() == 0:
            dropped["no emotion vote"] += 1
            continue
        d = np.zeros(n_cls, np.float64)
        d[to_model] = emo / emo.sum()
        winners = np.flatnonzero(v == top)
        if len(winners) > 1:
            no_major["tie"] += 1
            m = NO_MAJORITY
        elif FERPLUS_COLUMNS[winners[0]] not in FERPLUS_TO_CLASS:
            no_major[f"{FERPLUS_COLUMNS[winners[0]]} majority"] += 1
            m = NO_MAJORITY
        else:
            m = int(to_model[cols.index(int(winners[0]))])
        keep.append(i)
        dists.append(d)
        majority.append(m)
    unmatched = len(votes) - matched
    if unmatched:
        dropped["FER+ row without an image in the folder"] = unmatched
    if not keep:
        raise DatasetError(f"no image of the {split.name} split matches the FER+ votes (are they the same split?)")
    idx = np.asarray(keep)
    return FerPlusTargets(split.subset(idx), np.asarray(dists, np.float32), np.asarray(majority, np.int32), idx,
                          dict(dropped), dict(no_major))


def load_ferplus(split: Split, ferplus: str | Path) -> FerPlusTargets:
    return ferplus_targets(split, read_votes(votes_file(ferplus, split.name)))


def describe(t: FerPlusTargets) -> str:
    """One line: what was kept and what was left out, by reason."""
    drop = ", ".join(f"{k} {v}" for k, v in sorted(t.dropped.items())) or "none"
    nomaj = ", ".join(f"{k} {v}" for k, v in sorted(t.no_majority.items())) or "none"
    return (f"FER+ [{t.split.name}]: {len(t.split)} images kept (dropped: {drop}); "
            f"{int((t.majority >= 0).sum())} with a majority (left out of the majority view: {nomaj})")
