"""Distil a teacher (a float .tflite or .keras model, or the FER+ votes) into one student network, resumably.

The student learns from the teacher's soft targets together with the hard labels:

    loss = alpha · T² · KL(teacher_T ‖ student_T) + (1 - alpha) · CE(label, student)

where ``p_T`` is ``softmax(log p / T)``. The teacher's targets are its **mirror-averaged**
probabilities (the face and its mirror, as the daemon runs it); they are symmetric under the
horizontal flip, so the flip augmentation leaves them valid. They are computed once per split
and cached in the run folder (``teacher_<split>.npz``, keyed by the teacher file's SHA-256 and
the images), because the teacher costs several student passes per face.

The run folder has the same shape as ``converter train``'s: ``train_config.json``,
``log_distill.csv``, ``best.keras`` (selected on the validation split), ``best.json``,
``curves.png`` and a ``BackupAndRestore`` checkpoint every epoch, so a killed run continues
where it stopped when started again with the same ``--out``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import Split, file_sha256, images_key, tf_dataset
from .train import NORMALIZE, _best_so_far, _schedule, _verbose, plot_curves, run_callbacks, start_run

PHASE = "distill"


@dataclass
class DistillConfig:
    data: str
    out: str
    teacher: str | None = None  # a float .tflite/.keras giving probabilities (not needed with ferplus)
    init_tflite: str | None = None  # start from a member inside a float .tflite (e.g. the teacher)
    init_member: str = "member0"  # which network of init_tflite ("" for a single network)
    init: str | None = None  # or start from a .keras model's weights
    weights: str | None = None  # or from ImageNet (local .h5)
    input_size: int = 48
    backbone_size: int = 96
    alpha: float = 1.0  # MobileNetV2 width multiplier
    temperature: float = 3.0
    kd_weight: float = 0.8  # "alpha" of the distillation loss: the soft targets' share
    label_smoothing: float = 0.0
    batch: int = 64
    epochs: int = 6
    steps_per_epoch: int | None = None  # shorter "epochs" (checkpoint, validation, log) than one pass
    lr: float = 1e-4
    warmup_epochs: float = 0.2
    dropout: float = 0.3
    patience: int = 4
    seed: int = 1337
    train_split: str = "train"
    val_split: str = "test"
    limit: int | None = None  # smoke tests: use only N training images
    teacher_batch: int = 64
    # FER+ folder (or votes CSV): the soft targets are the ten annotators' vote distributions
    # instead of a teacher's, the hard label is their majority (see converter/ferplus.py)
    ferplus: str | None = None
    # a second teacher (OpenCV Zoo's RAF-DB MobileFaceNet, converter/peer_teacher.py): its soft
    # outputs on the aligned training faces, blended into the votes with this share
    peer: str | None = None
    peer_weight: float = 0.3
    yunet: str = "models/face_detection_yunet_2023mar.onnx"
    augment: str = "standard"  # or "camera" (converter.model.camera_augmentation)
    class_balance: str = "none"  # or "sqrt": each face's loss weighted by prior(majority)^-1/2
    # CK+48 folder: a second validation set (never trained on), measured each epoch; with
    # select "both" the kept model is the best mean of the two accuracies
    ckplus: str | None = None
    select: str = "val_accuracy"
    # with ferplus: the hard label of the (1 - kd_weight) term: the votes' majority, or
    # FER-2013's own label (what the face was searched for: posed intent, where people saw neutral)
    hard_labels: str = "majority"
    # "five_points": every face cut by its five YuNet points onto FER-2013's mean points, as the
    # daemon's crop contract says (converter/align.py, daemon/model/face_align.py)
    align: str = "box"
    # with align: this many extra copies of each training face turned in 3-D by 10-45 degrees,
    # 40 % of them in a near-infrared look (converter/face_views.py)
    turned_copies: int = 0
    # "agreement": each face's peer share is peer_weight times how much the peer and the votes
    # agree (the overlap of the two distributions, over its mean): the peer teaches where it is right
    peer_gate: str = "none"


def _teacher_predict(teacher: Path, batch: int):
    """A function: normalised (N, H, W, 1) float32 faces → teacher probabilities (N, C)."""
    if teacher.suffix == ".keras":
        import keras

        model = keras.models.load_model(teacher, compile=False)
        return lambda x: np.asarray(model.predict(x, batch_size=batch, verbose=0), np.float32)
    from ai_edge_litert.interpreter import Interpreter

    # one thread: the teacher runs beside other work; batches amortise the per-invoke cost
    it = Interpreter(str(teacher), num_threads=1)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    if inp["dtype"] != np.float32:
        raise ValueError(f"teacher {teacher} is quantised ({inp['dtype'].__name__} input); use its float model")
    shape = [None]

    def run(x: np.ndarray) -> np.ndarray:
        if shape[0] != x.shape[0]:
            it.resize_tensor_input(inp["index"], list(x.shape))
            it.allocate_tensors()
            shape[0] = x.shape[0]
        it.set_tensor(inp["index"], x)
        it.invoke()
        return np.array(it.get_tensor(out["index"]), np.float32)

    return run


def teacher_targets(cfg: DistillConfig, split: Split, out: Path) -> np.ndarray:
    """The teacher's mirror-averaged probabilities for every image of ``split`` (in order),
    from the cache when it was made by the same teacher on the same images."""
    if not cfg.teacher:
        raise ValueError("distillation needs a teacher: --teacher (a float .tflite or .keras) or --ferplus (the votes)")
    teacher = Path(cfg.teacher)
    if not teacher.is_file():
        raise FileNotFoundError(f"teacher model not found: {teacher}")
    key = {"teacher_sha256": file_sha256(teacher), "images": images_key(split), "input_size": cfg.input_size}
    cache = out / f"teacher_{split.name}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            if json.loads(str(z["key"])) == key:
                print(f"teacher targets for {split.name}: cached in {cache}")
                return z["probs"]
        print(f"teacher targets in {cache} are for another teacher or other images; recomputing")
    predict = _teacher_predict(teacher, cfg.teacher_batch)
    size = (cfg.input_size, cfg.input_size)
    # the same decoding and resizing as the training pipeline, without shuffling or augmentation
    ds = tf_dataset(split, size, 1, cfg.teacher_batch, False, cfg.seed, None, NORMALIZE)
    probs, t0 = [], time.time()
    for x, _ in ds.as_numpy_iterator():
        x = np.ascontiguousarray(x, np.float32)
        probs.append((predict(x) + predict(np.ascontiguousarray(x[:, :, ::-1]))) / 2)
    p = np.concatenate(probs).astype(np.float32)
    acc = float(np.mean(p.argmax(1) == split.y))
    print(f"teacher targets for {split.name}: {len(p)} faces in {time.time() - t0:.0f} s, teacher accuracy {acc:.4f}")
    np.savez_compressed(cache, probs=p, key=json.dumps(key))
    return p


def distill_loss(n: int, temperature: float, kd_weight: float, label_smoothing: float = 0.0,
                 class_weights: np.ndarray | None = None):
    """Keras loss on ``y_true = [teacher probabilities (n), one-hot label (n)]`` and the
    student's softmax output; ``class_weights`` (n,) weigh each face by its label's class."""
    import keras
    from keras import ops

    t = float(temperature)
    ce = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction=None)

    w = None if class_weights is None else ops.convert_to_tensor(np.asarray(class_weights, np.float32))

    def loss(y_true, y_pred):
        soft, hard = y_true[:, :n], y_true[:, n:]
        # log p is the logits up to a constant, so softmax(log p / T) is the tempered softmax
        log_s = ops.log_softmax(ops.log(ops.clip(y_pred, 1e-7, 1.0)) / t, axis=-1)
        p_t = ops.softmax(ops.log(ops.clip(soft, 1e-7, 1.0)) / t, axis=-1)
        kl = ops.sum(p_t * (ops.log(ops.clip(p_t, 1e-7, 1.0)) - log_s), axis=-1)
        per_face = kd_weight * t * t * kl + (1.0 - kd_weight) * ce(hard, y_pred)
        return per_face if w is None else per_face * ops.sum(hard * w, axis=-1)

    loss.__name__ = "distill_loss"
    return loss


def _metrics(n: int) -> list:
    from keras import ops

    def accuracy(y_true, y_pred):  # against the labels
        return ops.cast(ops.argmax(y_true[:, n:], -1) == ops.argmax(y_pred, -1), "float32")

    def teacher_agreement(y_true, y_pred):
        return ops.cast(ops.argmax(y_true[:, :n], -1) == ops.argmax(y_pred, -1), "float32")

    return [accuracy, teacher_agreement]


def _with_targets(ds_of_index, soft: np.ndarray, y: np.ndarray, n: int):
    """Swap the dataset's labels (here: image indices) for [teacher probabilities, one-hot]."""
    import tensorflow as tf

    soft_t, y_t = tf.constant(soft), tf.constant(y)

    def targets(x, idx):
        return x, tf.concat([tf.gather(soft_t, idx), tf.one_hot(tf.gather(y_t, idx), n)], axis=-1)

    return ds_of_index.map(targets)


