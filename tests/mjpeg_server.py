"""An HTTP MJPEG camera (``multipart/x-mixed-replace``, as IP cameras serve it) looping a folder
of JPEG files at ``--fps``: standard library only, run as a child process by the tests.

Usage: mjpeg_server.py --port N --frames DIR [--fps 30]   prints ``READY http://127.0.0.1:N/video.mjpg``
"""

from __future__ import annotations

import argparse
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BOUNDARY = "camframe"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--fps", type=int, default=30)
    args = ap.parse_args()
    frames = [p.read_bytes() for p in sorted(Path(args.frames).glob("f*.jpg"))]
    period = 1.0 / args.fps

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.end_headers()
            t0, n = time.monotonic(), 0
            try:
                while True:
                    jpeg = frames[n % len(frames)]
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                     .encode() + jpeg + b"\r\n")
                    n += 1
                    time.sleep(max(0.0, t0 + n * period - time.monotonic()))
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"READY http://127.0.0.1:{args.port}/video.mjpg", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
