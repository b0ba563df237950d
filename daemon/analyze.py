"""``emotiond analyze INPUT``: run the daemon's pipeline over an image, a folder of images or a
video, and write what it saw: the annotated image(s) or video and/or a results table (one row
per face, ``daemon/results.py``). With ``--results`` and no ``--out``, only the table is
written (a folder of 10,000 photos should not leave 10,000 annotated copies behind).

Same ``Pipeline`` and config as ``emotiond run``, so what an engineer checks here is what the
device does. Differences, on purpose:

* Video: every frame is processed, in order. The daemon's ``FrameSource`` keeps only the
  newest frame (real time means fresh); a file being analysed must not lose any, so frames are
  read here with ``cv2.VideoCapture`` directly and the output has the same count and rate.
* Stills: each image is its own scene, so detection runs on every image (``every_n`` 1), the
  probabilities are not blended with the previous image (``smoothing`` 1) and a face does not
  outlive its image (``max_missed`` 0). Each image also starts with no tracks
  (:func:`forget_tracks`): with a face tracked from the previous image the pipeline would search
  near that face and scan only a part of the frame for others (its video economy), so what
  is found in one photo would depend on the photo before it. Track ids therefore number the
  faces of each image from 1; ``emotiond analyze`` on a video (or ``daemon.api`` with
  ``video=True``) tracks faces across frames.

Exit codes (sysexits.h): 0 done; 64 bad usage; 66 (EX_NOINPUT) input missing or unreadable;
73 (EX_CANTCREAT) output cannot be written; 78 invalid config.
"""

from __future__ import annotations

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
from .results import ResultsError, ResultsWriter
from .types import Frame
from .vision.annotate import draw
from .vision.pipeline import Pipeline

log = logging.getLogger(__name__)
VIDEO_FOURCC = "mp4v"