def peer_shares(dist: np.ndarray, peer: np.ndarray, peer_weight: float, gate: str) -> np.ndarray:
    """(N, 1) the peer's share of each face's soft target: ``peer_weight`` for all, or with gate
    "agreement" scaled by the overlap of the peer's and the votes' distributions (sum of the
    element-wise minimum: 1 where they match, 0 where the peer names what nobody voted for),
    over its mean, capped at twice ``peer_weight`` and at 0.9."""
    if gate == "none":
        return np.full((len(dist), 1), peer_weight, np.float32)
    if gate != "agreement":
        raise ValueError(f"unknown peer gate {gate!r}")
    overlap = np.minimum(dist, peer).sum(axis=1)
    w = peer_weight * overlap / max(float(overlap.mean()), 1e-6)
    return np.minimum(w, min(2.0 * peer_weight, 0.9)).astype(np.float32)[:, None]


def _ferplus(split: Split, ferplus: str, peer: np.ndarray | None = None, peer_weight: float = 0.0,
             peer_gate: str = "none") -> tuple[Split, np.ndarray, np.ndarray]:
    """The split restricted to the faces FER+ can teach, labelled with the votes' majority
    (argmax of the distribution on a tie), the vote distributions as soft targets (blended
    with a peer's probabilities for the whole split when one is given), and where each kept
    face is in ``split``."""
    from .ferplus import describe, load_ferplus

    t = load_ferplus(split, ferplus)
    print(describe(t))
    y = np.where(t.majority >= 0, t.majority, t.dist.argmax(1)).astype(np.int32)
    soft = t.dist
    if peer is not None:
        w = peer_shares(t.dist, peer[t.index], peer_weight, peer_gate)
        soft = ((1.0 - w) * t.dist + w * peer[t.index]).astype(np.float32)
        print(f"peer share per face: mean {w.mean():.3f}, p10 {np.percentile(w, 10):.3f}, p90 {np.percentile(w, 90):.3f}")
    return dataclasses.replace(t.split, y=y), soft, t.index


