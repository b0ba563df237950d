"""Quantisation-aware fine-tuning (``python -m converter qat``): an int8 model that agrees with
its float model.

Post-training int8 changes the class of 5–6 % of PublicTest faces for our MobileNetV2s (rounding
through 52 layers; only ~1 % of faces are near-ties at the output), and no calibration set or
per-channel setting changed that (MODEL_CARD.md). Here the network is fine-tuned with int8
rounding simulated in its forward pass, so its weights settle where the int8 arithmetic gives
the float model's answers:

1. the float model is rebuilt from a float TFLite file (:mod:`converter.qat_graph`); it is also
   the teacher;
2. it is annotated for 8-bit QAT with the TensorFlow Model Optimization toolkit (tfmot),
   per-channel weights;
3. the activation ranges are calibrated: the running mean of each batch's min and max over
   ``calib_batches`` augmented training batches (tfmot would otherwise start every range at ±6
   and move it by 0.1 % a step);
4. it is fine-tuned to the float model's own probabilities (KL divergence, T = 1) on augmented
   training faces, optionally mixed with the labels (``label_weight``), the ranges following an
   EMA (``ema_decay``);
5. it is converted to int8 (no representative set: the ranges are the trained ones) and measured
   on the split the way the daemon runs it, against the float model (``float_agreement``) and
   against its own fake-quant graph (``qat_agreement``), and a manifest is written beside it.

Two corrections to tfmot 0.8, applied while this command runs (and pinned by the tests):

* its depthwise weight quantiser is "per channel" over the kernel's last axis, which for a
  ``DepthwiseConv2D`` is the depth multiplier (1): one range for all channels. With BatchNorm
  folded in, channel ranges differ by 20× and one range destroys the small channels; TFLite
  itself quantises depthwise kernels per channel. :class:`DepthwiseWeightsQuantizer` does the same.
* its ``LayerReLUQuantize`` transform (meant for Add → ReLU) gives a layer followed by a ReLU a
  no-op config, which also leaves a convolution's *weights* unquantised, so the QAT graph
  emulated float convolutions while TFLite ran int8 ones (95 % agreement between the two).
  Here only the convolution's output quantiser is dropped (TFLite fuses the ReLU6).

Resumable: the weights and the step are saved every ``checkpoint_every`` steps (``qat.weights.h5``,
``state.json``); started again with the same ``--out``, a run continues from its last checkpoint
(the optimizer's moments restart). The log is ``log_qat.csv``.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import tf_dataset
from .train import NORMALIZE, start_run

PHASE = "qat"


@dataclass
class QatConfig:
    data: str
    out: str
    source: str = "models/emotion_wild_fp16.tflite"  # a float TFLite MobileNetV2 (or in-graph ensemble)
    members: str = "all"  # comma-separated member names inside source, or "all"
    model_out: str | None = None  # output stem (default <out>/emotion_qat)
    steps: int = 600
    calib_batches: int = 40
    batch: int = 64
    lr: float = 2e-5  # peak; cosine decay to lr/10 over the steps
    label_weight: float = 0.0  # share of the label cross-entropy in the loss (the rest: KL to the float model)
    ema_decay: float = 0.99
    checkpoint_every: int = 100
    seed: int = 1337
    limit: int | None = None  # training images (smoke tests)
    val_split: str = "test"  # the split the int8 model is measured on
    eval_limit: int | None = None
    train_split: str = "train"
    flip_average: bool = True
    margin: float = 0.1
    task: str = "emotion"
    latency_runs: int = 200


# ---------------------------------------------------------------- tfmot: quantisers and fixes


@functools.lru_cache(maxsize=1)
def _tfmot_fixes():
    """Patch tfmot once per process (see the module docstring); returns the depthwise
    QuantizeConfig class and the variable that holds the moving-average quantisers' EMA decay."""
    import tensorflow as tf
    import tf_keras as keras
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops, quantizers
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as qc,
        default_8bit_quantize_registry as reg,
        default_8bit_transforms as tr,
    )

    class DepthwiseWeightsQuantizer(quantizers.LastValueQuantizer):
        """Per-channel ranges for a depthwise kernel [h, w, C, 1]: over C, as TFLite does."""

        def __init__(self):
            super().__init__(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)

        def build(self, tensor_shape, name, layer):
            init = keras.initializers.Constant
            lo = layer.add_weight(name + "_min", shape=(tensor_shape[-2],), initializer=init(-6.0), trainable=False)
            hi = layer.add_weight(name + "_max", shape=(tensor_shape[-2],), initializer=init(6.0), trainable=False)
            return {"min_var": lo, "max_var": hi}

        def __call__(self, inputs, training, weights, **kwargs):
            x = tf.transpose(inputs, (0, 1, 3, 2))
            return tf.transpose(super().__call__(x, training, weights, **kwargs), (0, 1, 3, 2))

    class DepthwiseQuantizeConfig(reg.Default8BitQuantizeConfig):
        """The depthwise kernel per channel; no output quantiser (the ReLU6 after it has one)."""

        def __init__(self, weight_attrs=("depthwise_kernel",), activation_attrs=(), quantize_output=False):
            super().__init__(list(weight_attrs), list(activation_attrs), quantize_output)
            self.weight_quantizer = DepthwiseWeightsQuantizer()

    def relu_replacement(self, match_layer):
        node = match_layer.input_layers[0]
        cls = node.layer["class_name"]
        if cls == "Conv2D":
            node.metadata["quantize_config"] = reg.Default8BitConvQuantizeConfig(["kernel"], [], False)
        elif cls == "DepthwiseConv2D":
            node.metadata["quantize_config"] = DepthwiseQuantizeConfig()
        elif cls == "Dense":
            node.metadata["quantize_config"] = reg.Default8BitQuantizeConfig(["kernel"], [], False)
        else:  # Add → ReLU: no quantiser between them, as tfmot intends
            node.metadata["quantize_config"] = qc.NoOpQuantizeConfig()
        return match_layer

    custom = tr.LayerReLUQuantize.custom_objects
    tr.LayerReLUQuantize.replacement = relu_replacement
    tr.LayerReLUQuantize.custom_objects = lambda self: {
        **custom(self), "Default8BitConvQuantizeConfig": reg.Default8BitConvQuantizeConfig,
        "Default8BitQuantizeConfig": reg.Default8BitQuantizeConfig, "DepthwiseQuantizeConfig": DepthwiseQuantizeConfig,
    }

    # The moving-average quantisers hard-code an EMA decay of 0.999; route it through a
    # variable so calibration can take a running mean and training a faster EMA.
    decay = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="qat_ema_decay")
    moving_avg = quant_ops.MovingAvgQuantize

    def moving_avg_with_decay(*args, **kwargs):
        kwargs["ema_decay"] = decay
        return moving_avg(*args, **kwargs)

    quant_ops.MovingAvgQuantize = moving_avg_with_decay
    return DepthwiseQuantizeConfig, decay


