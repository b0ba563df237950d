"""A real network camera that drops, stalls and comes back: GStreamer's RTSP server looping the
talking-head clip (and an HTTP MJPEG camera), killed and restarted on the same port while the
daemon reads it. ``camera/status`` (retained, QoS 1) must follow the camera, the pipeline must
resume, and ten drops must leave the daemon's threads, descriptors and memory flat.
"""

from __future__ import annotations

import pytest

from broker import Collector, needs_mosquitto
from cameras import MjpegCamera, RtspCamera, clip_jpegs, proc_usage, rtsp_unavailable
from conftest import TALKING_HEAD, shared_file
from daemon_helpers import DaemonProcess, check_payload, daemon_config, prefix

pytestmark = needs_mosquitto

STALL_S = 1.5
RETURN_S = 5.0  # the bound: online within 5 s of the camera's return


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Three seconds of the talking head as JPEG files (the cameras loop them)."""
    return clip_jpegs(shared_file(TALKING_HEAD), tmp_path_factory.mktemp("clip") / "frames", limit=75)


@pytest.fixture(scope="module")
def rtsp_ok():
    if why := rtsp_unavailable():
        pytest.skip(why)


class Watch:
    """A daemon reading ``uri`` and a subscriber to its camera status and stats."""

    def __init__(self, tmp_path, broker, model, uri: str, device: str) -> None:
        self.pfx = prefix(device)
        self.sub = Collector(broker, [f"{self.pfx}/camera/status", f"{self.pfx}/stats"])
        cfg = daemon_config(tmp_path, broker, device, model,
                            source={"uri": uri, "stall_timeout_s": STALL_S, "reconnect_initial_s": 0.2,
                                    "reconnect_max_s": 1.0},
                            detector={"type": "haar", "every_n": 5},
                            publish={"state_interval_s": 1.0, "stats_interval_s": 0.5})
        self.daemon = DaemonProcess(cfg, tmp_path / f"{device}.log")

    def statuses(self) -> list[bytes]:
        return [m.payload for m in self.sub.on(f"{self.pfx}/camera/status")]

    def wait_status(self, payload: bytes, after: int, timeout: float) -> None:
        """A camera/status message ``payload`` among those after the first ``after``."""
        ok = self.sub.wait_for(lambda _m: payload in self.statuses()[after:], timeout)
        assert ok, f"no camera/status {payload!r} within {timeout} s (got {self.statuses()}):\n{self.daemon.log()[-3000:]}"

    def frames(self) -> int:
        stats = [check_payload("stats", m.payload) for m in self.sub.on(f"{self.pfx}/stats")]
        return stats[-1]["frames"] if stats else 0

    def wait_frames(self, more_than: int, timeout: float = 10.0) -> None:
        ok = self.sub.wait_for(lambda _m: self.frames() > more_than, timeout)
        assert ok, f"the pipeline did not resume (frames stay {self.frames()}):\n{self.daemon.log()[-3000:]}"

    def drop_and_return(self, cam) -> None:
        """Kill the camera: offline within the stall timeout; start it again: online within
        RETURN_S, and the pipeline takes frames again."""
        n = len(self.statuses())
        cam.kill()
        self.wait_status(b"offline", n, STALL_S + 10)
        frames_before = self.frames()
        n = len(self.statuses())
        cam.start()
        self.wait_status(b"online", n, RETURN_S)
        self.wait_frames(frames_before)

    def close(self) -> None:
        try:
            assert self.daemon.terminate(10) == 0
        finally:
            self.daemon.kill()
            self.sub.close()


def test_rtsp_camera_drops_ten_times_and_comes_back(tmp_path, broker, emotion_model, frames, rtsp_ok):
    cam = RtspCamera(frames, fps=30, log=tmp_path / "rtsp.log")
    cam.start()
    w = Watch(tmp_path, broker, emotion_model, cam.url, "rtsp-cam")
    try:
        w.wait_status(b"online", 0, 30)
        w.wait_frames(0)
        usage = []
        for drop in range(11):
            w.drop_and_return(cam)
            # The first cycle warms up what FFmpeg allocates once (decoders, buffer pools).
            usage.append(proc_usage(w.daemon.proc.pid))
        first, last = usage[0], usage[-1]
        assert last["threads"] == first["threads"], usage
        assert last["fds"] == first["fds"], usage
        assert last["rss_mb"] - first["rss_mb"] < 5, usage  # flat: ten reconnects leak no decoder (0.3 MB measured)
        retained = Collector(broker, [f"{w.pfx}/camera/status"])  # a newcomer sees the last word
        try:
            assert retained.wait_topic(f"{w.pfx}/camera/status").payload == b"online"
        finally:
            retained.close()
    finally:
        w.close()
        cam.kill()


def test_rtsp_stream_that_stalls_goes_offline_then_recovers(tmp_path, broker, emotion_model, frames, rtsp_ok):
    """Server alive, connection open, no frames (SIGSTOP): offline after stall_timeout_s."""
    cam = RtspCamera(frames, fps=30, log=tmp_path / "rtsp.log")
    cam.start()
    w = Watch(tmp_path, broker, emotion_model, cam.url, "rtsp-stall")
    try:
        w.wait_status(b"online", 0, 30)
        n = len(w.statuses())
        cam.freeze()
        w.wait_status(b"offline", n, STALL_S + 10)
        assert cam.proc.poll() is None, "the server is alive, only silent"
        assert "no frame for" in w.daemon.log() or "cannot open" in w.daemon.log()
        n = len(w.statuses())
        frames_before = w.frames()
        cam.thaw()
        w.wait_status(b"online", n, RETURN_S + STALL_S)
        w.wait_frames(frames_before)
    finally:
        w.close()
        cam.kill()


def test_mjpeg_http_camera_drops_and_comes_back(tmp_path, broker, emotion_model, frames):
    cam = MjpegCamera(frames, fps=30, log=tmp_path / "mjpeg.log")
    cam.start()
    w = Watch(tmp_path, broker, emotion_model, cam.url, "mjpeg-cam")
    try:
        w.wait_status(b"online", 0, 30)
        w.wait_frames(0)
        w.drop_and_return(cam)
    finally:
        w.close()
        cam.kill()