def balance_weights(y: np.ndarray, n: int) -> np.ndarray:
    """(n,) loss weights prior(c)^-1/2, scaled so the training faces' mean weight is 1: disgust
    (1.8 % of the votes' majorities) counts about 4× a neutral face, not 18×."""
    prior = np.bincount(y, minlength=n).astype(np.float64) + 1.0
    w = (prior / prior.sum()) ** -0.5
    return (w / (w[y].mean())).astype(np.float32)


class _SecondValidation:
    """Keras callback: accuracy and per-class recall on a second validation set (CK+), logged as
    ``val_ckplus_accuracy`` / ``val_ckplus_min_recall`` and, with ``val_accuracy``, their mean
    ``val_both``; every epoch's weights are kept (``epoch_NN.weights.h5``) to choose among."""

    def __new__(cls, split: Split, out: Path):
        import keras

        from .evaluate import confusion_matrix, metrics_from_confusion

        x = np.stack([split.image(i) for i in range(len(split))])[..., None].astype(np.float32)
        x = x * NORMALIZE[0] + NORMALIZE[1]

        class SecondValidation(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                p = self.model.predict(x, verbose=0) + self.model.predict(x[:, :, ::-1], verbose=0)
                m = metrics_from_confusion(confusion_matrix(split.y, p.argmax(1), len(split.labels)), split.labels)
                rec = {k: round(v, 3) for k, v in zip(m.labels, m.recall) if v is not None}
                if logs is not None:
                    logs["val_ckplus_accuracy"] = m.accuracy
                    logs["val_ckplus_min_recall"] = min(rec.values())
                    logs["val_both"] = (m.accuracy + float(logs.get("val_accuracy", 0.0))) / 2
                print(f"\nepoch {epoch + 1}: CK+ accuracy {m.accuracy:.4f}, recall {rec}", flush=True)
                self.model.save_weights(str(out / f"epoch_{epoch + 1:02d}.weights.h5"))

        return SecondValidation()


def build_student(cfg: DistillConfig, n: int):
    from .model import build_model

    model, backbone = build_model(
        "mobilenetv2", n, cfg.input_size, 1, cfg.backbone_size, cfg.alpha, cfg.weights, cfg.dropout
    )
    if cfg.init_tflite:
        from .tflite_weights import load_mobilenetv2_from_tflite

        load_mobilenetv2_from_tflite(model, cfg.init_tflite, cfg.init_member)
        print(f"student starts from {cfg.init_member or 'the network'} of {cfg.init_tflite}")
        undo_output_balance(model, Path(cfg.init_tflite).with_suffix(".json"))
    elif cfg.init:
        if not Path(cfg.init).is_file():
            raise FileNotFoundError(f"--init model not found: {cfg.init}")
        model.load_weights(cfg.init)
        print(f"student starts from the weights of {cfg.init}")
    return model, backbone


def undo_output_balance(model, manifest: Path) -> None:
    """A network read back from a file converted with ``--balance`` has the logit offsets in its
    classifier's bias (``output_balance`` in its manifest): take them out, so training starts
    from the network as it learnt and the conversion's balance is not applied twice."""
    if not manifest.is_file():
        return
    offsets = (json.loads(manifest.read_text()).get("output_balance") or {}).get("logit_offsets")
    if offsets:
        layer = model.get_layer("probs")
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, (bias - np.asarray(offsets, bias.dtype)).astype(bias.dtype)])
        print(f"output balance of {manifest.name} taken out of the classifier: {offsets}")


