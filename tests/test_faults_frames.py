"""Odd frames: grey (IR) cameras, 16-bit and BGRA frames, empty and tiny ones, a resolution that
changes mid-stream, 4K, truncated and garbage JPEGs from a live camera, a corrupt and a
truncated video file. Each is converted or skipped, counted in the stats, and never crashes
the pipeline or the daemon.
"""

from __future__ import annotations

import json
import re
import threading

import cv2
import numpy as np
import pytest

from broker import Collector, needs_mosquitto
from cameras import MjpegCamera, clip_jpegs
from conftest import TALKING_HEAD, read_frames, shared_file
from daemon.capture.base import SourceKind
from daemon.capture.config import SourceConfig
from daemon.capture.normalize import to_bgr
from daemon.capture.source import FrameSource
from daemon.config import Config
from daemon.vision.pipeline import Pipeline
from daemon_helpers import DaemonProcess, check_payload, daemon_config, prefix


@pytest.fixture(scope="module")
def face():
    return read_frames(TALKING_HEAD, limit=30)[-1]  # a frame with the face in it


def odd_frames(face: np.ndarray) -> list[tuple[str, object]]:
    grey = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    return [
        ("bgr", face),
        ("grey", grey),
        ("grey 1-channel", grey[:, :, None]),
        ("grey 16-bit", grey.astype(np.uint16) * 257),
        ("bgra", cv2.cvtColor(face, cv2.COLOR_BGR2BGRA)),
        ("empty", np.zeros((0, 0, 3), np.uint8)),
        ("tiny", face[:8, :8]),
        ("float", face.astype(np.float32) / 255),
        ("two channels", face[:, :, :2]),
        ("none", None),  # a reader saying "ok" with no image: a failed read
        ("smaller", cv2.resize(face, (320, 180))),
        ("4K", cv2.resize(face, (3840, 2160))),
    ]


def test_to_bgr_converts_or_rejects_each_kind(face):
    out = {name: to_bgr(img) for name, img in odd_frames(face)}
    for name in ("bgr", "grey", "grey 1-channel", "grey 16-bit", "bgra", "smaller", "4K"):
        image, _ = out[name]
        assert image is not None and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
    assert out["bgr"][1] == "" and out["bgr"][0] is face  # the common case costs nothing
    assert out["grey 16-bit"][1] == "16→8 bit, grey→BGR"
    assert np.array_equal(out["grey 16-bit"][0][:, :, 0], cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
    for name in ("empty", "tiny", "float", "two channels", "none"):
        assert out[name][0] is None and out[name][1], name


class ListReader:
    """A live reader that hands out given frames, then nothing (as a camera that went quiet).
    Each read waits until the test has taken a frame (or the source rejected the last one), so
    the latest-frame slot replaces none."""

    def __init__(self, frames: list) -> None:
        self.frames = list(frames)
        self.go = threading.Semaphore(1)

    def isOpened(self) -> bool:  # noqa: N802
        return True

    def read(self):
        if not self.frames or not self.go.acquire(timeout=5):
            return False, None
        image = self.frames.pop(0)
        if to_bgr(image)[0] is None:
            self.go.release()  # rejected: the test will not take it
        return True, image

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


def test_capture_and_pipeline_take_every_odd_frame_without_a_crash(face, emotion_model):
    frames = odd_frames(face)
    reader = ListReader([img for _, img in frames])
    src = FrameSource(SourceConfig(uri="odd://camera", stall_timeout_s=1.0))
    src._kind = SourceKind("odd", lambda _u: True, lambda _c: (reader, ""), live=True)  # a camera we control
    src.live = True
    cfg = Config.model_validate({"classifier": {"model": str(emotion_model)}, "eyes": {"enabled": False},
                                 "rules": [], "detector": {"type": "haar", "every_n": 1}})
    pipeline = Pipeline.from_config(cfg)
    got = []
    src.start()
    try:
        while len(got) < 7 and (frame := src.get(timeout=5.0)) is not None:
            got.append(frame)
            reader.go.release()
            obs = pipeline.process(frame)  # resolution changes between frames: bgr, 320x180, 4K...
            assert obs.faces is not None
    finally:
        src.stop()
    assert [f.image.shape for f in got] == [(360, 640, 3)] * 5 + [(180, 320, 3), (2160, 3840, 3)]
    assert src.converted == 4 and src.rejected == 5  # the failed read counts once a good frame follows it
    assert all(f.image.dtype == np.uint8 for f in got)


@pytest.fixture
def odd_camera_frames(tmp_path):
    """JPEG parts an odd camera serves: normal, a resolution change, 4K, one-channel grey JPEG,
    a truncated JPEG and garbage bytes."""
    folder = clip_jpegs(shared_file(TALKING_HEAD), tmp_path / "frames", limit=40)
    parts = sorted(folder.glob("f*.jpg"))
    for i, p in enumerate(parts):
        img = cv2.imread(str(p))
        if 10 <= i < 14:
            cv2.imwrite(str(p), cv2.resize(img, (320, 180)))
        elif 20 <= i < 22:
            cv2.imwrite(str(p), cv2.resize(img, (3840, 2160)), [cv2.IMWRITE_JPEG_QUALITY, 50])
        elif 25 <= i < 28:
            cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))  # a one-channel JPEG (IR camera)
        elif i == 30:
            p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])  # truncated
        elif i == 33:
            p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return folder