class AnalyzeError(Exception):
    """A problem with the input or output that ends the run; ``code`` is the exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Summary:
    output: Path | None  # the annotated output (None: not asked for)
    items: int  # frames or images processed
    with_faces: int  # of which had at least one face
    skipped: int = 0  # unreadable images in a folder (logged, counted)
    seconds: float = 0.0
    results: Path | None = None
    rows: int = 0  # rows in the results table

    def line(self) -> str:
        rate = f", {self.items / self.seconds:.1f}/s" if self.seconds > 0 else ""
        skipped = f", skipped {self.skipped} unreadable" if self.skipped else ""
        head = f"wrote {self.output}: {self.items} annotated" if self.output else f"analyzed {self.items}"
        tail = f"; results {self.results} ({self.rows} rows)" if self.results else ""
        return f"{head}, faces in {self.with_faces}{skipped}{rate}{tail}"


def input_kind(path: Path) -> str:
    """``folder``, ``image`` or ``video``; raises AnalyzeError when the path does not exist."""
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise AnalyzeError(f"input not found: {path}", EX_NOINPUT)
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


def stills_config(cfg: Config) -> Config:
    """The config for independent images (see the module docstring): every image scanned whole,
    every face published at once (no confirmation over frames that are not a sequence)."""
    det = {"every_n": 1, "full_scan_every_n": 1, "search_near_tracks": True}
    if getattr(cfg.detector, "tiles", 0):  # a scan spread over frames: one whole pass at the tiles' width
        det |= {"tiles": 0, "downscale_width": cfg.detector.tile_width}
    return cfg.model_copy(
        update={
            "detector": cfg.detector.model_copy(update=det),
            "tracker": cfg.tracker.model_copy(update={"smoothing": 1.0, "max_missed": 0, "confirm_hits": 1,
                                                      "hold_missed": None}),
            # every image is classified: a face at the same place in the next image is another face
            "classifier": cfg.classifier.model_copy(update={"max_rate_hz": 0.0}),
        }
    )


def forget_tracks(pipeline: Pipeline) -> None:
    """Start the next image with no tracks, as if it were the first (see the module docstring)."""
    pipeline.forget()


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


def _write_image(path: Path, image: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ok = cv2.imwrite(str(path), image)
    except (OSError, cv2.error) as exc:
        raise AnalyzeError(f"cannot write {path}: {exc}", EX_CANTCREAT) from None
    if not ok:
        raise AnalyzeError(f"cannot write {path} (OpenCV refused the file name or folder)", EX_CANTCREAT)


def _results(path: Path | None, labels: tuple[str, ...]) -> ResultsWriter | None:
    if path is None:
        return None
    try:
        return ResultsWriter(path, labels)
    except ResultsError as exc:
        raise AnalyzeError(str(exc), EX_USAGE if exc.usage else EX_CANTCREAT) from None


def analyze_video(pipeline: Pipeline, src: Path, out: Path | None, results: Path | None = None) -> Summary:
    cap = cv2.VideoCapture(str(src))
    ok, image = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
        raise AnalyzeError(f"cannot read video {src}: OpenCV could not open or decode it", EX_NOINPUT)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    h, w = image.shape[:2]
    writer = None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps, (w, h))
        if not writer.isOpened():
            cap.release()
            raise AnalyzeError(f"cannot write video {out} (OpenCV has no {VIDEO_FOURCC} writer for this name)", EX_CANTCREAT)
    try:
        table = _results(results, pipeline.labels)
    except AnalyzeError:
        cap.release()
        if writer is not None:
            writer.release()
        raise
    progress = Progress(total, "frames")
    summary = Summary(out, 0, 0, results=results)
    t_wall0, started = time.time(), time.monotonic()
    try:
        for index, image in enumerate(_frames(cap, image)):
            t = index / fps
            obs = pipeline.process(Frame(image, index, t, t_wall0 + t))
            if writer is not None:
                writer.write(draw(image, obs, inplace=True))
            if table:
                table.add(str(src), index, t, obs)
            summary.items += 1
            summary.with_faces += bool(obs.faces)
            progress.update(summary.items)
    finally:
        progress.close()
        cap.release()
        if writer is not None:
            writer.release()
        if table:
            table.close()
            summary.rows = table.rows
    summary.seconds = time.monotonic() - started
    return summary


def _frames(cap: cv2.VideoCapture, first: np.ndarray) -> Iterator[np.ndarray]:
    yield first
    while True:
        ok, image = cap.read()
        if not ok:
            return
        yield image


def analyze_images(pipeline: Pipeline, paths: list[Path], outputs: list[Path] | None,
                   results: Path | None = None) -> Summary:
    """One annotated image per readable input (``outputs``, when given) and/or one results row
    per face; unreadable ones are logged and counted."""
    table = _results(results, pipeline.labels)
    annotated = None if outputs is None else outputs[0].parent if len(outputs) > 1 else outputs[0]
    summary = Summary(annotated, 0, 0, results=results)
    progress = Progress(len(paths), "images")
    started = time.monotonic()
    try:
        for index, path in enumerate(paths):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                if len(paths) == 1:
                    raise AnalyzeError(f"cannot read image {path}: not an image OpenCV can decode", EX_NOINPUT)
                log.warning("skipping unreadable image %s", path)
                summary.skipped += 1
                continue
            now = time.monotonic()
            forget_tracks(pipeline)
            obs = pipeline.process(Frame(image, index, now, time.time()))
            if table:
                table.add(str(path), index, None, obs)
            if outputs is not None:
                _write_image(outputs[index], draw(image, obs, inplace=True))
            summary.items += 1
            summary.with_faces += bool(obs.faces)
            progress.update(index + 1)
    finally:
        progress.close()
        if table:
            table.close()
            summary.rows = table.rows
    summary.seconds = time.monotonic() - started
    if summary.items == 0:
        raise AnalyzeError(f"cannot read any of the {len(paths)} images in {paths[0].parent}", EX_NOINPUT)
    return summary


def analyze(cfg: Config, src: Path, out: Path | None = None, results: Path | None = None) -> Summary:
    """Analyse ``src`` (image, folder or video) into ``out`` (default: in the current folder,
    ``<name>.annotated<suffix>``; a folder for a folder; none when only ``results`` is asked
    for) and the ``results`` table (.csv or .json). Raises AnalyzeError."""
    kind = input_kind(src)
    annotate = out is not None or results is None
    if kind == "video":
        target = (out or Path(f"{src.stem}.annotated.mp4")) if annotate else None
        return analyze_video(Pipeline.from_config(cfg), src, target, results)
    if kind == "image":
        target = (out or Path(f"{src.stem}.annotated{src.suffix}")) if annotate else None
        return analyze_images(Pipeline.from_config(stills_config(cfg)), [src], [target] if target else None, results)
    paths = list_images(src)
    if not paths:
        raise AnalyzeError(f"no {'/'.join(IMAGE_SUFFIXES)} images in folder {src}", EX_NOINPUT)
    folder = out or Path(f"{src.resolve().name}.annotated")
    outputs = [folder / p.name for p in paths] if annotate else None
    return analyze_images(Pipeline.from_config(stills_config(cfg)), paths, outputs, results)


def main(input_path: str, config: str | None, out: str | None, results: str | None) -> int:
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
        summary = analyze(cfg, Path(input_path), Path(out) if out else None, Path(results) if results else None)
    except AnalyzeError as exc:
        print(f"emotiond analyze: {exc}", file=sys.stderr)
        return exc.code
    except (ModelError, DetectorError) as exc:
        print(f"emotiond analyze: {exc}", file=sys.stderr)
        return EX_CONFIG
    print(summary.line())
    return EX_OK
