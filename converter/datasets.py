"""FER-2013 and user face data, in both layouts users have, streamed rather than held in RAM.

* Kaggle CSV: ``emotion,pixels,Usage``; Usage is Training / PublicTest / PrivateTest and the
  labels are in the CSV's order (angry, disgust, fear, happy, sad, surprise, neutral).
* Folders: ``<root>/<split>/<class>/*.jpg|png`` (FER-2013 as published on Kaggle by msambare,
  or any user set of labelled faces).

Both become the same thing: a list of *items* (a file path or a CSV row index) with integer
labels in one canonical label order (alphabetical class names, the folder layout's order), so a
model trained from either has the same outputs. Images stay uint8 and are decoded lazily: the
training pipeline streams them through ``tf.data``; evaluation iterates them in Python.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

FER_CSV_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
FER_LABELS = sorted(FER_CSV_LABELS)
CSV_SPLITS = {"train": "Training", "test": "PublicTest", "private": "PrivateTest"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class DatasetError(ValueError):
    """The data is missing or malformed; the message names the file, row or folder."""


@dataclass
class Split:
    """One split of a dataset: images (paths, or uint8 arrays for the CSV) and their labels."""

    name: str
    labels: list[str]
    y: np.ndarray
    paths: list[str] | None = None
    pixels: np.ndarray | None = field(default=None, repr=False)  # (N, H, W) uint8: the CSV, or aligned faces
    # (N, 5, 2) YuNet's five points per face in its pixels, for the aligned crop (converter.align)
    points: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def counts(self) -> dict[str, int]:
        c = Counter(self.y.tolist())
        return {name: c.get(i, 0) for i, name in enumerate(self.labels)}

    def image(self, i: int) -> np.ndarray:
        """The i-th image as a grey uint8 array."""
        if self.pixels is not None:
            return self.pixels[i]
        img = cv2.imread(self.paths[i], cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise DatasetError(f"cannot read image {self.paths[i]}")
        return img

    def iter_images(self, limit: int | None = None) -> Iterator[tuple[np.ndarray, int]]:
        n = len(self) if limit is None else min(limit, len(self))
        for i in range(n):
            yield self.image(i), int(self.y[i])

    def subset(self, idx: np.ndarray) -> "Split":
        return Split(
            self.name,
            self.labels,
            self.y[idx],
            paths=[self.paths[i] for i in idx] if self.paths is not None else None,
            pixels=self.pixels[idx] if self.pixels is not None else None,
            points=self.points[idx] if self.points is not None else None,
        )


def load_folder_split(root: str | Path, split: str, labels: list[str] | None = None) -> Split:
    """``<root>/<split>/<class>/*``; class names sorted unless ``labels`` fixes the order."""
    base = Path(root) / split
    if not base.is_dir():
        raise DatasetError(f"split folder not found: {base}")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if not classes:
        raise DatasetError(f"no class folders in {base}")
    if labels is None:
        labels = classes
    unknown = set(classes) - set(labels)
    if unknown:
        raise DatasetError(f"{base} has class folders not in the label list {labels}: {sorted(unknown)}")
    paths: list[str] = []
    ys: list[int] = []
    for idx, name in enumerate(labels):
        folder = base / name
        if not folder.is_dir():
            continue  # a test split may lack a class; counts will show 0
        files = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"class folder has no images (.jpg/.png): {folder}")
        paths += files
        ys += [idx] * len(files)
    return Split(split, list(labels), np.asarray(ys, dtype=np.int32), paths=paths)


def load_csv_split(csv_path: str | Path, split: str) -> Split:
    """Rows of the Kaggle ``fer2013.csv`` whose Usage matches ``split`` (train/test/private).

    48×48 uint8 is 2.3 KB per face (66 MB for all 35,887), so the pixels are parsed into one
    uint8 array; nothing is ever expanded to float for the whole set.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise DatasetError(f"CSV file not found: {path}")
    usage = CSV_SPLITS.get(split, split)
    remap = {i: FER_LABELS.index(name) for i, name in enumerate(FER_CSV_LABELS)}
    rows: list[np.ndarray] = []
    ys: list[int] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: header lacks columns {sorted(missing)} (need emotion,pixels,Usage)")
        for line_no, row in enumerate(reader, start=2):
            if row["Usage"] != usage:
                continue
            try:
                label = int(row["emotion"])
                px = np.array(row["pixels"].split(), dtype=np.int32)
            except (ValueError, AttributeError):
                raise DatasetError(f"{path}:{line_no}: emotion must be an integer and pixels integers") from None
            if label not in remap:
                raise DatasetError(f"{path}:{line_no}: emotion {label} is not in 0..6")
            if px.size != 48 * 48 or px.min(initial=0) < 0 or px.max(initial=0) > 255:
                raise DatasetError(
                    f"{path}:{line_no}: pixels must be 2304 values in 0..255, got {px.size} values"
                )
            rows.append(px.astype(np.uint8).reshape(48, 48))
            ys.append(remap[label])
    if not rows:
        raise DatasetError(f"{path}: no rows with Usage={usage}")
    return Split(split, FER_LABELS, np.asarray(ys, dtype=np.int32), pixels=np.stack(rows))


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def images_key(split: Split) -> str:
    """What a cache of per-image outputs is keyed by: the images by split/class/file name (not by
    the data folder's spelling, so ``../shared/data`` and its absolute form share a cache) and
    their labels, or the pixels for the CSV."""
    h = hashlib.sha256()
    if split.paths is not None:
        h.update("\n".join("/".join(Path(p).parts[-3:]) for p in split.paths).encode())
    else:
        h.update(split.pixels.tobytes())
    h.update(split.y.tobytes())
    return h.hexdigest()


def load_split(data: str | Path, split: str, labels: list[str] | None = None) -> Split:
    """A CSV file or a folder root, whichever ``data`` is."""
    if str(data).lower().endswith(".csv"):
        return load_csv_split(data, split)
    return load_folder_split(data, split, labels)


# CK+48's folder names → the daemon's classes; contempt is no class of the daemon's and is left out
CKPLUS_CLASSES = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
                  "sadness": "sad", "surprise": "surprise"}


def load_ckplus(root: str | Path, labels: list[str]) -> Split:
    """CK+48 (``<root>/<emotion>/*.png``, 48×48 posed lab faces) in the model's label order,
    contempt left out. A second distribution **for validation only**: never train on it."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"CK+ folder not found: {base}")
    paths: list[str] = []
    ys: list[int] = []
    for folder, name in CKPLUS_CLASSES.items():
        d = base / folder
        files = sorted(str(p) for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if d.is_dir() else []
        if not files:
            raise DatasetError(f"CK+ class folder missing or empty: {d}")
        paths += files
        ys += [labels.index(name)] * len(files)
    return Split("ckplus48", list(labels), np.asarray(ys, dtype=np.int32), paths=paths)


def print_counts(split: Split) -> None:
    counts = split.counts()
    cells = "  ".join(f"{k} {v:,}" for k, v in counts.items())
    print(f"[{split.name}] {len(split):,} images: {cells}")


def tf_dataset(
    split: Split,
    size: tuple[int, int],
    channels: int,
    batch: int,
    shuffle: bool,
    seed: int,
    augment=None,
    normalize: tuple[float, float] | None = None,
):
    """A streaming ``tf.data`` pipeline: decode → grey/colour → resize → cache (uint8) → batches.

    Only decoded uint8 images are cached (48×48 FER: 66 MB for the whole train set); float
    conversion, augmentation and normalisation happen per batch.
    """
    import tensorflow as tf

    h, w = size
    if split.pixels is not None:
        ds = tf.data.Dataset.from_tensor_slices((split.pixels[..., None], split.y))
    else:
        ds = tf.data.Dataset.from_tensor_slices((split.paths, split.y))

        def decode(path, y):
            # JPEGs with the accurate DCT, as OpenCV (evaluation, daemon) decodes them: TF's
            # default fast DCT differs by 1.6 grey levels on average (up to 16) on FER-2013.
            raw = tf.io.read_file(path)
            img = tf.cond(
                tf.io.is_jpeg(raw),
                lambda: tf.io.decode_jpeg(raw, channels=1, dct_method="INTEGER_ACCURATE"),
                lambda: tf.io.decode_image(raw, channels=1, expand_animations=False),
            )
            return img, y

        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    def shape(img, y):
        img = tf.ensure_shape(img, [None, None, 1])
        if img.shape[0] != h or img.shape[1] != w:
            img = tf.image.resize(img, (h, w), antialias=True)
        img = tf.cast(tf.clip_by_value(tf.round(tf.cast(img, tf.float32)), 0, 255), tf.uint8)
        return img, y

    ds = ds.map(shape, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle:
        ds = ds.shuffle(min(len(split), 30000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch)

    def to_float(img, y):
        x = tf.cast(img, tf.float32)
        if augment is not None:
            x = augment(x, training=True)
        if channels == 3:
            x = tf.image.grayscale_to_rgb(x)
        if normalize is not None:
            x = x * normalize[0] + normalize[1]
        return x, y

    return ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
