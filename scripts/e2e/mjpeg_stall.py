"""A camera that hangs: an HTTP MJPEG stream that sends the first frames of a clip, then keeps
the connection open and sends nothing more (scripts/systemd-e2e.sh's watchdog check).

    python mjpeg_stall.py CLIP PORT FRAMES STAMP

Each connection gets FRAMES frames at the clip's rate, then silence; the time the last frame
went out is appended to STAMP (seconds since the epoch) so the check can time the watchdog.
Runs with the .deb's own interpreter (/opt/emotiond/venv/bin/python: OpenCV to decode).
"""

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

clip, port, count, stamp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cap = cv2.VideoCapture(clip)
fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
jpegs = []
while len(jpegs) < count:
    ok, frame = cap.read()
    if not ok:
        break
    jpegs.append(cv2.imencode(".jpg", frame)[1].tobytes())
cap.release()


class Stall(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for jpg in jpegs:
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg))
            self.wfile.write(jpg + b"\r\n")
            self.wfile.flush()
            time.sleep(1.0 / fps)
        with open(stamp, "a") as fh:  # one line per connection
            fh.write(f"{time.time():.3f}\n")
        time.sleep(3600)  # the hang: connection open, no bytes


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", port), Stall).serve_forever()
