"""Test hook: a wall clock that a test can step, for a daemon run as a subprocess.

With ``PYTHONPATH`` naming this folder and ``EMOTIOND_TEST_WALL_OFFSET_FILE`` naming a file
that holds a number of seconds, ``time.time()`` (and ``time.time_ns()``) return the real time
plus that number, re-read at most every 50 ms; ``time.monotonic()`` is untouched. That is what
a real clock step (NTP arriving on a unit without an RTC) does to a process.

Why not libfaketime (Debian's ``faketime``): its 0.9.10 breaks Python 3.11's ``time.sleep``
when the monotonic clock is left alone (``--exclude-monotonic``: EINVAL from
``clock_nanosleep``, libfaketime issue #426), and faking the monotonic clock too would be a
different fault from the one under test.
"""

import os

_PATH = os.environ.get("EMOTIOND_TEST_WALL_OFFSET_FILE")

if _PATH:
    import time

    _real_time, _real_time_ns, _monotonic = time.time, time.time_ns, time.monotonic
    _state = {"offset": 0.0, "read_at": float("-inf")}

    def _offset() -> float:
        now = _monotonic()
        if now - _state["read_at"] >= 0.05:
            _state["read_at"] = now
            try:
                with open(_PATH) as fh:
                    _state["offset"] = float(fh.read().strip() or 0)
            except (OSError, ValueError):
                pass  # a half-written file: keep the previous offset
        return _state["offset"]

    time.time = lambda: _real_time() + _offset()
    time.time_ns = lambda: _real_time_ns() + int(_offset() * 1e9)
