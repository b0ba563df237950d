"""A real TUF repository for the update tests: made by ``python -m fleet.publish`` (the operator's
own command) and served by a real HTTP server (python's ``http.server`` in a thread)."""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import REPO

pytest.importorskip("tuf", reason="python-tuf (the updates extra) is not installed")


def publish(repo: Path, keys: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m fleet.publish --repo R --keys K ARGS``; fails the test if it fails."""
    out = subprocess.run([sys.executable, "-m", "fleet.publish", "--repo", str(repo), "--keys", str(keys), *args],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D401 - no request log in the test output
        pass


class RepoServer:
    """``http://127.0.0.1:<port>/`` serving ``folder``; counts the requests."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests = 0
        server = self

        class Handler(_Quiet):
            def do_GET(self) -> None:  # noqa: N802
                server.requests += 1
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def golden_face(folder: Path) -> Path:
    """A face crop for the golden check: the talking head's first face, or skip."""
    import cv2

    from conftest import TALKING_HEAD, read_frames

    frame = read_frames(TALKING_HEAD, limit=1)[0]
    h, w = frame.shape[:2]
    crop = frame[int(h * 0.05):int(h * 0.75), int(w * 0.35):int(w * 0.65)]
    path = folder / "golden.png"
    cv2.imwrite(str(path), crop)
    return path
