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
Without TensorFlow or the peer model (or with ``--naive-frames 0``) only emotiond's row prints.

``--recall`` also scores emotiond's published faces against a reference, YuNet on every
full-resolution frame (score >= 0.6): the share of reference faces that a published box
overlaps (IoU >= 0.3), and the number of distinct track ids. ``--exclude x0,y0,x1,y1`` drops
reference boxes centred in a region of the frame (pixels), for false faces checked by eye.

    python bench/pipeline.py                       # both clips, config.yaml
    python bench/pipeline.py --clips talking_head_640x360.mp4 --naive-frames 60 --repeats 5
    python bench/pipeline.py --config profiles/retail.yaml --clips street_multiface_1920x1080.mp4 --recall
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

STAGES = ("decode", "detect", "track", "classify", "eyes", "head_pose", "gaze", "rules", "total")


@dataclass
class Run:
    name: str
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    stages: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    boxes: list[list[tuple]] = field(default_factory=list)  # published boxes per frame
    ids: set[int] = field(default_factory=set)
    skipped: dict[str, int] = field(default_factory=dict)

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

def emotiond_run(clip, config, clip_fps: float | None = None) -> Run:
    """The daemon's pipeline and rules over a clip as fast as they go; the frames' capture
    times come from the wall clock, or with ``clip_fps`` from the clip's own frame rate (what
    rate-limited stages see behind a camera of that rate)."""
    from daemon.config import load_config
    from daemon.vision.pipeline import Pipeline
    from daemon.rules import RulesEngine
    from daemon.stats import PipelineStats
    from daemon.types import Frame

    run = Run("emotiond")

    class Recorder(PipelineStats):
        def record(self, stage: str, ms: float) -> None:
            run.stages[stage].append(ms)

    cfg = load_config(config)
    pipe = Pipeline.from_config(cfg, Recorder())
    rules = RulesEngine(cfg.rules, pipe.labels)
    t_start = time.perf_counter()
    for i, (image, dec_ms) in enumerate(decoded(clip, None)):
        t0 = time.perf_counter()
        t_cap = time.monotonic() if clip_fps is None else i / clip_fps
        obs = pipe.process(Frame(image, i, t_cap, time.time()))
        t1 = time.perf_counter()
        rules.step(obs)
        t2 = time.perf_counter()
        run.stages["decode"].append(dec_ms)
        run.stages["rules"].append((t2 - t1) * 1000.0)
        run.stages["total"][-1] = dec_ms + (t2 - t0) * 1000.0  # the pipeline's own total + decode + rules
        run.frames += 1
        run.faces += len(obs.faces)
        run.boxes.append([f.box for f in obs.faces])
        run.ids.update(f.track_id for f in obs.faces)
    run.seconds = time.perf_counter() - t_start
    run.skipped = dict(pipe.stats.faces_skipped) if hasattr(pipe.stats, "faces_skipped") else {}
    return run


# -- recall against a reference --------------------------------------------------------------

def reference_faces(clip, exclude: tuple[float, float, float, float] | None) -> list[list[tuple]]:
    """YuNet at full resolution on every frame, score >= 0.6: the reference faces per frame."""
    net = None
    out = []
    for image, _ in decoded(clip, None):
        h, w = image.shape[:2]
        if net is None:
            net = cv2.FaceDetectorYN.create(str(REPO / "models" / "face_detection_yunet_2023mar.onnx"), "", (w, h), 0.6, 0.3, 5000)
        _, rows = net.detect(image)
        boxes = [tuple(float(v) for v in r[:4]) for r in (rows if rows is not None else [])]
        if exclude:
            x0, y0, x1, y1 = exclude
            boxes = [b for b in boxes if not (x0 <= b[0] + b[2] / 2 <= x1 and y0 <= b[1] + b[3] / 2 <= y1)]
        out.append(boxes)
    return out


def recall(run: Run, reference: list[list[tuple]]) -> tuple[float, int]:
    """(share of reference faces overlapped by a published box at IoU >= 0.3, reference faces)."""
    from daemon.vision.tracking import iou_matrix

    hit = total = 0
    for ref, found in zip(reference, run.boxes):
        total += len(ref)
        if ref and found:
            hit += int((iou_matrix(np.array(ref, float), np.array(found, float)).max(axis=1) >= 0.3).sum())
    return (hit / total if total else float("nan")), total


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


def naive_available() -> str | None:
    """Why the Keras contenders cannot run here, or None."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return "TensorFlow is not installed (pip install .[train])"
    missing = [str(p) for p in (PEER_MODEL, IMAGENET_WEIGHTS) if not p.exists()]
    return f"missing {', '.join(missing)}" if missing else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config.yaml"), help="emotiond config or profile (default: config.yaml)")
    ap.add_argument("--clips", nargs="*", default=["talking_head_640x360.mp4", "street_multiface_1920x1080.mp4"])
    ap.add_argument("--naive-frames", type=int, default=60, help="frames for each Keras pipeline (0: emotiond only)")
    ap.add_argument("--repeats", type=int, default=3, help="emotiond runs over the whole clip (median frames/s)")
    ap.add_argument("--recall", action="store_true", help="score faces against YuNet on every full-resolution frame")
    ap.add_argument("--exclude", help="x0,y0,x1,y1: drop reference boxes centred there (false faces checked by eye)")
    ap.add_argument("--core", type=int, default=0)
    args = ap.parse_args()
    clips = [VIDEOS / c for c in args.clips]
    require(*clips)
    cv2.setNumThreads(1)
    print(machine())
    print(pin_to_core(args.core) + "; OpenCV, LiteRT and TensorFlow each on 1 thread")
    print(f"config: {args.config}")
    why_not = naive_available() if args.naive_frames > 0 else "--naive-frames 0"
    if why_not:
        print(f"naive and peer pipelines not run: {why_not}")
    else:
        naive, peer = keras_models()
    exclude = tuple(float(v) for v in args.exclude.split(",")) if args.exclude else None
    for clip in clips:
        runs = [emotiond_run(clip, args.config) for _ in range(args.repeats)]
        fps = [r.fps for r in runs]
        best = runs[len(runs) // 2]
        others = [] if why_not else [keras_run("naive", naive, naive_prepare, clip, args.naive_frames),
                                     keras_run("peer", peer, peer_prepare, clip, args.naive_frames)]
        report(clip.name, [best, *others], fps)
        print(f"emotiond distinct track ids: {len(best.ids)}; faces seen but not classified: {best.skipped}")
        if args.recall:
            ref = reference_faces(clip, exclude)
            share, total = recall(best, ref)
            print(f"recall vs YuNet full-res every frame (score >= 0.6{', excluding ' + args.exclude if exclude else ''}): "
                  f"{share:.3f} of {total} reference faces ({total / max(len(ref), 1):.2f} per frame)")


if __name__ == "__main__":
    main()
