"""The networks the converter can train.

``mobilenetv2``: transfer learning from ImageNet. The model takes the face as the daemon
prepares it (48×48 grey, normalised to [-1, 1], FER-2013's own resolution), upsamples it to the
backbone size inside the graph and repeats the grey channel three times. Keeping the model input
at 48×48 grey means the daemon's per-face work is a tiny resize and a table lookup, and a face
from the camera is reduced to the same level of detail the network was trained on.

``smallcnn``: a plain CNN from scratch on 48×48 grey, the other tutorial approach, kept so the
choice of MobileNetV2 is measured rather than assumed.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

ARCHS = ("mobilenetv2", "smallcnn")


def build_model(
    arch: str,
    n_classes: int,
    input_size: int = 48,
    channels: int = 1,
    backbone_size: int = 96,
    alpha: float = 1.0,
    weights: str | None = None,
    dropout: float = 0.3,
) -> tuple[keras.Model, keras.Model | None]:
    """Return (model, backbone); the backbone is None for architectures without one."""
    inp = keras.Input((input_size, input_size, channels), name="face")
    if arch == "mobilenetv2":
        if weights is not None and not Path(weights).is_file():
            raise FileNotFoundError(
                f"ImageNet weights file not found: {weights} (pass --weights with the local "
                "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5; nothing is downloaded)"
            )
        x = inp
        if backbone_size != input_size:
            x = layers.Resizing(backbone_size, backbone_size, interpolation="bilinear", name="upsample")(x)
        if channels == 1:
            x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
        backbone = keras.applications.MobileNetV2(
            input_shape=(backbone_size, backbone_size, 3),
            alpha=alpha,
            include_top=False,
            weights=weights,
        )
        # BatchNorm stays in inference mode while fine-tuning: the standard recipe for a small
        # dataset, and it keeps the frozen and fine-tuned phases numerically consistent.
        x = backbone(x, training=False)
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        out = layers.Dense(n_classes, activation="softmax", name="probs")(x)
        return keras.Model(inp, out, name=f"mobilenetv2_{backbone_size}_a{alpha:g}"), backbone
    if arch == "smallcnn":
        x = inp
        for i, filters in enumerate((32, 64, 128, 256)):
            for j in range(2):
                x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}_{j}")(x)
                x = layers.BatchNormalization(name=f"bn{i}_{j}")(x)
                x = layers.ReLU(name=f"relu{i}_{j}")(x)
            x = layers.MaxPooling2D(name=f"pool{i}")(x)
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        out = layers.Dense(n_classes, activation="softmax", name="probs")(x)
        return keras.Model(inp, out, name="smallcnn"), None
    raise ValueError(f"unknown arch {arch!r}; choose from {ARCHS}")


def augmentation(seed: int) -> keras.Sequential:
    """Flip, small shifts/rotations/zoom, brightness/contrast, on [0, 255] grey images."""
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(10 / 360, fill_mode="reflect", seed=seed + 1),
            layers.RandomTranslation(0.08, 0.08, fill_mode="reflect", seed=seed + 2),
            layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=seed + 3),
            layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed + 4),
            layers.RandomContrast(0.2, value_range=(0, 255), seed=seed + 5),
        ],
        name="augment",
    )


def camera_augmentation(seed: int, aligned: bool = False):
    """The faces the daemon meets that FER-2013 has few of, on [0, 255] grey batches: the usual
    geometry (flip, rotation up to 15°, shift, zoom) plus a face turned towards 3/4 (a random
    perspective and a horizontal squeeze), the looks of other cameras (gamma for near-infrared
    and low light, strong contrast changes, blur, sensor noise) and glasses or a hand over the
    eyes (a dark band at eye height on one face in ten). Every draw is per image.

    ``aligned``: for faces cut by their five points, whose turn, scale and place the crop
    already fixes: the geometry shrinks to what landmark noise leaves (YuNet's points scatter
    by about 1 px on a 48-px face: rotation 5°, shift 3 %, zoom 5 %) and the 3/4 view comes
    from the 3-D turned copies (``converter.face_views``), not from a 2-D perspective."""
    import tensorflow as tf

    if aligned:
        geo = [
            layers.RandomRotation(5 / 360, fill_mode="reflect", seed=seed + 1),
            layers.RandomTranslation(0.03, 0.03, fill_mode="reflect", seed=seed + 2),
            layers.RandomZoom((-0.05, 0.05), fill_mode="reflect", seed=seed + 3),
        ]
    else:
        geo = [
            layers.RandomRotation(15 / 360, fill_mode="reflect", seed=seed + 1),
            layers.RandomTranslation(0.08, 0.08, fill_mode="reflect", seed=seed + 2),
            layers.RandomZoom((-0.12, 0.12), width_factor=(-0.05, 0.2), fill_mode="reflect", seed=seed + 3),
            layers.RandomPerspective(factor=0.3, scale=0.2, seed=seed + 4),
        ]
    geometry = keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            *geo,
            layers.RandomGaussianBlur(factor=0.5, kernel_size=3, sigma=(0.1, 1.2), seed=seed + 5),
        ],
        name="camera_geometry",
    )
    gen = tf.random.Generator.from_seed(seed + 6)

    def augment(x, training: bool = True):
        if not training:
            return x
        x = geometry(x, training=True)
        b = tf.shape(x)[0]
        u = lambda lo, hi: gen.uniform([b, 1, 1, 1], lo, hi)  # noqa: E731  one draw per image
        # three faces in five get another camera's look; the rest keep FER-2013's own
        s = tf.cast(gen.uniform([b, 1, 1, 1]) < 0.6, tf.float32)
        # gamma in [0.5, 2]: washed-out infrared skin, or a dim cabin's crushed shadows
        x = 255.0 * tf.pow(tf.clip_by_value(x / 255.0, 1e-4, 1.0), tf.exp(s * u(-0.7, 0.7)))
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        contrast, exposure = 1.0 + s * (u(0.55, 1.35) - 1.0), 1.0 + s * (u(0.6, 1.2) - 1.0)
        x = (x - mean) * contrast + mean * exposure
        x = x + gen.normal(tf.shape(x)) * s * u(0.0, 6.0)  # low light: sensor noise up to σ 6 levels
        # glasses / a hand: a dark band across the eyes (FER-2013 crops: eyes at 30-45 % height)
        top = gen.uniform([b, 1, 1, 1], 0.25, 0.38)
        rows = tf.reshape(tf.linspace(0.0, 1.0, tf.shape(x)[1]), [1, -1, 1, 1])
        band = tf.cast((rows >= top) & (rows <= top + u(0.08, 0.16)), tf.float32)
        on = tf.cast(gen.uniform([b, 1, 1, 1]) < 0.1, tf.float32)
        x = x * (1.0 - band * on * u(0.6, 0.9))
        return tf.clip_by_value(x, 0.0, 255.0)

    return augment