def freeze_batchnorm(model) -> int:
    """Every BatchNormalization in inference mode, with its statistics and affine terms fixed.

    Keras 3 runs a nested backbone's BatchNorm on batch statistics while training even when the
    backbone is called with ``training=False``; only a non-trainable BatchNorm uses its moving
    statistics. A student read back from TFLite has identity BatchNorms (the statistics are
    folded into the kernels), which batch statistics would wreck: training accuracy falls from
    84 % to 25 % on the first batch. Convolution kernels and the classifier stay trainable."""
    from keras import layers

    count = 0
    stack = [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
            count += 1
        stack.extend(getattr(layer, "layers", []))
    return count


def aligned_splits(cfg: DistillConfig, train: Split, val: Split, template) -> tuple[Split, Split]:
    """Both splits cut by their five points (the daemon's crop), as pixel splits."""
    from .align import aligned

    t0 = time.time()
    train, val = aligned(train, template, cfg.input_size), aligned(val, template, cfg.input_size)
    print(f"aligned {len(train)} + {len(val)} faces in {time.time() - t0:.0f} s")
    return train, val


def with_turned_copies(cfg: DistillConfig, train: Split, soft: np.ndarray, template) -> tuple[Split, np.ndarray]:
    """The aligned training split with ``cfg.turned_copies`` turned (and near-infrared) copies of
    every face appended, each with its face's targets."""
    from .face_views import turned_copies

    t0 = time.time()
    copies = [turned_copies(train.pixels, template, cfg.seed + k) for k in range(cfg.turned_copies)]
    k = 1 + cfg.turned_copies
    out = dataclasses.replace(train, pixels=np.concatenate([train.pixels, *copies]), y=np.tile(train.y, k))
    print(f"{cfg.turned_copies} turned cop{'y' if k == 2 else 'ies'} of each of {len(train)} faces in {time.time() - t0:.0f} s")
    return out, np.tile(soft, (k, 1))


def distill(cfg: DistillConfig) -> Path:
    """Run (or resume) distillation; return the path of the best student."""
    import keras

    out, train_split, val_split = start_run(cfg)
    n = len(train_split.labels)
    template = None
    if cfg.align == "five_points":
        from .align import fer_template, with_points

        template = fer_template(train_split, cfg.yunet)
        train_split, val_split = with_points(train_split, cfg.yunet), with_points(val_split, cfg.yunet)
        print(f"faces cut by five points onto {template}")

    if cfg.ferplus:
        peer = None
        if cfg.peer:
            from .peer_teacher import peer_targets

            peer = peer_targets(train_split, cfg.peer, cfg.yunet, out / f"peer_{train_split.name}.npz")
        original = train_split.y
        train_split, soft_train, kept = _ferplus(train_split, cfg.ferplus, peer, cfg.peer_weight, cfg.peer_gate)
        if cfg.hard_labels == "original":
            train_split = dataclasses.replace(train_split, y=original[kept])
            print(f"hard labels: FER-2013's own, {100 * np.mean(train_split.y == soft_train.argmax(1)):.1f} % "
                  "of them the soft targets' argmax")
        val_split, soft_val, _ = _ferplus(val_split, cfg.ferplus)
    else:
        soft_train = teacher_targets(cfg, train_split, out)
        soft_val = teacher_targets(cfg, val_split, out)
    if soft_train.shape[1] != n:
        raise ValueError(f"teacher {cfg.teacher} gives {soft_train.shape[1]} classes, the data has {n}")

    if template is not None:
        train_split, val_split = aligned_splits(cfg, train_split, val_split, template)
        if cfg.turned_copies:
            train_split, soft_train = with_turned_copies(cfg, train_split, soft_train, template)

    from .model import augmentation, camera_augmentation

    augment = {"standard": augmentation, "camera": camera_augmentation,
               "aligned": lambda seed: camera_augmentation(seed, aligned=True)}[cfg.augment](cfg.seed)
    size = (cfg.input_size, cfg.input_size)

    def indexed(split: Split) -> Split:  # labels replaced by indices, to look the targets up
        return dataclasses.replace(split, y=np.arange(len(split), dtype=np.int32))

    train_ds = _with_targets(
        tf_dataset(indexed(train_split), size, 1, cfg.batch, True, cfg.seed, augment, NORMALIZE),
        soft_train, train_split.y, n,
    )
    val_ds = _with_targets(
        tf_dataset(indexed(val_split), size, 1, cfg.batch, False, cfg.seed, None, NORMALIZE), soft_val, val_split.y, n
    )
    steps = cfg.steps_per_epoch or math.ceil(len(train_split) / cfg.batch)
    if cfg.steps_per_epoch:  # the data repeats; each "epoch" is steps_per_epoch batches of it
        train_ds = train_ds.repeat()

    model, backbone = build_student(cfg, n)
    freeze_batchnorm(model)
    opt = keras.optimizers.AdamW(_schedule(cfg, steps), weight_decay=1e-4)
    weights = balance_weights(train_split.y, n) if cfg.class_balance == "sqrt" else None
    if weights is not None:
        print(f"class weights: {dict(zip(train_split.labels, np.round(weights, 2).tolist()))}")
    model.compile(opt, distill_loss(n, cfg.temperature, cfg.kd_weight, cfg.label_smoothing, weights), metrics=_metrics(n))
    extra = []
    if cfg.ckplus:
        from .datasets import load_ckplus

        ck = load_ckplus(cfg.ckplus, train_split.labels)
        if template is not None:
            from .align import aligned, with_points

            ck = aligned(with_points(ck, cfg.yunet), template, cfg.input_size)
        extra.append(_SecondValidation(ck, out))
    best = out / "best.keras"
    if _best_so_far(out, cfg.select) is None:  # the starting point is the bar to beat (a member: already good)
        start = model.evaluate(val_ds, verbose=0, return_dict=True)
        print(f"student before distillation: val accuracy {start['accuracy']:.4f}, "
              f"teacher agreement {start['teacher_agreement']:.4f}")
        (out / "start.json").write_text(json.dumps(start) + "\n")
    t0 = time.time()
    model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, steps_per_epoch=cfg.steps_per_epoch,
              callbacks=extra + run_callbacks(out, PHASE, cfg.patience, cfg.select), verbose=_verbose())
    print(f"distillation done in {time.time() - t0:.0f} s")
    plot_curves(out, phases=(PHASE,))
    (out / "DONE").write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    return best


