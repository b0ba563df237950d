"""The daemon's HTTP endpoint, from outside: ``python -m daemon run`` on the real clip with a
real Mosquitto, read with plain HTTP clients, a Prometheus text parser and OpenCV (the page in
headless Chromium: tests/test_live_page.py). One module-scoped daemon serves the open endpoint;
the token, stall, off and missing-library cases start their own.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from broker import Collector, free_port, needs_mosquitto
from conftest import REPO, TALKING_HEAD, read_frames, shared_file
from daemon.model.precision import choose_model
from daemon.web.http import PreviewSlot
from daemon.types import FaceState, Observation
from daemon_helpers import DaemonProcess, daemon_config, prefix

pytestmark = [needs_mosquitto, pytest.mark.slow]
START_S = 90  # imports and model load on a busy 2-core machine


def get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def wait_listening(d: DaemonProcess, port: int, timeout: float = START_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert d.running, f"daemon exited with {d.proc.poll()}:\n{d.log()[-3000:]}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout} s:\n{d.log()[-3000:]}")


def mjpeg_parts(port: int, count: int, headers: dict[str, str] | None = None) -> list[bytes]:
    """The first ``count`` JPEG parts of /preview.mjpg, parsed by their Content-Length."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("GET", "/preview.mjpg", headers=headers or {})
    resp = conn.getresponse()
    assert resp.status == 200
    ctype = resp.getheader("Content-Type")
    assert ctype.startswith("multipart/x-mixed-replace; boundary=")
    boundary = ctype.split("boundary=")[1].encode()
    parts = []
    try:
        while len(parts) < count:
            line = resp.fp.readline()
            if line.strip() != b"--" + boundary:
                continue
            head = {}
            while (line := resp.fp.readline().strip()):
                k, _, v = line.decode().partition(":")
                head[k.lower()] = v.strip()
            assert head["content-type"] == "image/jpeg"
            parts.append(resp.fp.read(int(head["content-length"])))
    finally:
        conn.close()
    return parts


def metric_values(text: str) -> dict[str, list]:
    """name -> samples, parsed by prometheus-client's own parser of the text format."""
    parser = pytest.importorskip("prometheus_client.parser")
    out: dict[str, list] = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory, broker, emotion_model) -> tuple[DaemonProcess, int]:
    """The clip, looped in real time, with the endpoint on and no token."""
    pytest.importorskip("prometheus_client")
    port = free_port()
    folder = tmp_path_factory.mktemp("served")
    config = daemon_config(folder, broker, "http-test", emotion_model,
                           source={"uri": str(shared_file(TALKING_HEAD)), "loop": True},
                           eyes={"enabled": True}, http={"enabled": True, "port": port, "preview_fps": 10})
    d = DaemonProcess(config)
    try:
        wait_listening(d, port)
        yield d, port
        assert d.terminate(15) == 0, d.log()[-3000:]
    finally:
        d.kill()


def test_healthz_is_200_while_the_clip_plays(served):
    d, port = served
    status, headers, body = get(port, "/healthz")
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"status": "ok", "reason": "ok"}


