"""Milliseconds per face of every shipped model and of the peer, at 1 and 2 threads, and sizes.

* models/*.tflite with LiteRT (what the daemon runs), batch of one face, inputs from real
  talking-head faces prepared by the daemon's own Preprocessor;
* the peer mini-Xception (``../shared/data/peers``) with Keras ``model.predict`` per face (the
  ``fer`` library's way) and, converted with the converter's ``to_tflite`` (float32), on LiteRT;
* the naive MobileNetV2 at 224 with Keras ``predict`` (the tutorial pipeline's classifier);
* with ``--lbph``: the seed tutorials' classical baseline, ``cv2.face.LBPHFaceRecognizer``
  (opencv-contrib, bench only: never in the daemon or its install) trained on FER-2013 train and
  measured on PublicTest (7 classes), so the table shows what the CNN buys. LBPH predicts by a
  linear scan over every training histogram, so ``--lbph-per-class`` caps the training faces per
  class (the scan, not the fit, is the cost). It runs in a child process whose ``cv2`` may come
  from ``--lbph-path`` (a ``pip install --target`` folder), so the daemon's OpenCV stays as is.
Keras runs in child processes (TensorFlow's thread count is fixed at start); the LiteRT side
never imports TensorFlow. Median and p99 over ``--runs`` calls after ``--warmup``.

    python bench/models.py --runs 200
    python bench/models.py --lbph-only --lbph-path /opt/cv2contrib   # the LBPH row alone
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import IMAGENET_WEIGHTS, PEER_MODEL, REPO, machine, pct, require, table


def timed(fn, runs: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000.0)
    return pct(ts, 50), pct(ts, 99)


def litert_ms(path: Path, threads: int, runs: int, warmup: int) -> tuple[float, float]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    x = np.random.default_rng(0).integers(-100, 100, inp["shape"]).astype(inp["dtype"]) if inp["dtype"] != np.float32 \
        else np.random.default_rng(0).uniform(-1, 1, inp["shape"]).astype(np.float32)

    def call():
        interp.set_tensor(inp["index"], x)
        interp.invoke()

    return timed(call, runs, warmup)


def keras_child(threads: int, runs: int, warmup: int, convert_to: str | None) -> None:
    """Prints JSON {name: [p50, p99]} for Keras predict; optionally writes the peer as TFLite."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    peer = keras.models.load_model(str(PEER_MODEL), compile=False)
    base = keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights=str(IMAGENET_WEIGHTS))
    naive = keras.Model(base.input, keras.layers.Dense(7)(keras.layers.GlobalAveragePooling2D()(base.output)))
    out = {}
    for name, model in (("peer mini-Xception 64 (Keras predict)", peer), ("naive MobileNetV2 224 (Keras predict)", naive)):
        x = np.zeros((1, *model.input_shape[1:]), np.float32)
        out[name] = timed(lambda: model.predict(x, verbose=0), max(20, runs // 10), 3)
    if convert_to:
        sys.path.insert(0, str(REPO))
        from converter.convert import to_tflite

        Path(convert_to).write_bytes(to_tflite(peer, "float32"))
    print("RESULT " + json.dumps(out))


def lbph_child(per_class: int | None) -> None:
    """Prints JSON: LBPH accuracy, macro recall and ms per face on PublicTest (needs cv2.face)."""
    import cv2

    if not hasattr(cv2, "face"):
        print("RESULT " + json.dumps({"error": "cv2.face missing: pip install opencv-contrib-python-headless"}))
        return
    from converter.datasets import load_split
    from converter.evaluate import metrics_from_confusion

    data = REPO.parent / "shared" / "data" / "fer2013"
    train, test = load_split(data, "train"), None
    test = load_split(data, "test", labels=train.labels)
    idx = np.arange(len(train))
    if per_class:  # the first N of each class in a seeded shuffle
        rng = np.random.default_rng(1337)
        idx = np.concatenate([rng.permutation(np.flatnonzero(train.y == c))[:per_class] for c in range(len(train.labels))])
    read = lambda p: cv2.imread(p, cv2.IMREAD_GRAYSCALE)  # noqa: E731
    rec = cv2.face.LBPHFaceRecognizer_create()  # the tutorials' defaults: radius 1, 8 neighbours, 8x8 grid
    t0 = time.perf_counter()
    rec.train([read(train.paths[i]) for i in idx], train.y[idx].astype(np.int32))
    fit_s = time.perf_counter() - t0
    n = len(train.labels)
    confusion = np.zeros((n, n), np.int64)
    ts = []
    for path, y in zip(test.paths, test.y):
        img = read(path)
        t0 = time.perf_counter()
        label, _ = rec.predict(img)
        ts.append((time.perf_counter() - t0) * 1000.0)
        confusion[y, label] += 1
    m = metrics_from_confusion(confusion, list(train.labels))
    print("RESULT " + json.dumps({"train_faces": int(len(idx)), "test_faces": int(len(test)), "accuracy": m.accuracy,
                                  "macro_recall": m.macro_recall, "fit_s": fit_s, "ms_p50": pct(ts, 50), "ms_p99": pct(ts, 99)}))


def lbph_row(args) -> list[str] | None:
    env = dict(os.environ)
    if args.lbph_path:
        env["PYTHONPATH"] = os.pathsep.join([args.lbph_path, env.get("PYTHONPATH", "")]).strip(os.pathsep)
    cmd = [sys.executable, __file__, "--lbph-child", str(args.lbph_per_class or 0)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not line:
        sys.exit(f"LBPH child failed: {proc.stderr[-2000:]}")
    r = json.loads(line[0][7:])
    if "error" in r:
        print(f"LBPH baseline skipped: {r['error']}")
        return None
    print(f"LBPH (Haar+LBPH tutorials' classifier) on PublicTest: accuracy {r['accuracy']:.4f}, macro recall "
          f"{r['macro_recall']:.4f}, {r['test_faces']} faces; trained on {r['train_faces']} faces in {r['fit_s']:.1f} s")
    return [f"LBPH, {r['train_faces']} train faces (PublicTest acc {100 * r['accuracy']:.1f} %)", "OpenCV contrib", "-",
            f"{r['ms_p50']:.2f} / {r['ms_p99']:.2f}", "-"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--keras-child", nargs=2, metavar=("THREADS", "CONVERT_TO"), help=argparse.SUPPRESS)
    ap.add_argument("--lbph", action="store_true", help="add the LBPH baseline measured on PublicTest (needs opencv-contrib)")
    ap.add_argument("--lbph-only", action="store_true", help="only the LBPH baseline")
    ap.add_argument("--lbph-path", default=None, help="folder holding opencv-contrib's cv2 (pip install --target)")
    ap.add_argument("--lbph-per-class", type=int, default=None, help="training faces per class (default: all 28,709)")
    ap.add_argument("--lbph-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.keras_child:
        keras_child(int(args.keras_child[0]), args.runs, args.warmup, args.keras_child[1] or None)
        return
    if args.lbph_child is not None:
        lbph_child(args.lbph_child or None)
        return
    if args.lbph_only:
        print(machine())
        row = lbph_row(args)
        if row:
            print(table([row], ["model", "runtime", "size KB", "1 thread ms", "2 threads ms"]))
        return
    require(PEER_MODEL, IMAGENET_WEIGHTS)
    print(machine())
    rows = []
    with tempfile.TemporaryDirectory(prefix="emotiond-models-") as tmp:
        peer_tflite = Path(tmp) / "mini_xception_float32.tflite"
        keras = {}
        for threads in (1, 2):
            proc = subprocess.run([sys.executable, __file__, "--runs", str(args.runs), "--keras-child", str(threads),
                                   str(peer_tflite) if threads == 1 else ""], capture_output=True, text=True)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if not line:
                sys.exit(f"keras child failed: {proc.stderr[-2000:]}")
            keras[threads] = json.loads(line[0][7:])
        models = [(p.name, p) for p in sorted((REPO / "models").glob("*.tflite"))]
        models.append(("peer mini-Xception 64 (TFLite float32 via to_tflite)", peer_tflite))
        for name, path in models:
            t1, t2 = (litert_ms(path, t, args.runs, args.warmup) for t in (1, 2))
            rows.append([name, "LiteRT", f"{path.stat().st_size / 1024:.0f}", f"{t1[0]:.2f} / {t1[1]:.2f}",
                         f"{t2[0]:.2f} / {t2[1]:.2f}"])
        sizes = {"peer": PEER_MODEL.stat().st_size / 1024, "naive": float("nan")}
        for name in keras[1]:
            size = f"{sizes['peer']:.0f} (.hdf5)" if name.startswith("peer") else "-"
            rows.append([name, "Keras", size, "{:.2f} / {:.2f}".format(*keras[1][name]),
                         "{:.2f} / {:.2f}".format(*keras[2][name])])
    if args.lbph:
        row = lbph_row(args)
        if row:
            rows.append(row)
    print(f"ms per face (batch 1), p50 / p99; LiteRT {args.runs} runs, Keras predict {max(20, args.runs // 10)} runs")
    print(table(rows, ["model", "runtime", "size KB", "1 thread ms", "2 threads ms"]))


if __name__ == "__main__":
    main()
