"""Real network cameras for the fault tests and the soak bench, each a child process that a test
can kill, freeze and start again on the same port.

* :class:`RtspCamera`: GStreamer's RTSP server (``tests/rtsp_server.py``, run by the system
  Python because Debian's ``python3-gi`` serves that one) looping the talking-head clip.
* :class:`MjpegCamera`: an HTTP MJPEG camera (``tests/mjpeg_server.py``, standard library).

Both serve a folder of JPEG files that :func:`clip_jpegs` writes from a clip once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_PACKAGES = "gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good"


def rtsp_unavailable() -> str | None:
    """Why the RTSP camera cannot run here (for a skip), or None."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found (the RTSP server runs with the system Python)"
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
             "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
             "assert all(Gst.ElementFactory.find(e) for e in ('appsrc', 'jpegparse', 'rtpjpegpay')), 'plugins'")
    r = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
    if r.returncode:
        return f"GStreamer RTSP server not usable ({r.stderr.strip().splitlines()[-1:]}): apt-get install {RTSP_PACKAGES}"
    return None


def clip_jpegs(clip: Path, folder: Path, limit: int | None = None, quality: int = 80) -> Path:
    """The clip's frames as ``folder/f0000.jpg``, ``f0001.jpg``, ... (written once)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.glob("f*.jpg")):
        return folder
    cap = cv2.VideoCapture(str(clip))
    n = 0
    while (limit is None or n < limit) and (frame := cap.read()[1]) is not None:
        cv2.imwrite(str(folder / f"f{n:04d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
        n += 1
    cap.release()
    if not n:
        raise RuntimeError(f"no frame could be read from {clip}")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _ChildCamera:
    """A camera server child process: ``start`` (waits for READY), ``kill`` (SIGKILL: the camera
    drops), ``freeze``/``thaw`` (SIGSTOP/SIGCONT: alive, connected, sending nothing)."""

    def __init__(self, frames: Path, fps: int, port: int | None, log: Path) -> None:
        self.frames = frames
        self.fps = fps
        self.port = port or free_port()
        self.log_path = log
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=log, text=True)
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            # One line, "READY <url>", then silence: a blocking readline is safe and bounded
            # by the child exiting (EOF) if it fails.
            line = self.proc.stdout.readline()
            if line.startswith("READY "):
                self.url = line.split()[1]
                return
            if self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"camera server did not start: {line!r}; log:\n{self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a frozen process must be able to die cleanly
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            self.proc.stdout.close()
        self.proc = None

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


class RtspCamera(_ChildCamera):
    def __init__(self, frames: Path, fps: int = 30, port: int | None = None, log: Path | None = None) -> None:
        super().__init__(frames, fps, port, log or frames.parent / "rtsp_server.log")

    def command(self) -> list[str]:
        return [SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), "--port", str(self.port), "--frames", str(self.frames),
                "--fps", str(self.fps)]


class MjpegCamera(_ChildCamera):
    def __init__(self, frames: Path, fps: int = 30, port: int | None = None, log: Path | None = None) -> None:
        super().__init__(frames, fps, port, log or frames.parent / "mjpeg_server.log")

    def command(self) -> list[str]:
        return [sys.executable, str(HERE / "mjpeg_server.py"), "--port", str(self.port), "--frames", str(self.frames),
                "--fps", str(self.fps)]


def proc_usage(pid: int) -> dict[str, float]:
    """Threads, open file descriptors and resident memory (MB) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"threads": int(fields["Threads"]), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "rss_mb": int(fields["VmRSS"].split()[0]) / 1024}