def test_metrics_parse_and_the_frame_counter_rises(served):
    d, port = served
    status, headers, body = get(port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    first = metric_values(body.decode())
    deadline = time.monotonic() + 30
    while True:
        time.sleep(0.5)
        second = metric_values(get(port, "/metrics")[2].decode())
        if second["emotiond_frames_total"][0].value > first["emotiond_frames_total"][0].value:
            break
        assert time.monotonic() < deadline, "the frame counter did not rise"
    assert second["emotiond_broker_connected"][0].value == 1  # the test broker
    assert second["emotiond_camera_online"][0].value == 1
    assert second["emotiond_faces"][0].value == 1  # one person in the clip
    assert second["emotiond_outbox_backlog"][0].value >= 0
    assert second["emotiond_fps"][0].value > 0
    (info,) = second["emotiond_model_info"]
    # classifier.precision auto: the float sibling on an x86 CPU without VNNI/AMX
    expected = choose_model(REPO / "models" / "emotion_wild.tflite", "auto", "cpu", "int8").path.name
    assert info.labels["delegate"] == "cpu" and info.labels["model"] == expected
    buckets = [s for s in second["emotiond_stage_latency_seconds_bucket"] if s.labels["stage"] == "classify"]
    counts = [s.value for s in buckets]
    assert buckets[-1].labels["le"] == "+Inf" and counts[-1] > 0
    assert counts == sorted(counts)  # cumulative
    assert {s.labels["stage"] for s in second["emotiond_stage_latency_seconds_bucket"]} >= {"detect", "track", "classify", "eyes", "total"}
    assert second["process_resident_memory_bytes"][0].value > 10e6


def test_preview_parts_are_jpegs_of_the_frame(served):
    d, port = served
    parts = mjpeg_parts(port, 3)
    images = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
    assert all(img is not None and img.shape == (360, 640, 3) for img in images)
    assert all(img.std() > 20 for img in images)  # a picture, not a blank


def test_opencv_reads_the_preview_as_a_camera_stream(served):
    """The daemon's own MJPEG source (FFmpeg through OpenCV) is a real client of the preview."""
    d, port = served
    cap = cv2.VideoCapture(f"http://127.0.0.1:{port}/preview.mjpg", cv2.CAP_FFMPEG)
    try:
        assert cap.isOpened()
        ok, frame = cap.read()
    finally:
        cap.release()
    assert ok and frame.shape == (360, 640, 3)


def test_index_page_and_unknown_route(served):
    d, port = served
    status, headers, body = get(port, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'src="preview.mjpg"' in body and b'src="live.js"' in body  # the live page: tests/test_live_page.py
    assert get(port, "/nope")[0] == 404


def clip_thumbnails() -> np.ndarray:
    return np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (80, 45), interpolation=cv2.INTER_AREA)
                     for f in read_frames(TALKING_HEAD, step=5)]).astype(np.float32)


def best_correlation(image: np.ndarray, thumbs: np.ndarray) -> float:
    """Highest normalised correlation of ``image`` (BGR) with any clip thumbnail."""
    g = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (80, 45), interpolation=cv2.INTER_AREA).astype(np.float32)
    g = (g - g.mean()) / (g.std() + 1e-6)
    t = (thumbs - thumbs.mean(axis=(1, 2), keepdims=True)) / (thumbs.std(axis=(1, 2), keepdims=True) + 1e-6)
    return float((t * g).mean(axis=(1, 2)).max())


def folder_then_fifo(folder: Path, frames: int) -> Path:
    """Frames of the clip, then a FIFO nobody writes: cv2.imread blocks opening it, so the
    capture thread stops making progress (as a driver call that never returns would)."""
    folder.mkdir()
    for i, frame in enumerate(read_frames(TALKING_HEAD, limit=frames)):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), frame)
    fifo = folder / "999.jpg"
    os.mkfifo(fifo)
    return fifo


def test_token_required_and_healthz_503_after_the_source_stalls(tmp_path, broker, emotion_model, monkeypatch):
    pytest.importorskip("prometheus_client")
    token = "s3cret-token"
    monkeypatch.setenv("EMOTIOND_HTTP_TOKEN", token)  # the token from the environment
    fifo = folder_then_fifo(tmp_path / "frames", 50)  # 5 s of frames at 10 fps
    port = free_port()
    config = daemon_config(tmp_path / "d", broker, "http-stall", emotion_model,
                           source={"uri": str(fifo.parent), "fps": 10}, health={"hang_timeout_s": 1.5},
                           http={"enabled": True, "port": port})
    d = DaemonProcess(config)
    try:
        wait_listening(d, port)
        bearer = {"Authorization": f"Bearer {token}"}
        for path in ("/", "/healthz", "/metrics", "/preview.mjpg"):
            status, headers, _ = get(port, path)
            assert status == 401, path
            assert "Bearer" in headers["WWW-Authenticate"]
            assert get(port, path, {"Authorization": "Bearer wrong"})[0] == 401
        assert get(port, "/healthz", bearer)[0] == 200  # the frames still flow
        basic = base64.b64encode(f"viewer:{token}".encode()).decode()
        assert get(port, "/", {"Authorization": f"Basic {basic}"})[0] == 200  # a browser's login prompt
        assert cv2.imdecode(np.frombuffer(mjpeg_parts(port, 1, bearer)[0], np.uint8), cv2.IMREAD_COLOR) is not None

        deadline = time.monotonic() + 60
        while (status := get(port, "/healthz", bearer))[0] == 200:
            assert time.monotonic() < deadline, "/healthz stayed 200 after the source stalled"
            time.sleep(0.2)
        status, _, body = status
        assert status == 503
        assert json.loads(body)["reason"].startswith("capture thread made no progress for")
        assert metric_values(get(port, "/metrics", bearer)[2].decode())["emotiond_healthy"][0].value == 0
        assert d.running
    finally:
        if d.running:  # let the blocked open() return (EOF: not an image), so the daemon can end
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        d.kill()


def listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state on sockets the process holds (from /proc, no tools needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def test_with_the_endpoint_off_nothing_listens(tmp_path, broker, emotion_model):
    port = free_port()
    config = daemon_config(tmp_path, broker, "http-off", emotion_model,
                           source={"uri": str(shared_file(TALKING_HEAD)), "loop": True},
                           publish={"state_interval_s": 0.2}, http={"enabled": False, "port": port})
    sub = Collector(broker, [f"{prefix('http-off')}/#"])
    d = DaemonProcess(config)
    try:
        sub.wait_topic(f"{prefix('http-off')}/state", timeout=START_S)  # frames are being processed
        assert d.running
        assert listening_ports(d.proc.pid) == set()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert d.terminate(15) == 0
    finally:
        sub.close()
        d.kill()


def test_enabled_without_prometheus_client_stops_with_a_clear_error(tmp_path, emotion_model, monkeypatch):
    shadow = tmp_path / "shadow" / "prometheus_client"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'prometheus_client'\", name='prometheus_client')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    config = daemon_config(tmp_path / "d", None, "http-nolib", emotion_model,
                           source={"uri": str(shared_file(TALKING_HEAD))}, http={"enabled": True, "port": free_port()})
    d = DaemonProcess(config)
    assert d.wait(START_S) == 78
    assert "http.enabled needs prometheus-client" in d.log() and "pip install 'emotiond[http]'" in d.log()


# -- the preview slot, in process ------------------------------------------------------------


def test_preview_slot_encodes_once_per_period_for_all_viewers_and_forgets_when_nobody_watches():
    a, b = read_frames(TALKING_HEAD, limit=2)
    face = FaceState(track_id=1, box=(266, 26, 140, 140), probs=np.array([0.1, 0.9], np.float32), label="happy",
                     confidence=0.9, primary=True)
    obs = Observation(t=0.0, t_wall=0.0, faces=[face], labels=("sad", "happy"))
    slot = PreviewSlot()
    assert slot.viewers == 0
    with slot.watching(), slot.watching():
        assert slot.viewers == 2
        slot.offer(a, obs)
        seq1, jpeg1 = slot.jpeg(0, period=60.0, quality=80, timeout=1.0)
        slot.offer(b, obs)
        # A second viewer within the period gets the same encode, not a new one.
        assert slot.jpeg(0, period=60.0, quality=80, timeout=1.0) == (seq1, jpeg1)
        # Once the period is over, the newest frame is encoded.
        seq2, jpeg2 = slot.jpeg(seq1, period=0.0, quality=80, timeout=1.0)
        assert seq2 > seq1 and jpeg2 != jpeg1
        decoded = cv2.imdecode(np.frombuffer(jpeg2, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == b.shape
        def greenness(img: np.ndarray) -> float:  # along the primary face's bottom edge
            edge = img[26 + 140 - 1, 266:266 + 140].astype(int)
            return float((edge[:, 1] - edge[:, [0, 2]].max(axis=1)).mean())

        assert greenness(decoded) > 60 > greenness(b) + 30  # the box is drawn (PRIMARY_BGR is green)
        # Nothing newer and the viewer has seen everything: no frame.
        assert slot.jpeg(seq2, period=0.0, quality=80, timeout=0.05) is None
    assert slot.viewers == 0 and slot._latest is None
