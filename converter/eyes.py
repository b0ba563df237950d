"""Train the eye open/closed classifier on CEW and ship it as int8 TFLite with its manifest.

``python -m converter eyes --data ../shared/data/cew_eyes --out models/eye_state``

CEW (Closed Eyes In The Wild) holds 24×24 grey patches in ``{open,closed}{Left,Right}Eyes/``;
``X_L.jpg`` and ``X_R.jpg`` are the two eyes of one face, so the test split is drawn by file
stem: a face is either wholly in training or wholly in the test, never both (a split by file
would put one eye of a face in each and flatter the test figure).

The network is a three-block CNN: eye state is a coarse cue (iris and lid edge visible or not)
and a 24×24 patch holds little more, so a few tens of thousands of weights reach CEW's ceiling
while costing microseconds per eye. Training runs a fixed number of epochs (no model selection
on the test split), then the model is quantised to full int8 with real training patches as the
representative set, fed through the daemon's own Preprocessor, and measured as int8.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.model.tflite import TfliteModel
from daemon.model.manifest import Crop, InputSpec, Manifest, Metrics, Normalize, Quantization, save_manifest

from .convert import latency_ms, quantization_of, representative_faces, to_tflite
from .datasets import DatasetError, Split, print_counts
from .evaluate import agreement, evaluate_keras, evaluate_tflite
from .train import NORMALIZE

LABELS = ["closed", "open"]  # alphabetical, like every folder dataset in the converter
FOLDERS = {"closed": ("closedLeftEyes", "closedRightEyes"), "open": ("openLeftEyes", "openRightEyes")}
SIDE = 24
# CEW patches are already the eye crop; when the daemon cuts an eye from a frame it grows its
# eye box by this margin, the context around the eye that CEW patches show (brow to cheek).
EYE_CROP_MARGIN = 0.0


@dataclass
class EyesTrainConfig:
    data: str
    out: str  # output stem: writes <out>.tflite and <out>.json
    epochs: int = 30
    batch: int = 64
    lr: float = 2e-3
    test_fraction: float = 0.2
    seed: int = 1337
    threads: int = 2


def stem_of(path: Path) -> str:
    """``Aaron_Guiel_0001_L.jpg`` → ``Aaron_Guiel_0001``: the face both eye patches come from."""
    name = path.stem
    return name[:-2] if name.endswith(("_L", "_R")) else name


def load_cew(root: str | Path) -> tuple[list[str], np.ndarray, list[str]]:
    """All CEW patches: paths, labels (index into LABELS) and face stems."""
    root = Path(root)
    paths: list[str] = []
    ys: list[int] = []
    stems: list[str] = []
    for y, label in enumerate(LABELS):
        for folder in FOLDERS[label]:
            d = root / folder
            if not d.is_dir():
                raise DatasetError(f"CEW folder not found: {d} (expected {root}/{{open,closed}}{{Left,Right}}Eyes)")
            files = sorted(d.glob("*.jpg"))
            if not files:
                raise DatasetError(f"no .jpg patches in {d}")
            paths += [str(f) for f in files]
            ys += [y] * len(files)
            stems += [f"{label}/{stem_of(f)}" for f in files]
    return paths, np.asarray(ys, dtype=np.int32), stems


def split_by_stem(stems: list[str], y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): a random ``test_fraction`` of the face stems of each class."""
    rng = np.random.default_rng(seed)
    stems_arr = np.asarray(stems)
    test = np.zeros(len(stems), dtype=bool)
    for c in np.unique(y):
        unique = np.unique(stems_arr[y == c])
        chosen = rng.permutation(unique)[: int(round(len(unique) * test_fraction))]
        test |= np.isin(stems_arr, chosen) & (y == c)
    return np.flatnonzero(~test), np.flatnonzero(test)


def build_eye_model(n_classes: int = 2, dropout: float = 0.3):
    import keras
    from keras import layers

    inp = keras.Input((SIDE, SIDE, 1), name="eye")
    x = inp
    for i, filters in enumerate((16, 32, 64)):  # 24 → 12 → 6 → 3
        for j in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}_{j}")(x)
            x = layers.BatchNormalization(name=f"bn{i}_{j}")(x)
            x = layers.ReLU(name=f"relu{i}_{j}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)  # keep where the lid edge is, not just whether it exists
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(32, activation="relu", name="fc")(x)
    out = layers.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="eye_state_cnn")