def quantize_model(float_model):
    """The QAT (fake-quant) model of ``float_model``, starting from its weights."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as qc,
    )

    depthwise_config, _ = _tfmot_fixes()
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def clone(layer):
        if isinstance(layer, keras.layers.Resizing):  # same-scale op: TFLite keeps its input's range
            return annotate(layer, quantize_config=qc.NoOpQuantizeConfig())
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            return annotate(layer, quantize_config=depthwise_config())
        return annotate(layer)

    annotated = keras.models.clone_model(float_model, clone_function=clone)
    annotated.set_weights(float_model.get_weights())
    with tfmot.quantization.keras.quantize_scope({"DepthwiseQuantizeConfig": depthwise_config}):
        return tfmot.quantization.keras.quantize_apply(annotated)


def set_ema_decay(value: float) -> None:
    _tfmot_fixes()[1].assign(float(value))


# ---------------------------------------------------------------- the run


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _lr_at(cfg: QatConfig, step: int) -> float:
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / max(1, cfg.steps))))


def fine_tune(cfg: QatConfig):
    """Calibrate and fine-tune (resuming from ``cfg.out``); returns (float model, QAT model,
    validation split, member names)."""
    import tensorflow as tf
    import tf_keras as keras

    from .model import augmentation
    from .qat_graph import build_from_tflite, inspect_source

    src = inspect_source(cfg.source)
    members = src.members if cfg.members == "all" else [m.strip() for m in cfg.members.split(",")]
    out, train, val = start_run(cfg)
    if len(train.labels) != src.n_classes:
        raise ValueError(f"{cfg.source} has {src.n_classes} outputs but {cfg.data} has {len(train.labels)} classes")

    float_model = build_from_tflite(cfg.source, members)
    qat_model = quantize_model(float_model)
    state_file, weights_file = out / "state.json", out / "qat.weights.h5"
    step = 0
    if state_file.is_file() and weights_file.is_file():
        step = int(json.loads(state_file.read_text())["step"])
        qat_model.load_weights(weights_file)
        print(f"resumed at step {step} of {cfg.steps} from {weights_file}")

    h, w, _ = src.input_shape
    # a different shuffle after a resume, so the steps left do not replay the first batches
    ds = tf_dataset(train, (h, w), 1, cfg.batch, True, cfg.seed + step, augmentation(cfg.seed + step), NORMALIZE)
    batches = iter(ds.repeat())
    optimizer = keras.optimizers.Adam(cfg.lr)

    @tf.function
    def observe(x):
        qat_model(x, training=True)

    @tf.function
    def train_step(x, y):
        teacher = float_model(x, training=False)
        with tf.GradientTape() as tape:
            p = tf.clip_by_value(qat_model(x, training=True), 1e-7, 1.0)
            t = tf.clip_by_value(teacher, 1e-7, 1.0)
            kl = tf.reduce_mean(tf.reduce_sum(t * (tf.math.log(t) - tf.math.log(p)), axis=1))
            ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, p))
            loss = (1.0 - cfg.label_weight) * kl + cfg.label_weight * ce
        grads = tape.gradient(loss, qat_model.trainable_variables)
        optimizer.apply_gradients(zip(grads, qat_model.trainable_variables))
        agree = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(teacher, 1), tf.argmax(p, 1)), tf.float32))
        return loss, agree

    def checkpoint(at: int) -> None:
        tmp = out / "qat.tmp.weights.h5"  # the suffix picks the format: keep ".weights.h5"
        qat_model.save_weights(tmp)
        os.replace(tmp, weights_file)
        _atomic_write(state_file, json.dumps({"step": at, "time": time.time()}) + "\n")

    if step == 0:
        t0 = time.time()
        for k in range(cfg.calib_batches):
            set_ema_decay(k / (k + 1.0))  # running mean of the batch ranges
            observe(next(batches)[0])
        print(f"calibrated the activation ranges on {cfg.calib_batches} batches ({time.time() - t0:.0f} s)")
        checkpoint(0)
    set_ema_decay(cfg.ema_decay)
    log_path = out / f"log_{PHASE}.csv"
    new_log = not log_path.is_file()
    t0, window = time.time(), []
    with log_path.open("a", newline="") as fh:
        log = csv.writer(fh)
        if new_log:
            log.writerow(["step", "loss", "batch_agreement", "lr", "seconds"])
        while step < cfg.steps:
            optimizer.learning_rate.assign(_lr_at(cfg, step))
            x, y = next(batches)
            loss, agree = train_step(x, y)
            step += 1
            window.append((float(loss), float(agree)))
            if step % 25 == 0 or step == cfg.steps:
                ml, ma = np.mean(window, axis=0)
                window = []
                log.writerow([step, f"{ml:.5f}", f"{ma:.4f}", f"{_lr_at(cfg, step):.3g}", f"{time.time() - t0:.0f}"])
                fh.flush()
                print(f"step {step}/{cfg.steps}: loss {ml:.4f}, agreement with the float model on the batch {ma:.3f}", flush=True)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                checkpoint(step)
    return float_model, qat_model, val, members


def qat(cfg: QatConfig) -> Path:
    """Fine-tune, convert and measure; returns the int8 model's path."""
    from daemon.model.manifest import load_manifest, manifest_path, save_manifest

    from .convert import convert_variant, format_table
    from .evaluate import agreement, evaluate_keras, float_manifest, limit_split

    float_model, qat_model, val, members = fine_tune(cfg)
    split = limit_split(val, cfg.eval_limit)
    base = float_manifest((None, *float_model.input_shape[1:]), split.labels, cfg.margin, cfg.task)
    if cfg.flip_average:
        base = base.model_copy(update={"flip_average": True})
    t0 = time.time()
    reference = evaluate_keras(float_model, base, split)
    emulated = evaluate_keras(qat_model, base, split)
    print(f"float model: accuracy {reference.metrics.accuracy:.4f}; fake-quant graph: {emulated.metrics.accuracy:.4f} "
          f"on {len(split)} faces ({time.time() - t0:.0f} s)")
    stem = Path(cfg.model_out) if cfg.model_out else Path(cfg.out) / "emotion_qat"
    provenance = json.loads((Path(cfg.out) / "train_config.json").read_text())
    provenance["members_resolved"] = members
    provenance["float_reference"] = {
        "file": str(cfg.source), "accuracy": reference.metrics.accuracy, "macro_recall": reference.metrics.macro_recall,
    }
    extra = {
        "source_model": Path(cfg.source).name,
        "data": {"path": str(cfg.data), "split": cfg.val_split, "representative": "none: ranges trained by QAT"},
        "training": provenance,
    }
    result = convert_variant(
        qat_model, "int8", base, split, reference.predictions, stem, None, extra, latency_runs=cfg.latency_runs, qat=True,
    )
    # how closely TFLite's int8 kernels follow the fake-quant graph the fine-tuning optimised
    qat_agree = agreement(result.predictions, emulated.predictions)
    m = load_manifest(result.path)
    m.training["int8_vs_fake_quant_agreement"] = qat_agree
    save_manifest(m, result.path)
    print(f"int8: wrote {result.path} and {manifest_path(result.path).name}")
    print()
    print(format_table([result], reference.metrics))
    print(f"int8 agreement with the float model {result.float_agreement:.4f}, with the fake-quant graph {qat_agree:.4f}")
    (Path(cfg.out) / "DONE").write_text(f"{time.time():.0f}\n")
    return result.path


def add_parser(sub) -> None:
    d = QatConfig(data="", out="")
    p = sub.add_parser("qat", help="quantisation-aware fine-tuning of a float TFLite MobileNetV2 into int8 (resumable)")
    p.add_argument("--data", required=True, help="fer2013.csv or a folder root with <split>/<class>/*.jpg")
    p.add_argument("--out", required=True, help="run folder: weights, state, log")
    p.add_argument("--source", default=d.source, help="float TFLite file (float32 or float16) to fine-tune")
    p.add_argument("--members", default=d.members, help="member names inside --source (member0,member1,...) or all")
    p.add_argument("--model-out", default=None, help="output stem of the int8 model (default <out>/emotion_qat)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--calib-batches", type=int, default=d.calib_batches)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--label-weight", type=float, default=d.label_weight)
    p.add_argument("--ema-decay", type=float, default=d.ema_decay)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--limit", type=int, default=None, help="use only N training images (smoke tests)")
    p.add_argument("--val-split", default=d.val_split, help="split the int8 model is measured on")
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--no-flip-average", dest="flip_average", action="store_false")
    p.add_argument("--latency-runs", type=int, default=d.latency_runs)
