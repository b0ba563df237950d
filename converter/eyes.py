"""Train the eye-state classifier (closed, open, unreadable) and ship it as int8 TFLite with its manifest.

``python -m converter eye-data --out build/eye_patches.npz``
``python -m converter eyes --data ../shared/data/cew_eyes --clips build/eye_patches.npz --out models/eye_state``

Two sources: CEW's frontal 24×24 patches, and eye patches cut from real clips exactly as the
daemon cuts them (``converter/eye_data.py``: the manifest's ``eye_corners`` crop contract, on the
clips as turned, small, dim and infrared cameras see them). Every patch is augmented again per
epoch the way such cameras differ (``augment``): foreshortened (a turned face narrows its
eyes), shrunk and re-enlarged (a 40-px face's eye is 8 px wide), blurred, dimmed, noisy, with a
glint on glasses; a patch covered by dark lenses or cut off the eye is ``unreadable``. Without
``--clips`` the first model is made again: CEW alone, two classes, the ``box`` crop.

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
LABELS3 = ["closed", "open", "unreadable"]  # with --clips: the rules need "cannot tell" said, not guessed
SUNGLASSES_SHARE = 0.06  # training patches covered by a dark lens (then unreadable)
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
    clips: str | None = None  # eye_data.py's patches (.npz): three classes, the eye_corners crop


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


def eye_manifest(corners: bool = False) -> Manifest:
    """The float model's manifest; the int8 one replaces ``quantization`` with the converted model's."""
    from daemon.model.eye_crop import EYE_WIDTHS

    return Manifest(
        task="eye_state",
        labels=LABELS3 if corners else LABELS,
        input=InputSpec(height=SIDE, width=SIDE, channels=1, color="gray",
                        normalize=Normalize(scale=NORMALIZE[0], offset=NORMALIZE[1])),
        crop=Crop(margin=EYE_CROP_MARGIN, align="eye_corners", eye_widths=EYE_WIDTHS) if corners else Crop(margin=EYE_CROP_MARGIN),
        quantization=Quantization(type="float32"),
    )


def augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, unreadable: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's draw of (N, SIDE, SIDE) uint8 patches as other cameras and faces give them:
    flipped, turned a little, shifted, foreshortened (a face turned up to ~50 degrees narrows
    its eyes to 0.65), shrunk to 7-24 px and enlarged back, blurred, dimmed or brightened
    (gamma), noisy, a glint; with ``unreadable``, SUNGLASSES_SHARE of them under a dark lens."""
    import cv2

    out = np.empty_like(x)
    y = y.copy()
    c = SIDE / 2.0
    for i in range(len(x)):
        p = x[i]
        if rng.random() < 0.5:
            p = p[:, ::-1]
        squeeze = rng.uniform(0.65, 1.0) if rng.random() < 0.5 else 1.0
        zoom = rng.uniform(0.88, 1.14)
        m = cv2.getRotationMatrix2D((c, c), rng.uniform(-10, 10), 1.0)
        m[:, :2] = np.diag([zoom / squeeze, zoom]) @ m[:, :2]  # squeeze: the patch is eye widths wide, the eye narrower
        m[:, 2] += (c - m[:, :2] @ (c, c)) + rng.uniform(-1.5, 1.5, 2)
        p = cv2.warpAffine(np.ascontiguousarray(p), m, (SIDE, SIDE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if rng.random() < 0.35:
            s = int(rng.integers(7, SIDE))
            p = cv2.resize(cv2.resize(p, (s, s), interpolation=cv2.INTER_AREA), (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)
        f = p.astype(np.float32)
        if rng.random() < 0.2:
            f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.4, 1.1))
        if rng.random() < 0.5:
            f = 255.0 * (f / 255.0) ** rng.uniform(0.6, 1.7)
        f = f * rng.uniform(0.6, 1.25) + rng.uniform(-20, 20)
        if rng.random() < 0.3:
            f += rng.normal(0, rng.uniform(2, 9), f.shape)
        if rng.random() < 0.08:  # a glint on glasses or a wet eye
            cv2.circle(f, (int(rng.integers(4, SIDE - 4)), int(rng.integers(6, SIDE - 6))), int(rng.integers(1, 3)), 255.0, -1)
        if unreadable is not None and rng.random() < SUNGLASSES_SHARE:
            lens = np.zeros_like(f)
            cv2.ellipse(lens, (int(c + rng.uniform(-2, 2)), int(c + rng.uniform(-2, 2))),
                        (int(rng.uniform(9, 13)), int(rng.uniform(7, 10))), 0, 0, 360, 1.0, -1)
            f = np.where(lens > 0, rng.uniform(5, 45) + 0.1 * f, f)
            y[i] = unreadable
        out[i] = np.clip(f, 0, 255).astype(np.uint8)
    return out, y


def _cew_pixels(paths: list[str]) -> np.ndarray:
    import cv2

    out = np.empty((len(paths), SIDE, SIDE), np.uint8)
    for i, path in enumerate(paths):
        img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise DatasetError(f"cannot read {path}")
        out[i] = cv2.resize(img, (SIDE, SIDE), interpolation=cv2.INTER_AREA) if img.shape != (SIDE, SIDE) else img
    return out


def train_eyes(cfg: EyesTrainConfig) -> Manifest:
    if cfg.clips:
        return train_eyes_clips(cfg)
    return train_eyes_cew(cfg)


def train_eyes_clips(cfg: EyesTrainConfig) -> Manifest:
    """Three classes on CEW and the clips' patches, re-augmented every epoch (``augment``)."""
    import keras
    import tensorflow as tf

    from .eye_data import Patches

    tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
    tf.config.threading.set_inter_op_parallelism_threads(cfg.threads)
    keras.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    unreadable = LABELS3.index("unreadable")

    paths, y, stems = load_cew(cfg.data)
    tr, te = split_by_stem(stems, y, cfg.test_fraction, cfg.seed)
    cew = _cew_pixels(paths)
    clips = Patches.load(Path(cfg.clips))
    x_train = np.concatenate([cew[tr], clips.x])
    y_train = np.concatenate([y[tr], clips.y]).astype(np.int32)  # CEW's 0 closed / 1 open are LABELS3's
    test = Split("test", LABELS3, y[te].astype(np.int32), pixels=cew[te])
    counts = {lb: int((y_train == k).sum()) for k, lb in enumerate(LABELS3)}
    print(f"train: CEW {len(tr)} + clip patches {len(clips.y)} = {counts}; CEW test {len(te)} (face stems disjoint)")
    # balanced classes: the clips are mostly open eyes
    weights = {k: float(len(y_train) / (len(LABELS3) * max(1, n))) for k, n in enumerate(counts.values())}

    model = build_eye_model(len(LABELS3))
    steps = int(np.ceil(len(y_train) / cfg.batch))
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=cfg.epochs * steps, alpha=0.01)
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", metrics=["accuracy"])
    scale, offset = NORMALIZE
    t0 = time.time()
    for epoch in range(cfg.epochs):
        xa, ya = augment(x_train, y_train, rng, unreadable)
        xa = xa[..., None].astype(np.float32) * scale + offset
        model.fit(xa, ya, batch_size=cfg.batch, epochs=epoch + 1, initial_epoch=epoch, shuffle=True,
                  class_weight=weights, verbose=2)
    print(f"trained {model.count_params():,} parameters in {time.time() - t0:.0f} s")

    rep = Split("representative", LABELS3, y_train, pixels=x_train)
    model_bytes, manifest, float_accuracy = quantise_and_measure(
        model, eye_manifest(corners=True), rep, 1000, test, cfg.seed,
        "cew stem-held-out test (closed/open faces; 'unreadable' answers count as wrong)")
    manifest.metrics.clips_note = "per yaw band, eye size and night on held-out people: python bench/eye_views.py (bench/RESULTS.md)"
    from .eye_data import HELD_OUT, TRAIN_CLIPS

    manifest.training = {
        "data": "CEW (Closed Eyes In The Wild, Song et al. 2014), 24x24 grey eye patches; research use only; "
                "and eye patches cut by the daemon's crop contract from views of the shared clips (converter/eye_data.py)",
        "clips": sorted(TRAIN_CLIPS),
        "held_out_people": list(HELD_OUT),
        "split": f"{cfg.test_fraction:g} of CEW's face stems per class held out as test (seed {cfg.seed})",
        "counts": {"train": counts, "test": test.counts()},
        "architecture": f"{model.name}, {model.count_params()} parameters",
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "command": "python -m converter " + shlex.join(sys.argv[1:]),
    }
    return _write(cfg, model_bytes, manifest, float_accuracy)