def eye_manifest() -> Manifest:
    """The float model's manifest; the int8 one replaces ``quantization`` with the converted model's."""
    return Manifest(
        task="eye_state",
        labels=LABELS,
        input=InputSpec(height=SIDE, width=SIDE, channels=1, color="gray",
                        normalize=Normalize(scale=NORMALIZE[0], offset=NORMALIZE[1])),
        crop=Crop(margin=EYE_CROP_MARGIN),
        quantization=Quantization(type="float32"),
    )


def train_eyes(cfg: EyesTrainConfig) -> Manifest:
    import keras
    import tensorflow as tf

    from .datasets import tf_dataset
    from .model import augmentation

    tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
    tf.config.threading.set_inter_op_parallelism_threads(cfg.threads)
    keras.utils.set_random_seed(cfg.seed)

    paths, y, stems = load_cew(cfg.data)
    tr, te = split_by_stem(stems, y, cfg.test_fraction, cfg.seed)
    train = Split("train", LABELS, y[tr], paths=[paths[i] for i in tr])
    test = Split("test", LABELS, y[te], paths=[paths[i] for i in te])
    print_counts(train)
    print_counts(test)
    print(f"face stems: train {len({stems[i] for i in tr})}, test {len({stems[i] for i in te})} (disjoint)")

    train_ds = tf_dataset(train, (SIDE, SIDE), 1, cfg.batch, True, cfg.seed, augmentation(cfg.seed), NORMALIZE)
    steps = int(np.ceil(len(train) / cfg.batch))
    model = build_eye_model(len(LABELS))
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=cfg.epochs * steps, alpha=0.01)
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.time()
    model.fit(train_ds, epochs=cfg.epochs, verbose=2)
    print(f"trained {model.count_params():,} parameters in {time.time() - t0:.0f} s")

    float_manifest = eye_manifest()
    model_bytes = to_tflite(model, "int8", representative_faces(train, float_manifest, 500, cfg.seed))
    manifest = float_manifest.model_copy(update={"quantization": quantization_of(model_bytes, "int8")})
    int8 = TfliteModel("<eye_state int8>", threads=1, content=model_bytes, manifest=manifest)
    floating = evaluate_keras(model, float_manifest, test)
    quantized = evaluate_tflite(int8, test)
    m = quantized.metrics
    metrics = Metrics(
        split="cew stem-held-out test",
        accuracy=m.accuracy,
        macro_recall=m.macro_recall,
        per_class_recall=m.per_class(m.recall),
        float_agreement=agreement(quantized.predictions, floating.predictions),
    )
    metrics.float_accuracy = floating.metrics.accuracy
    metrics.size_bytes = len(model_bytes)
    metrics.latency_ms = latency_ms(int8, test.image(0), runs=500)
    metrics.latency_note = "median invoke, 1 patch, ai_edge_litert, 1 thread"
    manifest.metrics = metrics
    manifest.training = {
        "data": "CEW (Closed Eyes In The Wild, Song et al. 2014), 24x24 grey eye patches; research use only",
        "split": f"{cfg.test_fraction:g} of face stems per class held out as test (seed {cfg.seed}), both eyes of a face on one side",
        "counts": {"train": train.counts(), "test": test.counts()},
        "architecture": f"{model.name}, {model.count_params()} parameters",
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "command": "python -m converter " + shlex.join(sys.argv[1:]),
    }

    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tflite = out.with_suffix(".tflite")
    tflite.write_bytes(model_bytes)
    save_manifest(manifest, tflite)
    print(
        f"int8 test accuracy {metrics.accuracy:.4f} (float {floating.metrics.accuracy:.4f}), recall "
        + ", ".join(f"{k} {v:.4f}" for k, v in metrics.per_class_recall.items())
        + f", agreement {metrics.float_agreement:.4f}, {len(model_bytes):,} bytes, {metrics.latency_ms:.3f} ms"
    )
    print(f"wrote {tflite} and {tflite.with_suffix('.json')}")
    return manifest


def add_parser(sub) -> None:
    d = EyesTrainConfig(data="", out="")
    p = sub.add_parser("eyes", help="train the eye open/closed model on CEW and write int8 TFLite + manifest")
    p.add_argument("--data", required=True, help="CEW root with {open,closed}{Left,Right}Eyes/")
    p.add_argument("--out", default="models/eye_state", help="output stem (writes .tflite and .json)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--test-fraction", type=float, default=d.test_fraction)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads, help="TensorFlow CPU threads")
