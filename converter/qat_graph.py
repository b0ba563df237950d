"""A float TFLite MobileNetV2 classifier (one network or an in-graph ensemble) rebuilt as a flat
``tf_keras`` graph with BatchNorm folded, for quantisation-aware fine-tuning.

Why ``tf_keras`` and not the Keras 3 the rest of the converter uses: the TensorFlow Model
Optimization toolkit (the QAT tool whose fake-quant graphs the TFLite converter understands) only
wraps Keras 2 layers. Why BatchNorm folded: TFLite folds it before quantising, so fine-tuning the
folded convolutions trains exactly the weights that get quantised; with BatchNorm kept, tfmot's
Conv → BatchNorm patterns would emulate a different graph. Why flat: tfmot cannot quantise a
model nested in a model, so the ensemble's members are laid out side by side in one graph.

The channel counts are read from the file's kernels, so any width multiplier works; the layer
pattern (strides, residuals) is MobileNetV2's own, and the rebuilt float graph is checked against
the TFLite file by the tests (within 1e-3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tflite_weights import TfliteWeightsError, conv_weights, keras_kernel

# (expansion, stride) of MobileNetV2's 17 inverted-residual blocks; block 0 has no expansion
BLOCKS = [(1, 1), (6, 2), (6, 1), (6, 2), (6, 1), (6, 1), (6, 2), (6, 1), (6, 1), (6, 1),
          (6, 1), (6, 1), (6, 1), (6, 2), (6, 1), (6, 1), (6, 1)]


@dataclass
class SourceGraph:
    """What the float file holds: its members' names (``""`` for one network), the size the
    face is upsampled to inside the graph, and the input (height, width, channels)."""

    members: list[str]
    backbone_size: int
    input_shape: tuple[int, int, int]
    n_classes: int


def inspect_source(path: str | Path) -> SourceGraph:
    """Read the members, backbone size and input of a float MobileNetV2 TFLite file."""
    from ai_edge_litert.interpreter import Interpreter

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TFLite file not found: {path}")
    it = Interpreter(str(path))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    if inp["dtype"] != np.float32:
        raise TfliteWeightsError(f"{path} is not a float model (input {inp['dtype'].__name__}); give the float32 or float16 file")
    names = [t["name"] for t in it.get_tensor_details()]
    members = sorted({m for n in names for m in re.findall(r"member\d+", n)}, key=lambda m: int(m[6:]))
    size = int(inp["shape"][1])
    for o in it._get_ops_details():  # the public API has no op list
        if o["op_name"] == "RESIZE_BILINEAR":
            size = int(it.get_tensor(int(o["inputs"][1]))[0])
            break
    return SourceGraph(members or [""], size, tuple(int(v) for v in inp["shape"][1:]), int(out["shape"][-1]))


def _backbone(x, convs: list[tuple[str, np.ndarray, np.ndarray]], prefix: str):
    """MobileNetV2 on ``x`` with the channel counts of ``convs``; returns (output, conv layers
    in graph order)."""
    from tf_keras import layers

    expected = 2 + sum(3 if e != 1 else 2 for e, _ in BLOCKS)
    if len(convs) != expected:
        raise TfliteWeightsError(f"{len(convs)} convolutions, MobileNetV2 has {expected}")
    it = iter(convs)
    made = []

    def conv(x, k: int, stride: int, name: str):
        op, w, _ = next(it)
        if op == "DEPTHWISE_CONV_2D":
            lay = layers.DepthwiseConv2D(k, strides=stride, padding="same", name=prefix + name)
        else:  # TFLite kernel [out, h, w, in]
            lay = layers.Conv2D(w.shape[0], k, strides=stride, padding="same", name=prefix + name)
        made.append(lay)
        return lay(x)

    x = conv(x, 3, 2, "Conv1")
    x = layers.ReLU(6.0, name=prefix + "Conv1_relu")(x)
    for i, (expansion, stride) in enumerate(BLOCKS):
        p = f"block_{i}_" if i else "expanded_conv_"
        shortcut = x
        if expansion != 1:
            x = conv(x, 1, 1, p + "expand")
            x = layers.ReLU(6.0, name=prefix + p + "expand_relu")(x)
        x = conv(x, 3, stride, p + "depthwise")
        x = layers.ReLU(6.0, name=prefix + p + "depthwise_relu")(x)
        x = conv(x, 1, 1, p + "project")
        if stride == 1 and shortcut.shape[-1] == x.shape[-1]:
            x = layers.Add(name=prefix + p + "add")([shortcut, x])
    x = conv(x, 1, 1, "Conv_1")
    x = layers.ReLU(6.0, name=prefix + "out_relu")(x)
    return x, made


def build_from_tflite(path: str | Path, members: list[str] | None = None):
    """The float ``tf_keras`` model of ``path``: face → upsample → grey to RGB → each member's
    MobileNetV2 → logits; several members are averaged by logits (as ``converter ensemble``
    does: the 1/n is folded into each classifier so the graph only adds), then softmax."""
    import tf_keras as K
    from tf_keras import layers

    src = inspect_source(path)
    members = src.members if members is None else members
    unknown = sorted(set(members) - set(src.members))
    if unknown:
        raise TfliteWeightsError(f"{path}: no member(s) {unknown}; the file has {src.members}")
    h, w, c = src.input_shape
    face = K.Input((h, w, c), name="face")
    x = face
    if src.backbone_size != h:
        x = layers.Resizing(src.backbone_size, src.backbone_size, interpolation="bilinear", name="upsample")(x)
    if c == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    logits, pending = [], []
    for k, member in enumerate(members):
        convs, fc = conv_weights(Path(path), member)
        prefix = f"m{k}_" if len(members) > 1 else ""
        feat, layers_made = _backbone(x, convs, prefix)
        feat = layers.GlobalAveragePooling2D(name=prefix + "pool")(feat)
        dense = layers.Dense(src.n_classes, name=prefix + "logits")
        logits.append(dense(feat))
        pending.append((convs, fc, layers_made, dense))
    z = logits[0]
    for k, lg in enumerate(logits[1:], 1):  # pairwise, so every partial sum gets its own int8 range
        z = layers.Add(name=f"sum_logits_{k}")([z, lg])
    model = K.Model(face, layers.Softmax(name="probs")(z), name="emotion_qat_source")
    n = len(members)
    for convs, (fc_w, fc_b), layers_made, dense in pending:
        for lay, (op, w, b) in zip(layers_made, convs):
            lay.set_weights([keras_kernel(op, w), b])
        dense.set_weights([fc_w.T / n, fc_b / n])  # softmax(mean of logits) = softmax(sum of logits / n)
    return model
