"""Frames per second of emotiond's pipeline against the naive tutorial pipeline and the peer.

One process, one core (pinned at start like ``taskset -c 0``), unthrottled (frames decoded as
fast as possible), no MQTT. Three contenders on the same decoded clip:

* emotiond: ``daemon.vision.pipeline.Pipeline.process`` (detect every Nth frame on a downscaled grey
  frame → track → batch classify with LiteRT → eye state) then the rules engine, configured by
  the repository's ``config.yaml`` — exactly what ``emotiond run`` does per frame.
* naive: what a tutorial does: Haar ``detectMultiScale`` with default parameters on every
  full-resolution grey frame, then Keras ``model.predict`` on MobileNetV2 at 224×224 per face.
* peer: the same Haar, then the mini-Xception FER-2013 model (the ``fer`` library's) with
  Keras ``predict`` per face.

emotiond runs over the whole clip (``--repeats`` times, medians); the Keras pipelines over the
first ``--naive-frames`` frames (they take seconds per second of video). Per-stage times are
per frame in ms (detect: only frames where detection ran; classify: all faces of a frame).

    python bench/pipeline.py                       # both clips
    python bench/pipeline.py --clips talking_head_640x360.mp4 --naive-frames 60 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field

import cv2
import numpy as np

from _common import (IMAGENET_WEIGHTS, PEER_MODEL, REPO, VIDEOS, machine, p50_p99, pin_to_core, require,
                     table)

STAGES = ("decode", "detect", "track", "classify", "eyes", "rules", "total")


@dataclass
class Run:
    name: str
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    stages: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def decoded(clip, limit: int | None):
    """(frame, decode ms) for each frame of the clip, decoded on demand like a camera would."""
    cap = cv2.VideoCapture(str(clip))
    n = 0
    try:
        while limit is None or n < limit:
            t0 = time.perf_counter()
            ok, image = cap.read()
            ms = (time.perf_counter() - t0) * 1000.0
            if not ok:
                return
            n += 1
            yield image, ms
    finally:
        cap.release()


# -- emotiond ---------------------------------------------------------------------------------

def emotiond_run(clip) -> Run:
    from daemon.config import load_config
    from daemon.vision.pipeline import Pipeline
    from daemon.rules import RulesEngine
    from daemon.stats import PipelineStats
    from daemon.types import Frame

    run = Run("emotiond")

    class Recorder(PipelineStats):
        def record(self, stage: str, ms: float) -> None:
            run.stages[stage].append(ms)

    cfg = load_config(REPO / "config.yaml")
    pipe = Pipeline.from_config(cfg, Recorder())
    rules = RulesEngine(cfg.rules, pipe.labels)
    t_start = time.perf_counter()
    for i, (image, dec_ms) in enumerate(decoded(clip, None)):
        t0 = time.perf_counter()
        obs = pipe.process(Frame(image, i, time.monotonic(), time.time()))
        t1 = time.perf_counter()
        rules.step(obs)
        t2 = time.perf_counter()
        run.stages["decode"].append(dec_ms)
        run.stages["rules"].append((t2 - t1) * 1000.0)
        run.stages["total"][-1] = dec_ms + (t2 - t0) * 1000.0  # the pipeline's own total + decode + rules
        run.frames += 1
        run.faces += len(obs.faces)
    run.seconds = time.perf_counter() - t_start
    return run


# -- Keras contenders -------------------------------------------------------------------------

def keras_models():
    """(naive MobileNetV2-224 + GAP + Dense(7), mini-Xception peer), TensorFlow on one thread."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    base = keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights=str(IMAGENET_WEIGHTS))
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    naive = keras.Model(base.input, keras.layers.Dense(7, activation="softmax")(x))  # random head: timing only
    peer = keras.models.load_model(str(PEER_MODEL), compile=False)
    return naive, peer


def naive_prepare(frame, box):
    from keras.applications.mobilenet_v2 import preprocess_input

    x, y, w, h = box
    face = cv2.cvtColor(frame[y : y + h, x : x + w], cv2.COLOR_BGR2RGB)
    return preprocess_input(cv2.resize(face, (224, 224)).astype(np.float32))[None]


def peer_prepare(grey, box):
    x, y, w, h = box
    face = cv2.resize(grey[y : y + h, x : x + w], (64, 64)).astype(np.float32)
    return ((face / 255.0 - 0.5) * 2.0)[None, :, :, None]


def keras_run(name: str, model, prepare, clip, limit: int) -> Run:
    """Haar (defaults) on every full-resolution grey frame, then ``model.predict`` per face."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    warm = np.zeros((1, *model.input_shape[1:]), np.float32)
    model.predict(warm, verbose=0)  # the first call builds the predict function: not counted
    run = Run(name)
    t_start = time.perf_counter()
    for image, dec_ms in decoded(clip, limit):
        t0 = time.perf_counter()
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        boxes = cascade.detectMultiScale(grey)
        t1 = time.perf_counter()
        for box in boxes:
            src = grey if prepare is peer_prepare else image
            model.predict(prepare(src, box), verbose=0)
        t2 = time.perf_counter()
        run.stages["decode"].append(dec_ms)
        run.stages["detect"].append((t1 - t0) * 1000.0)
        if len(boxes):
            run.stages["classify"].append((t2 - t1) * 1000.0)
        run.stages["total"].append(dec_ms + (t2 - t0) * 1000.0)
        run.frames += 1
        run.faces += len(boxes)
    run.seconds = time.perf_counter() - t_start
    return run


# -- report -----------------------------------------------------------------------------------

def report(clip_name: str, runs: list[Run], repeats_fps: list[float]) -> None:
    print(f"\n== {clip_name}")
    header = ["pipeline", "frames", "faces/frame", "frames/s", *[f"{s} p50/p99 ms" for s in STAGES]]
    rows = []
    for r in runs:
        fps = statistics.median(repeats_fps) if r.name == "emotiond" else r.fps
        rows.append([r.name, str(r.frames), f"{r.faces / max(r.frames, 1):.2f}", f"{fps:.1f}",
                     *[p50_p99(r.stages.get(s, [])) for s in STAGES]])
    print(table(rows, header))
    ours = statistics.median(repeats_fps)
    print(f"emotiond frames/s over {len(repeats_fps)} repeats: " + ", ".join(f"{f:.1f}" for f in repeats_fps)
          + f" (median {ours:.1f})")
    for r in runs[1:]:
        print(f"ratio emotiond / {r.name}: {ours / r.fps:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="*", default=["talking_head_640x360.mp4", "street_multiface_1920x1080.mp4"])
    ap.add_argument("--naive-frames", type=int, default=60, help="frames for each Keras pipeline")
    ap.add_argument("--repeats", type=int, default=3, help="emotiond runs over the whole clip (median frames/s)")
    ap.add_argument("--core", type=int, default=0)
    args = ap.parse_args()
    clips = [VIDEOS / c for c in args.clips]
    require(*clips, PEER_MODEL, IMAGENET_WEIGHTS)
    cv2.setNumThreads(1)
    print(machine())
    print(pin_to_core(args.core) + "; OpenCV, LiteRT and TensorFlow each on 1 thread")
    naive, peer = keras_models()
    for clip in clips:
        runs = [emotiond_run(clip) for _ in range(args.repeats)]
        fps = [r.fps for r in runs]
        best = runs[len(runs) // 2]
        others = [keras_run("naive", naive, naive_prepare, clip, args.naive_frames),
                  keras_run("peer", peer, peer_prepare, clip, args.naive_frames)]
        report(clip.name, [best, *others], fps)


if __name__ == "__main__":
    main()
