"""FrameSource on real video: every frame accounted for, newest-frame delivery, looping,
image folders, and sources that fail (missing, stalled) reconnecting with back-off."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import TALKING_HEAD, read_frames, shared_file, wait_until

from daemon.capture.source import Backoff, FrameSource, SourceConfig, source_kind


def clip_frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def drain(src: FrameSource, timeout: float = 30.0, delay: float = 0.0) -> list[tuple[int, int]]:
    """Take frames until the source finishes: [(frame index, frames_read just before get)]."""
    taken = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = src.frames_read
        frame = src.get(0.5)
        if frame is None:
            if src.finished:
                break
            continue
        taken.append((frame.index, before))
        if delay:
            time.sleep(delay)
    return taken


def test_source_kinds(tmp_path):
    assert source_kind("0") == source_kind("/dev/video2") == "camera"
    assert source_kind("rtsp://cam/stream") == source_kind("http://cam/video.mjpg") == "stream"
    assert source_kind(str(tmp_path)) == "folder"
    assert source_kind("clip.mp4") == "file"


def test_backoff_doubles_to_the_cap_and_resets():
    b = Backoff(0.5, 3.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5


def test_file_reads_every_frame_then_finishes():
    clip = shared_file(TALKING_HEAD)
    expected = clip_frame_count(clip)
    assert expected == 225
    statuses: list[bool] = []
    src = FrameSource(SourceConfig(uri=str(clip), realtime=False), on_status=statuses.append)
    src.start()
    taken = drain(src)
    src.stop()
    assert src.finished and src.frames_read == expected
    assert src.fps_nominal == pytest.approx(25.0)
    indices = [i for i, _ in taken]
    assert indices == sorted(set(indices)) and indices[-1] == expected - 1
    assert len(taken) + src.skipped == expected  # every frame was either delivered or counted
    assert statuses == [True, False]
    assert not src._thread.is_alive()


def test_loop_keeps_going_past_the_end():
    clip = shared_file(TALKING_HEAD)
    src = FrameSource(SourceConfig(uri=str(clip), realtime=False, loop=True))
    src.start()
    try:
        assert wait_until(lambda: src.frames_read > 2 * 225 + 10)
        frame = src.get(2.0)
        assert frame is not None and frame.index > 450
        assert not src.finished and src.online and src.reconnects == 0
    finally:
        src.stop()
    assert not src._thread.is_alive()


def test_slow_consumer_skips_and_always_gets_the_newest_frame():
    clip = shared_file(TALKING_HEAD)
    src = FrameSource(SourceConfig(uri=str(clip), realtime=False))
    src.start()
    taken = drain(src, delay=0.02)
    src.stop()
    assert src.skipped > 0
    assert len(taken) + src.skipped == 225
    # At the moment of a get, the slot holds the newest frame read so far (or the next one).
    assert all(index >= before - 1 for index, before in taken)


@pytest.mark.parametrize("uri", ["/nonexistent/clip.mp4", "/dev/video99"])
def test_unreadable_source_goes_offline_and_retries_with_growing_backoff(uri):
    statuses: list[bool] = []
    cfg = SourceConfig(uri=uri, reconnect_initial_s=0.01, reconnect_max_s=0.08, stall_timeout_s=1.0)
    src = FrameSource(cfg, on_status=statuses.append)
    started = time.monotonic()
    src.start()
    try:
        assert wait_until(lambda: src.reconnects >= 6)
        assert statuses == [False]  # reported once, not once per attempt
        assert src.backoff.current == pytest.approx(0.08)  # doubled up to the cap
        assert src.heartbeat > started  # failed open attempts still count as progress
        assert src.get(0.05) is None and not src.online and not src.finished
        assert src._thread.is_alive()
    finally:
        src.stop()


def test_image_folder_source_plays_images_in_name_order(tmp_path):
    frames = read_frames(TALKING_HEAD, limit=12)
    for i in reversed(range(len(frames))):  # created in reverse: order must come from the names
        cv2.imwrite(str(tmp_path / f"frame_{i:03d}.png"), frames[i])
    (tmp_path / "notes.txt").write_text("not an image")
    src = FrameSource(SourceConfig(uri=str(tmp_path), realtime=False))
    delivered = {}
    src.start()
    while (frame := src.get(5.0)) is not None:
        delivered[frame.index] = frame.image
    src.stop()
    assert src.finished and src.frames_read == len(frames)
    assert max(delivered) == len(frames) - 1
    for index, image in delivered.items():
        assert np.array_equal(image, frames[index])


class _MjpegHandler(http.server.BaseHTTPRequestHandler):
    """multipart/x-mixed-replace JPEG stream, as IP cameras serve; pauses while ``paused`` is set."""

    jpegs: list[bytes] = []
    paused = threading.Event()
    stop = threading.Event()

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        i = 0
        try:
            while not self.stop.is_set():
                if self.paused.is_set():
                    time.sleep(0.05)
                    continue
                jpeg = self.jpegs[i % len(self.jpegs)]
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                self.wfile.write(b"Content-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n")
                i += 1
                time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


def test_stalled_stream_goes_offline_then_back_online():
    frames = read_frames(TALKING_HEAD, limit=10, step=10)
    _MjpegHandler.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
    _MjpegHandler.paused.clear()
    _MjpegHandler.stop.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MjpegHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    statuses: list[bool] = []
    uri = f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
    cfg = SourceConfig(uri=uri, stall_timeout_s=0.5, reconnect_initial_s=0.05, reconnect_max_s=0.2)
    src = FrameSource(cfg, on_status=statuses.append)
    src.start()
    try:
        assert wait_until(lambda: src.frames_read >= 5), "no frames from the MJPEG stream"
        assert statuses == [True]
        _MjpegHandler.paused.set()
        assert wait_until(lambda: statuses == [True, False]), statuses
        _MjpegHandler.paused.clear()
        assert wait_until(lambda: statuses == [True, False, True]), statuses
        assert src.reconnects >= 1
        frame = src.get(2.0)
        assert frame is not None and frame.image.shape == frames[0].shape
    finally:
        _MjpegHandler.stop.set()
        src.stop()
        server.shutdown()
        server.server_close()