@needs_mosquitto
def test_daemon_reads_an_odd_mjpeg_camera(tmp_path, broker, emotion_model, odd_camera_frames):
    cam = MjpegCamera(odd_camera_frames, fps=20, log=tmp_path / "mjpeg.log")
    cam.start()
    device = "odd-cam"
    sub = Collector(broker, [f"{prefix(device)}/stats"])
    cfg = daemon_config(tmp_path, broker, device, emotion_model,
                        source={"uri": cam.url, "stall_timeout_s": 5.0},
                        detector={"type": "haar", "every_n": 1},
                        publish={"stats_interval_s": 0.5})
    proc = DaemonProcess(cfg, tmp_path / "odd.log")
    try:
        def frames() -> int:
            stats = [check_payload("stats", m.payload) for m in sub.on(f"{prefix(device)}/stats")]
            return stats[-1]["frames"] if stats else 0

        # Four laps of the odd sequence (2 s each): every kind of part has come by several times.
        assert sub.wait_for(lambda _m: frames() > 40, timeout=60), proc.log()[-3000:]
        assert proc.running and "Traceback" not in proc.log(), proc.log()[-3000:]
        last = check_payload("stats", sub.on(f"{prefix(device)}/stats")[-1].payload)
        assert last["camera_online"] and last["frames_rejected"] > 0  # the truncated and garbage parts
        assert proc.terminate(10) == 0
    finally:
        proc.kill()
        cam.kill()
        sub.close()


def truncated_avi(path, frames: list[np.ndarray]) -> bytes:
    """An MJPEG AVI cut at two thirds (a recording interrupted by a power cut): no index at
    the end, the last frame cut in half. (A cut mp4 loses its moov atom and cannot be opened
    at all: it stays offline and retried, like a missing camera, which other tests cover.)"""
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for f in frames:
        out.write(f)
    out.release()
    data = path.read_bytes()
    return data[: len(data) * 2 // 3]


@pytest.mark.parametrize("kind", ["corrupt", "truncated"])
def test_daemon_plays_a_corrupt_or_truncated_clip_to_its_end(tmp_path, emotion_model, kind):
    if kind == "corrupt":
        clip = bytearray(shared_file(TALKING_HEAD).read_bytes())
        rng = np.random.default_rng(1)
        for at in rng.integers(len(clip) // 10, len(clip) - 1000, 40):  # 40 bursts of garbage in the frames
            clip[at:at + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
        path = tmp_path / "corrupt.mp4"
        path.write_bytes(bytes(clip))
    else:
        path = tmp_path / "truncated.avi"
        path.write_bytes(truncated_avi(path, read_frames(TALKING_HEAD, limit=60)))
    events = tmp_path / "out.jsonl"
    cfg = daemon_config(tmp_path, None, "odd-file", emotion_model, source={"uri": str(path), "realtime": False},
                        outputs=[{"type": "jsonl", "path": str(events), "topics": ["stats"]}],
                        publish={"stats_interval_s": 0.5})
    run = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:
        rc = run.wait(60)
    finally:
        run.kill()
    assert rc == 0 and "Traceback" not in run.log(), f"rc {rc}\n{run.log()[-3000:]}"
    read = int(re.search(r"finished after (\d+) frames", run.log()).group(1))
    stats = json.loads(events.read_text().splitlines()[-1])["payload"]  # the last, written at the end
    check_payload("stats", json.dumps(stats).encode())
    if kind == "corrupt":  # played to its end, the bad frames skipped and counted
        assert read > 200 and stats["frames_rejected"] > 0, (read, stats["frames_rejected"])
    else:  # up to the cut (the last, half-written frame may or may not decode)
        assert 35 <= read <= 41, read
