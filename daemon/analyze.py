"""``emotiond analyze INPUT``: run the daemon's pipeline over an image, a folder of images or a
video, and write what it saw: the annotated image(s) or video and, for video, a timeline.

Same ``Pipeline`` and config as ``emotiond run``, so what an engineer checks here is what the
device does. Differences, on purpose:

* Video: every frame is processed, in order. The daemon's ``FrameSource`` keeps only the
  newest frame (real time means fresh); a file being analysed must not lose any, so frames are
  read here with ``cv2.VideoCapture`` directly and the output has the same count and rate.
* Stills: each image is its own scene, so detection runs on every image (``every_n`` 1), the
  probabilities are not blended with the previous image (``smoothing`` 1) and a face does not
  outlive its image (``max_missed`` 0). Track ids still count across a folder, which keeps
  them meaningful for a folder of consecutive frames.

Exit codes (sysexits.h): 0 done; 64 bad usage; 66 (EX_NOINPUT) input missing or unreadable;
73 (EX_CANTCREAT) output cannot be written; 78 invalid config.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import cv2
import numpy as np

from .capture.folder import IMAGE_SUFFIXES, list_images
from .config import Config
from .exitcodes import EX_CANTCREAT, EX_CONFIG, EX_NOINPUT, EX_OK, EX_USAGE
from .publish.payloads import probs_json
from .types import Frame, Observation
from .vision.annotate import draw
from .vision.pipeline import Pipeline
from .vision.signals import signal_cells, signal_columns, signals_json

log = logging.getLogger(__name__)
VIDEO_FOURCC = "mp4v"


class AnalyzeError(Exception):
    """A problem with the input or output that ends the run; ``code`` is the exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Summary:
    output: Path
    items: int  # frames or images written
    with_faces: int  # of which had at least one face
    skipped: int = 0  # unreadable images in a folder (logged, counted)
    seconds: float = 0.0

    def line(self) -> str:
        rate = f", {self.items / self.seconds:.1f}/s" if self.seconds > 0 else ""
        skipped = f", skipped {self.skipped} unreadable" if self.skipped else ""
        return f"wrote {self.output}: {self.items} annotated, faces in {self.with_faces}{skipped}{rate}"


def input_kind(path: Path) -> str:
    """``folder``, ``image`` or ``video``; raises AnalyzeError when the path does not exist."""
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise AnalyzeError(f"input not found: {path}", EX_NOINPUT)
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


def stills_config(cfg: Config) -> Config:
    """The config for independent images (see the module docstring)."""
    return cfg.model_copy(
        update={
            "detector": cfg.detector.model_copy(update={"every_n": 1}),
            "tracker": cfg.tracker.model_copy(update={"smoothing": 1.0, "max_missed": 0}),
            # every image is classified: a face at the same place in the next image is another face
            "classifier": cfg.classifier.model_copy(update={"max_rate_hz": 0.0}),
        }
    )