def quantise_and_measure(model, float_manifest: Manifest, representative: Split, n_rep: int, test: Split,
                         seed: int, split_note: str) -> tuple[bytes, Manifest, float]:
    """The trained eye model as int8 (calibrated on ``n_rep`` patches of ``representative`` through
    the daemon's Preprocessor), its manifest and metrics on ``test``, and the float accuracy."""
    model_bytes = to_tflite(model, "int8", representative_faces(representative, float_manifest, n_rep, seed))
    manifest = float_manifest.model_copy(update={"quantization": quantization_of(model_bytes, "int8")})
    int8 = TfliteModel("<eye_state int8>", threads=1, content=model_bytes, manifest=manifest)
    floating = evaluate_keras(model, float_manifest, test)
    quantized = evaluate_tflite(int8, test)
    m = quantized.metrics
    metrics = Metrics(
        split=split_note,
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
    return model_bytes, manifest, floating.metrics.accuracy


def _write(cfg: EyesTrainConfig, model_bytes: bytes, manifest: Manifest, float_accuracy: float) -> Manifest:
    metrics = manifest.metrics
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tflite = out.with_suffix(".tflite")
    tflite.write_bytes(model_bytes)
    save_manifest(manifest, tflite)
    print(
        f"int8 test accuracy {metrics.accuracy:.4f} (float {float_accuracy:.4f}), recall "
        + ", ".join(f"{k} {v:.4f}" for k, v in metrics.per_class_recall.items())
        + f", agreement {metrics.float_agreement:.4f}, {len(model_bytes):,} bytes, {metrics.latency_ms:.3f} ms"
    )
    print(f"wrote {tflite} and {tflite.with_suffix('.json')}")
    return manifest


def train_eyes_cew(cfg: EyesTrainConfig) -> Manifest:
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

    model_bytes, manifest, float_accuracy = quantise_and_measure(
        model, eye_manifest(), train, 500, test, cfg.seed, "cew stem-held-out test")
    manifest.training = {
        "data": "CEW (Closed Eyes In The Wild, Song et al. 2014), 24x24 grey eye patches; research use only",
        "split": f"{cfg.test_fraction:g} of face stems per class held out as test (seed {cfg.seed}), both eyes of a face on one side",
        "counts": {"train": train.counts(), "test": test.counts()},
        "architecture": f"{model.name}, {model.count_params()} parameters",
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "command": "python -m converter " + shlex.join(sys.argv[1:]),
    }
    return _write(cfg, model_bytes, manifest, float_accuracy)


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
    p.add_argument("--clips", default=None, help="eye patches from converter eye-data (.npz): train closed/open/unreadable "
                                                 "on CEW and them, for the eye_corners crop")