def add_parser(sub) -> None:
    d = DistillConfig(data="", out="")
    p = sub.add_parser("distill", help="train one student on the ensemble's soft targets and the labels (resumable)")
    p.add_argument("--data", required=True, help="fer2013.csv or a folder root with <split>/<class>/*.jpg")
    p.add_argument("--out", required=True, help="run folder: teacher-target cache, checkpoints, logs, best.keras")
    p.add_argument("--teacher", default=d.teacher, help="float teacher (.tflite or .keras) giving probabilities")
    p.add_argument("--init-tflite", default=None, help="start the student from a network inside this float .tflite")
    p.add_argument("--init-member", default=d.init_member, help="which network of --init-tflite ('' for a single one)")
    p.add_argument("--init", default=None, help="start the student from this .keras model's weights")
    p.add_argument("--weights", default=None, help="local ImageNet .h5 for MobileNetV2 (no --init*)")
    p.add_argument("--backbone-size", type=int, default=d.backbone_size)
    p.add_argument("--alpha", type=float, default=d.alpha, help="MobileNetV2 width multiplier")
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--kd-weight", type=float, default=d.kd_weight, help="share of the soft-target loss (the 'alpha' of KD)")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="batches per epoch (default: one pass over the data); shorter epochs checkpoint and validate more often")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (cosine decay)")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--train-split", default=d.train_split)
    p.add_argument("--val-split", default=d.val_split)
    p.add_argument("--limit", type=int, default=None, help="use only N training images (smoke tests)")
    p.add_argument("--ferplus", default=None,
                   help="FER+ votes folder: learn the annotators' vote distributions (use --temperature 1 --kd-weight 1 "
                        "for Barsoum et al.'s probability mode); accuracy is then against their majority")
    p.add_argument("--peer", default=None, help="a second teacher: OpenCV Zoo's RAF-DB MobileFaceNet .onnx (with --ferplus)")
    p.add_argument("--peer-weight", type=float, default=d.peer_weight, help="the peer's share of the soft targets")
    p.add_argument("--yunet", default=d.yunet, help="YuNet .onnx aligning the faces for the peer")
    p.add_argument("--augment", choices=("standard", "camera", "aligned"), default=d.augment,
                   help="camera: 3/4 views, infrared and low-light looks, blur, noise, glasses (converter.model); "
                        "aligned: the same looks with the geometry of landmark jitter only (for --align five_points)")
    p.add_argument("--align", choices=("box", "five_points"), default=d.align,
                   help="five_points: every face cut by its five YuNet points onto FER-2013's mean points (the daemon's crop)")
    p.add_argument("--turned-copies", type=int, default=d.turned_copies,
                   help="with --align: extra copies of each training face turned in 3-D (10-45 degrees), 40 %% near-infrared")
    p.add_argument("--peer-gate", choices=("none", "agreement"), default=d.peer_gate,
                   help="agreement: each face's peer share scaled by how much the peer and the votes agree")
    p.add_argument("--hard-labels", choices=("majority", "original"), default=d.hard_labels,
                   help="with --ferplus: the hard label of the (1 - kd-weight) term: the votes' majority or FER-2013's own")
    p.add_argument("--class-balance", choices=("none", "sqrt"), default=d.class_balance)
    p.add_argument("--ckplus", default=None, help="CK+48 folder: a second validation set (never trained on)")
    p.add_argument("--select", choices=("val_accuracy", "val_both"), default=d.select,
                   help="what chooses best.keras: PublicTest accuracy, or its mean with CK+'s (needs --ckplus)")
