"""Train an emotion (or any labelled-face) classifier, resumably, with model selection on a
held-out split.

Two phases for transfer learning: the classification head on a frozen backbone, then the whole
network fine-tuned with a cosine-decayed learning rate. Each phase checkpoints every epoch with
``BackupAndRestore``, so a killed run continues where it stopped when started again with the
same ``--out``. The best epoch on the validation split (FER-2013 PublicTest) is kept as
``best.keras``; early stopping ends a phase that stops improving.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .datasets import Split, load_split, print_counts, tf_dataset

# MobileNetV2 expects [-1, 1]; the small CNN is trained on the same scale for simplicity.
NORMALIZE = (1 / 127.5, -1.0)


@dataclass
class TrainConfig:
    data: str
    out: str
    arch: str = "mobilenetv2"
    weights: str | None = None
    input_size: int = 48
    backbone_size: int = 96
    alpha: float = 1.0
    batch: int = 64
    head_epochs: int = 2
    epochs: int = 12
    head_lr: float = 1e-3
    lr: float = 5e-4
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    class_weight: str = "sqrt"  # none | sqrt | balanced
    dropout: float = 0.3
    patience: int = 4
    seed: int = 1337
    train_split: str = "train"
    val_split: str = "test"
    limit: int | None = None  # for smoke tests: use the first N training images
    init: str | None = None  # continue from this .keras model (a second fine-tuning cycle): no head phase


def class_weights(y: np.ndarray, n: int, mode: str) -> dict[int, float] | None:
    """Inverse-frequency weights (``balanced``) or their square root (``sqrt``, a softer
    correction that keeps accuracy while lifting rare classes such as disgust)."""
    if mode == "none":
        return None
    counts = np.bincount(y, minlength=n).astype(np.float64)
    w = len(y) / (n * np.maximum(counts, 1))
    if mode == "sqrt":
        w = np.sqrt(w)
    elif mode != "balanced":
        raise ValueError(f"class weight mode must be none, sqrt or balanced, not {mode!r}")
    return {i: float(v) for i, v in enumerate(w)}


def _verbose() -> int:
    return 1 if sys.stdout.isatty() else 2


def _schedule(cfg: TrainConfig, steps_per_epoch: int):
    import keras

    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.lr / 10 if warmup else cfg.lr,
        decay_steps=max(1, total - warmup),
        alpha=0.01,
        warmup_target=cfg.lr if warmup else None,
        warmup_steps=warmup,
    )


def plot_curves(out: Path, phases: tuple[str, ...] = ("head", "finetune")) -> Path | None:
    """Accuracy and loss per epoch across the phases, from the CSV logs (``log_<phase>.csv``)."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for phase in phases:
        log = out / f"log_{phase}.csv"
        if log.is_file():
            with log.open() as fh:
                rows += [dict(r, phase=phase) for r in csv.DictReader(fh)]
    if not rows:
        return None
    x = np.arange(1, len(rows) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("accuracy", "loss")):
        ax.plot(x, [float(r[key]) for r in rows], label=f"train {key}")
        ax.plot(x, [float(r[f"val_{key}"]) for r in rows], label=f"val {key}")
        n_head = sum(r["phase"] == "head" for r in rows)
        if n_head:
            ax.axvline(n_head + 0.5, color="grey", ls="--", lw=0.8, label="fine-tune starts")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def start_run(cfg) -> tuple[Path, Split, Split]:
    """What a training run and a distillation run both do first: the run folder with its
    config and command, the seed, and the two splits (subsampled by ``cfg.limit``), counted."""
    import keras

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    (out / "train_config.json").write_text(
        json.dumps({**asdict(cfg), "command": "python -m converter " + shlex.join(sys.argv[1:])}, indent=2) + "\n"
    )
    train_split = load_split(cfg.data, cfg.train_split)
    val_split = load_split(cfg.data, cfg.val_split, labels=train_split.labels)
    if cfg.limit:
        rng = np.random.default_rng(cfg.seed)
        train_split = train_split.subset(np.sort(rng.permutation(len(train_split))[: cfg.limit]))
        val_split = val_split.subset(np.sort(rng.permutation(len(val_split))[: max(64, cfg.limit // 4)]))
    print_counts(train_split)
    print_counts(val_split)
    return out, train_split, val_split


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; return the path of the best model."""
    import keras
    import tensorflow as tf

    from .model import augmentation, build_model

    out, train_split, val_split = start_run(cfg)
    n = len(train_split.labels)

    size = (cfg.input_size, cfg.input_size)
    train_ds = tf_dataset(train_split, size, 1, cfg.batch, True, cfg.seed, augmentation(cfg.seed), NORMALIZE)
    val_ds = tf_dataset(val_split, size, 1, cfg.batch, False, cfg.seed, None, NORMALIZE)
    steps = math.ceil(len(train_split) / cfg.batch)
    weights = class_weights(train_split.y, n, cfg.class_weight)
    print(f"class weights: {weights}")

    model, backbone = build_model(
        cfg.arch, n, cfg.input_size, 1, cfg.backbone_size, cfg.alpha, cfg.weights, cfg.dropout
    )
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
    onehot = lambda ds: ds.map(lambda x, y: (x, tf.one_hot(y, n)))  # noqa: E731
    train_ds, val_ds = onehot(train_ds), onehot(val_ds)
    best = out / "best.keras"


    head_done = out / "head_done.weights.h5"
    if cfg.init:
        if not Path(cfg.init).is_file():
            raise FileNotFoundError(f"--init model not found: {cfg.init}")
        model.load_weights(cfg.init)
        print(f"starting from the weights of {cfg.init}")
    elif backbone is not None and cfg.head_epochs > 0:
        if head_done.is_file():
            print(f"head phase already done ({head_done}); skipping it")
            model.load_weights(head_done)
        else:
            backbone.trainable = False
            model.compile(keras.optimizers.Adam(cfg.head_lr), loss, metrics=["accuracy"])
            t0 = time.time()
            model.fit(train_ds, validation_data=val_ds, epochs=cfg.head_epochs, class_weight=weights,
                      callbacks=run_callbacks(out, "head", cfg.patience), verbose=_verbose())
            model.save_weights(head_done)
            print(f"head phase done in {time.time() - t0:.0f} s")
    if backbone is not None:
        backbone.trainable = True
    opt = keras.optimizers.AdamW(_schedule(cfg, steps), weight_decay=1e-4)
    model.compile(opt, loss, metrics=["accuracy"])
    # BackupAndRestore stores the resumed epoch on the model and Keras never clears it: after a
    # resumed head phase, fine-tuning would silently start at that epoch (skipping epochs).
    model._initial_epoch = None
    t0 = time.time()
    model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, class_weight=weights,
              callbacks=run_callbacks(out, "finetune", cfg.patience), verbose=_verbose())
    print(f"fine-tune phase done in {time.time() - t0:.0f} s")
    plot_curves(out)
    (out / "DONE").write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    return best


def run_callbacks(out: Path, phase: str, patience: int, monitor: str = "val_accuracy") -> list:
    """One phase's callbacks in a run folder: resumable every epoch (``backup_<phase>``), the
    best model by validation accuracy across phases and restarts (``best.keras``), the CSV log,
    early stopping, and ``best.json``. Shared by ``train`` and ``distill``."""
    import keras

    return [
        keras.callbacks.BackupAndRestore(str(out / f"backup_{phase}")),
        keras.callbacks.ModelCheckpoint(
            str(out / "best.keras"), monitor=monitor, mode="max", save_best_only=True,
            initial_value_threshold=_best_so_far(out, monitor),
        ),
        keras.callbacks.CSVLogger(str(out / f"log_{phase}.csv"), append=True),
        keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=patience),
        _RecordBest(out, monitor),
    ]


def _best_so_far(out: Path, monitor: str = "val_accuracy") -> float | None:
    """Best validation figure recorded by an earlier (interrupted) run, so a resumed run never
    overwrites a better ``best.keras`` with a worse one."""
    f = out / "best.json"
    if f.is_file():
        rec = json.loads(f.read_text())
        if monitor in rec:
            return float(rec[monitor])
    return None


class _RecordBest:
    """Keras callback (duck-typed below) writing the best monitored figure beside best.keras."""

    def __new__(cls, out: Path, monitor: str = "val_accuracy"):
        import keras

        class RecordBest(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                value = float((logs or {}).get(monitor, 0.0))
                prev = _best_so_far(out, monitor)
                if prev is None or value > prev:
                    rec = {monitor: value, "epoch": epoch + 1, "time": time.time()}
                    rec.update({k: float(v) for k, v in (logs or {}).items() if k.startswith("val_")})
                    (out / "best.json").write_text(json.dumps(rec) + "\n")

        return RecordBest()


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