class Progress:
    """A one-line progress bar on stderr, redrawn at most 5 times a second; silent unless a TTY
    (tqdm would be one more dependency for the device install, for one line of output)."""

    def __init__(self, total: int, what: str, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.total, self.what = total, what
        self.started = time.monotonic()
        self._drawn = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._drawn < 0.2:
            return
        self._drawn = now
        rate = done / max(now - self.started, 1e-9)
        if self.total > 0:
            frac = min(done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            eta = (self.total - done) / rate if rate > 0 else 0.0
            text = f"[{bar:<30}] {done}/{self.total} {self.what} {frac:4.0%} {rate:5.1f}/s eta {eta:4.0f} s"
        else:
            text = f"{done} {self.what} {rate:5.1f}/s"
        self.stream.write("\r" + text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


class Timeline:
    """Per-frame rows (one per face; one with empty face columns for a frame without faces).

    CSV is streamed row by row; JSON is one document ``{"input", "fps", "labels", "frames":
    [{"frame", "time_s", "faces": [...]}]}`` written at the end.
    """

    def __init__(self, path: Path, labels: tuple[str, ...], source: Path, fps: float) -> None:
        if path.suffix.lower() not in (".csv", ".json"):
            raise AnalyzeError(f"--timeline {path}: the name must end in .csv or .json", EX_USAGE)
        self.path, self.labels = path, labels
        self.json = path.suffix.lower() == ".json"
        self._doc = {"input": str(source), "fps": fps, "labels": list(labels), "frames": []}
        self._fh = _open_output(path)
        if not self.json:
            self._csv = csv.writer(self._fh)
            head = ["frame", "time_s", "track", "primary", "x", "y", "w", "h", "label", "confidence"]
            self._columns = head + [f"p_{name}" for name in labels] + signal_columns()
            self._csv.writerow(self._columns)

    def add(self, index: int, t: float, obs: Observation) -> None:
        if self.json:
            faces = [
                {"track": f.track_id, "primary": f.primary, "box": list(map(int, f.box)), "label": f.label,
                 "confidence": round(f.confidence, 4), "probs": probs_json(f.probs, self.labels),
                 **signals_json(f.signals)}
                for f in obs.faces
            ]
            self._doc["frames"].append({"frame": index, "time_s": round(t, 4), "faces": faces})
            return
        if not obs.faces:
            self._csv.writerow([index, f"{t:.4f}"] + [""] * (len(self._columns) - 2))
        for f in obs.faces:
            cells = ["" if v is None else f"{v:.4f}" for v in signal_cells(f.signals)]
            self._csv.writerow([index, f"{t:.4f}", f.track_id, int(f.primary), *map(int, f.box), f.label,
                                f"{f.confidence:.4f}", *(f"{p:.4f}" for p in f.probs), *cells])

    def close(self) -> None:
        if self.json:
            json.dump(self._doc, self._fh)
        self._fh.close()


def _open_output(path: Path) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", newline="", encoding="utf-8")
    except OSError as exc:
        raise AnalyzeError(f"cannot write {path}: {exc.strerror}", EX_CANTCREAT) from None


def _write_image(path: Path, image: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ok = cv2.imwrite(str(path), image)
    except (OSError, cv2.error) as exc:
        raise AnalyzeError(f"cannot write {path}: {exc}", EX_CANTCREAT) from None
    if not ok:
        raise AnalyzeError(f"cannot write {path} (OpenCV refused the file name or folder)", EX_CANTCREAT)


def analyze_video(pipeline: Pipeline, src: Path, out: Path, timeline: Path | None = None) -> Summary:
    cap = cv2.VideoCapture(str(src))
    ok, image = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
        raise AnalyzeError(f"cannot read video {src}: OpenCV could not open or decode it", EX_NOINPUT)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    h, w = image.shape[:2]
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps, (w, h))
    if not writer.isOpened():
        cap.release()
        raise AnalyzeError(f"cannot write video {out} (OpenCV has no {VIDEO_FOURCC} writer for this name)", EX_CANTCREAT)
    tl = Timeline(timeline, pipeline.labels, src, fps) if timeline else None
    progress = Progress(total, "frames")
    summary = Summary(out, 0, 0)
    t_wall0, started = time.time(), time.monotonic()
    try:
        for index, image in enumerate(_frames(cap, image)):
            t = index / fps
            obs = pipeline.process(Frame(image, index, t, t_wall0 + t))
            writer.write(draw(image, obs, inplace=True))
            if tl:
                tl.add(index, t, obs)
            summary.items += 1
            summary.with_faces += bool(obs.faces)
            progress.update(summary.items)
    finally:
        progress.close()
        cap.release()
        writer.release()
        if tl:
            tl.close()
    summary.seconds = time.monotonic() - started
    return summary


def _frames(cap: cv2.VideoCapture, first: np.ndarray) -> Iterator[np.ndarray]:
    yield first
    while True:
        ok, image = cap.read()
        if not ok:
            return
        yield image


def analyze_images(pipeline: Pipeline, paths: list[Path], outputs: list[Path]) -> Summary:
    """One annotated image per readable input; unreadable ones are logged and counted."""
    summary = Summary(outputs[0].parent if len(outputs) > 1 else outputs[0], 0, 0)
    progress = Progress(len(paths), "images")
    started = time.monotonic()
    try:
        for index, (path, out) in enumerate(zip(paths, outputs)):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                if len(paths) == 1:
                    raise AnalyzeError(f"cannot read image {path}: not an image OpenCV can decode", EX_NOINPUT)
                log.warning("skipping unreadable image %s", path)
                summary.skipped += 1
                continue
            now = time.monotonic()
            obs = pipeline.process(Frame(image, index, now, time.time()))
            _write_image(out, draw(image, obs, inplace=True))
            summary.items += 1
            summary.with_faces += bool(obs.faces)
            progress.update(index + 1)
    finally:
        progress.close()
    summary.seconds = time.monotonic() - started
    if summary.items == 0:
        raise AnalyzeError(f"cannot read any of the {len(paths)} images in {paths[0].parent}", EX_NOINPUT)
    return summary


def analyze(cfg: Config, src: Path, out: Path | None = None, timeline: Path | None = None) -> Summary:
    """Analyse ``src`` (image, folder or video) into ``out`` (default: beside the current folder,
    ``<name>.annotated<suffix>``; a folder for a folder). Raises AnalyzeError."""
    kind = input_kind(src)
    if timeline is not None and kind != "video":
        raise AnalyzeError(f"--timeline applies to video input; {src} is an {kind}", EX_USAGE)
    if kind == "video":
        return analyze_video(Pipeline.from_config(cfg), src, out or Path(f"{src.stem}.annotated.mp4"), timeline)
    if kind == "image":
        return analyze_images(Pipeline.from_config(stills_config(cfg)), [src], [out or Path(f"{src.stem}.annotated{src.suffix}")])
    paths = list_images(src)
    if not paths:
        raise AnalyzeError(f"no {'/'.join(IMAGE_SUFFIXES)} images in folder {src}", EX_NOINPUT)
    folder = out or Path(f"{src.resolve().name}.annotated")
    return analyze_images(Pipeline.from_config(stills_config(cfg)), paths, [folder / p.name for p in paths])


def main(input_path: str, config: str | None, out: str | None, timeline: str | None) -> int:
    """The ``emotiond analyze`` command: config (``--config``, else ./config.yaml if present,
    else the built-in defaults), then :func:`analyze`; errors are one line on stderr."""
    from .config import ConfigError, load_config, parse_config
    from .model.tflite import ModelError
    from .runtime.logs import setup_logging
    from .vision.detectors import DetectorError

    try:
        if config is None and Path("config.yaml").is_file():
            config = "config.yaml"
        cfg = load_config(config) if config else parse_config({}, "<built-in defaults>", Path.cwd())
    except ConfigError as exc:
        print(f"emotiond analyze: {exc}", file=sys.stderr)
        return EX_CONFIG
    setup_logging(cfg.logging.level, cfg.logging.json_format)
    try:
        summary = analyze(cfg, Path(input_path), Path(out) if out else None, Path(timeline) if timeline else None)
    except AnalyzeError as exc:
        print(f"emotiond analyze: {exc}", file=sys.stderr)
        return exc.code
    except (ModelError, DetectorError) as exc:
        print(f"emotiond analyze: {exc}", file=sys.stderr)
        return EX_CONFIG
    print(summary.line() + (f"; timeline {timeline}" if timeline else ""))
    return EX_OK
