"""Give memory freed by a reload back to the system.

A reload builds a new pipeline (models, interpreters, the source's decoder) before the old one
is dropped, so for a moment both are alive. Python frees the old one, but glibc keeps most
freed native memory in its arenas, and the next reload's allocations do not land exactly in
it: measured, the daemon's resident memory grew 5-25 MB a reload, every old pipeline freed
(weak references all dead). ``malloc_trim(0)`` after the old pipeline is gone hands that
memory back; resident memory then stays flat over reloads (bench/soak.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)


def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return getattr(libc, "malloc_trim", None)
    except OSError:
        return None


_TRIM = _malloc_trim()  # None where the C library has no malloc_trim (musl): nothing to do


def release_freed_memory() -> None:
    """Collect cycles, then return free heap pages to the system (glibc only)."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
