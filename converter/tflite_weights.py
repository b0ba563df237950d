"""Read a MobileNetV2 classifier's weights back out of a float TFLite graph into Keras.

The networks' ``.keras`` files are training outputs that the repository does not keep; a float
TFLite file still holds their weights (in float16): the shipped ``emotion_wild_fp16.tflite`` its
one network (member ``""``), an in-graph ensemble every member's (``member0``, ...). A distilled
student or a fine-tuning run starts far better from a trained network than from ImageNet, so this
module rebuilds one as a Keras model: TFLite folded each BatchNorm into its convolution, so the kernel is
the folded kernel, and the BatchNorm becomes the identity plus the folded bias
(gamma 1, mean 0, variance 1 - epsilon, beta = bias), which computes exactly the same function.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


class TfliteWeightsError(ValueError):
    pass


def conv_weights(path: Path, member: str) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """(op, kernel, bias) for every convolution of ``member`` in graph order, and the final
    fully-connected layer's (weights, bias); ``member`` is a substring of the weight names
    (``member0`` in an ensemble, ``""`` for a single network)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(path))
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    ops = it._get_ops_details()  # the public API has no op list; this one is stable across 1.x/2.x
    # float16 weights reach the op through a DEQUANTIZE: follow it back to the constant
    src = {int(o["outputs"][0]): int(o["inputs"][0]) for o in ops if o["op_name"] == "DEQUANTIZE"}

    def const(i: int) -> np.ndarray:
        return np.asarray(it.get_tensor(src.get(int(i), int(i))), dtype=np.float32)

    def bias(o: dict, kernel: np.ndarray) -> np.ndarray:
        # an all-zero folded bias may be left out of the graph (input index -1)
        i = int(o["inputs"][2]) if len(o["inputs"]) > 2 else -1
        return const(i) if i >= 0 else np.zeros(kernel.shape[-1 if o["op_name"] == "DEPTHWISE_CONV_2D" else 0], np.float32)

    convs, fc = [], None
    for o in ops:
        if o["op_name"] not in (*CONV_OPS, "FULLY_CONNECTED"):
            continue
        w = src.get(int(o["inputs"][1]), int(o["inputs"][1]))
        if member not in names[w]:
            continue
        if o["op_name"] == "FULLY_CONNECTED":
            kernel = const(o["inputs"][1])
            fc = (kernel, bias(o, kernel))
        else:
            kernel = const(o["inputs"][1])
            convs.append((o["op_name"], kernel, bias(o, kernel)))
    if not convs or fc is None:
        raise TfliteWeightsError(f"{path}: no convolutions and classifier for {member!r} (is it a float model?)")
    return convs, fc


def keras_kernel(op: str, w: np.ndarray) -> np.ndarray:
    """A TFLite convolution kernel in Keras's layout: depthwise [1, H, W, C·M] → [H, W, C, M]
    (M = 1 in MobileNetV2), regular [O, H, W, I] → [H, W, I, O]."""
    return w[0].reshape(*w.shape[1:3], -1, 1) if op == "DEPTHWISE_CONV_2D" else w.transpose(1, 2, 3, 0)


def load_mobilenetv2_from_tflite(model, path: str | Path, member: str = "") -> None:
    """Set the weights of ``model`` (``converter.model.build_model('mobilenetv2', ...)``) from
    the network ``member`` inside the float TFLite file ``path``."""
    from keras import layers

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TFLite file not found: {path}")
    convs, (fc_w, fc_b) = conv_weights(path, member)
    backbone = next(lay for lay in model.layers if lay.name.startswith("mobilenetv2"))
    seq = backbone.layers
    kconvs = [(i, lay) for i, lay in enumerate(seq) if isinstance(lay, (layers.Conv2D, layers.DepthwiseConv2D))]
    if len(kconvs) != len(convs):
        raise TfliteWeightsError(f"{path}: {len(convs)} convolutions for {member!r}, the Keras model has {len(kconvs)}")
    for (i, lay), (op, w, b) in zip(kconvs, convs):
        depthwise = isinstance(lay, layers.DepthwiseConv2D)
        if depthwise != (op == "DEPTHWISE_CONV_2D"):
            raise TfliteWeightsError(f"layer {lay.name} is {type(lay).__name__}, the graph has {op}")
        kernel = keras_kernel(op, w)
        if tuple(lay.kernel.shape) != kernel.shape:
            raise TfliteWeightsError(f"layer {lay.name}: Keras kernel {tuple(lay.kernel.shape)}, graph {kernel.shape}")
        lay.kernel.assign(kernel)
        bn = seq[i + 1]
        if not isinstance(bn, layers.BatchNormalization):
            raise TfliteWeightsError(f"layer {lay.name} is not followed by a BatchNormalization")
        eps = bn.epsilon
        bn.set_weights([np.ones_like(b), b, np.zeros_like(b), np.full_like(b, 1.0 - eps)])
    dense = model.layers[-1]
    if not isinstance(dense, layers.Dense) or tuple(dense.kernel.shape) != fc_w.T.shape:
        raise TfliteWeightsError(f"the model's last layer does not take the graph's classifier {fc_w.T.shape}")
    dense.set_weights([fc_w.T, fc_b])
