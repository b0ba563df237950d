"""A real RTSP camera for the tests and the soak bench: GStreamer's RTSP server, looping a clip.

Run with the *system* Python (``/usr/bin/python3``): Debian's ``python3-gi`` and
``gir1.2-gst-rtsp-server-1.0`` serve it, not the project's venv, so the tests start this file
as a child process (``tests/cameras.py``) and kill it to make the camera drop.

The clip is served as RTP/JPEG from a folder of numbered JPEG files (``f0000.jpg`` ...) that
the caller writes once (OpenCV, in the venv). Why JPEG files rather than the mp4: RTP/JPEG
needs no encoder (x264 would take CPU the daemon under test needs) and no decoder plugin
(Debian keeps ``avdec_h264`` in ``gstreamer1.0-libav``); and the loop is ours. ``multifilesrc
loop=true`` does not loop an mp4 through ``qtdemux`` (the demuxer sees one stream end), and a
looping ``multifilesrc`` over the JPEG files puts no timestamps on its buffers, so nothing
paces it (a client reads 700 frames a second). Here an ``appsrc`` is fed one file per tick of a
GLib timer at ``--fps``, stamped live: a camera's pace and a camera's endless stream.

Usage: rtsp_server.py --port N --frames DIR [--fps 30] [--mount /cam]
Prints ``READY rtsp://127.0.0.1:N/cam`` once it listens.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


class Camera:
    """Feeds the ``appsrc`` of the (shared) media from a timer; a new media gets a new timer."""

    def __init__(self, frames: list[bytes], fps: int) -> None:
        self.frames = frames
        self.fps = fps
        self.n = 0
        self.timer = 0

    def on_media_configure(self, _factory, media) -> None:
        self._stop_timer()
        src = media.get_element().get_by_name("src")
        src.set_property("caps", Gst.Caps.from_string(f"image/jpeg,framerate={self.fps}/1"))
        self.timer = GLib.timeout_add(max(1, round(1000 / self.fps)), self._push, src)
        media.connect("unprepared", lambda _m: self._stop_timer())

    def _stop_timer(self) -> None:
        if self.timer:
            GLib.source_remove(self.timer)
            self.timer = 0

    def _push(self, src) -> bool:
        data = self.frames[self.n % len(self.frames)]
        self.n += 1
        src.emit("push-buffer", Gst.Buffer.new_wrapped(data))
        return True


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--frames", required=True, help="folder of f0000.jpg, f0001.jpg, ...")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--mount", default="/cam")
    args = ap.parse_args()
    files = sorted(Path(args.frames).glob("f*.jpg"))
    if not files:
        print(f"no f*.jpg in {args.frames}", file=sys.stderr, flush=True)
        return 1
    camera = Camera([f.read_bytes() for f in files], args.fps)
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch("( appsrc name=src is-live=true do-timestamp=true format=time "
                       "! jpegparse ! rtpjpegpay name=pay0 pt=26 )")
    factory.set_shared(True)  # one pipeline for every client, as a camera has
    factory.connect("media-configure", camera.on_media_configure)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print(f"READY rtsp://127.0.0.1:{args.port}{args.mount}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
