"""``python -m converter {counts,train,distill,qat,eyes,eye-data,choose,evaluate,ensemble,convert}``: the model toolchain's commands."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .ensemble import COMBINE  # noqa: E402  (plain data; the module imports Keras only when building)


def _add_train(sub) -> None:
    from .train import TrainConfig

    d = TrainConfig(data="", out="")
    p = sub.add_parser("train", help="train a classifier (resumable: rerun with the same --out)")
    p.add_argument("--data", required=True, help="fer2013.csv or a folder root with <split>/<class>/*.jpg")
    p.add_argument("--out", required=True, help="run folder: checkpoints, logs, best.keras")
    p.add_argument("--arch", default=d.arch, choices=["mobilenetv2", "smallcnn"])
    p.add_argument("--weights", default=None, help="local ImageNet .h5 for MobileNetV2 (none: random init)")
    p.add_argument("--backbone-size", type=int, default=d.backbone_size, help="MobileNetV2 input side (96, 128, ...)")
    p.add_argument("--alpha", type=float, default=d.alpha, help="MobileNetV2 width multiplier")
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--head-epochs", type=int, default=d.head_epochs, help="epochs with the backbone frozen")
    p.add_argument("--epochs", type=int, default=d.epochs, help="fine-tuning epochs")
    p.add_argument("--lr", type=float, default=d.lr, help="peak fine-tuning learning rate")
    p.add_argument("--head-lr", type=float, default=d.head_lr)
    p.add_argument("--class-weight", default=d.class_weight, choices=["none", "sqrt", "balanced"])
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience (epochs)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--train-split", default=d.train_split)
    p.add_argument("--val-split", default=d.val_split, help="model selection split (FER-2013: test = PublicTest)")
    p.add_argument("--limit", type=int, default=None, help="use only N training images (smoke tests)")
    p.add_argument("--init", default=None, help="start from this .keras model's weights (a second fine-tuning cycle)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converter", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("counts", help="print class counts per split")
    p.add_argument("--data", required=True)
    p.add_argument("--splits", default="train,test")

    _add_train(sub)

    from .distill import add_parser as add_distill_parser

    add_distill_parser(sub)

    from .qat import add_parser as add_qat_parser

    add_qat_parser(sub)

    from .eyes import add_parser as add_eyes_parser

    add_eyes_parser(sub)
    from .eye_data import add_parser as add_eye_data_parser

    add_eye_data_parser(sub)

    from .choose import add_parser as add_choose_parser

    add_choose_parser(sub)

    p = sub.add_parser("evaluate", help="evaluate a .keras or .tflite model on a split")
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--manifest", default=None, help="manifest JSON for a .keras model (default: the training normalisation and the data's labels)")
    p.add_argument("--out", default=None, help="folder for metrics JSON and confusion-matrix PNG")
    p.add_argument("--limit", type=int, default=None, help="evaluate on a seeded random N images only")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--tta-flip", action="store_true", help="average with the mirrored face (as the daemon does for a manifest with flip_average)")
    p.add_argument("--ferplus", default=None, help="FER+ votes folder: also report accuracy and macro recall against the annotators' majority")
    p.add_argument("--ckplus", default=None, help="CK+48 folder: also report the model on these posed lab faces (validation only)")

    p = sub.add_parser("ensemble", help="average several trained .keras models inside one graph")
    p.add_argument("models", nargs="+", help="two or more .keras models with the same input and classes")
    p.add_argument("--out", required=True, help="output .keras file (a .provenance.json is written beside it)")
    p.add_argument("--combine", choices=tuple(COMBINE), default="logits",
                   help="average the members' logits then softmax (default), or average their probabilities")

    p = sub.add_parser("convert", help="convert a .keras model to TFLite variants with manifests")
    p.add_argument("model", help="trained .keras file")
    p.add_argument("--data", required=True, help="data for the representative set and the test metrics")
    p.add_argument("--out", required=True, help="output stem, e.g. models/emotion (writes emotion.tflite, emotion_fp16.tflite, ...)")
    p.add_argument("--variants", default="int8,float16,float32,dynamic")
    p.add_argument("--split", default="test", help="split the variants are measured on")
    p.add_argument("--rep-split", default="train")
    p.add_argument("--rep-samples", type=int, default=500)
    p.add_argument("--margin", type=float, default=0.1, help="face-crop margin written to the manifest")
    p.add_argument("--flip-average", action="store_true",
                   help="manifest asks the daemon to average each face with its mirror image; metrics are measured so")
    p.add_argument("--align", choices=("box", "five_points"), default="box",
                   help="five_points: the manifest cuts each face by its five landmarks onto the mean points of --rep-split's faces (daemon/model/face_align.py)")
    p.add_argument("--task", default="emotion")
    p.add_argument("--ferplus", default=None, help="FER+ votes folder: each variant is also measured against the annotators' majority (manifest: metrics_ferplus)")
    p.add_argument("--balance", type=float, default=0.0,
                   help="logit adjustment: divide the output by the training prior to this power (0.5: square-root balancing; 0: none)")
    p.add_argument("--ckplus", default=None, help="CK+48 folder: each variant is also measured on these posed lab faces (manifest: metrics_ckplus; validation only)")
    p.add_argument("--class-offset", default="",
                   help="CLASS=NUMBER[,...]: added to a class's logit after --balance (chosen on validation sets; the manifest records it)")
    p.add_argument("--limit", type=int, default=None, help="evaluate on a seeded random N images only (smoke tests)")
    p.add_argument("--latency-runs", type=int, default=200, help="single-face invokes timed per variant (median)")
    p.add_argument("--batch", type=int, default=256)

    args = ap.parse_args(argv)
    from daemon.model.manifest import ManifestError

    from .choose import ChooseError
    from .datasets import DatasetError
    from .ensemble import EnsembleError
    from .tflite_weights import TfliteWeightsError

    try:
        if args.cmd == "counts":
            from .datasets import load_split, print_counts

            labels = None
            for s in args.splits.split(","):
                split = load_split(args.data, s, labels)
                labels = split.labels
                print_counts(split)
            return 0
        if args.cmd == "train":
            from .train import TrainConfig, train

            cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k != "cmd"})
            print(f"best model: {train(cfg)}")
            return 0
        if args.cmd == "distill":
            from .distill import DistillConfig, distill

            print(f"best model: {distill(DistillConfig(**{k: v for k, v in vars(args).items() if k != 'cmd'}))}")
            return 0
        if args.cmd == "qat":
            from .qat import QatConfig, qat

            print(f"int8 model: {qat(QatConfig(**{k: v for k, v in vars(args).items() if k != 'cmd'}))}")
            return 0
        if args.cmd == "eye-data":
            from .eye_data import run as run_eye_data

            return run_eye_data(args)
        if args.cmd == "eyes":
            from .eyes import EyesTrainConfig, train_eyes

            train_eyes(EyesTrainConfig(**{k: v for k, v in vars(args).items() if k != "cmd"}))
            return 0
        if args.cmd == "evaluate":
            from .evaluate import evaluate_cli

            return evaluate_cli(args)
        if args.cmd == "choose":
            from .choose import choose_cli

            return choose_cli(args)
        if args.cmd == "ensemble":
            from .ensemble import ensemble_cli

            return ensemble_cli(args)
        if args.cmd == "convert":
            from .convert import convert_cli

            return convert_cli(args)
    except (ChooseError, DatasetError, ManifestError, EnsembleError, TfliteWeightsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1
