"""Source kinds, tried in order: the first whose ``matches(uri)`` is true opens the source.

To add a kind, write its file (a ``KIND = SourceKind(...)``) and list it here, before ``file``
(the catch-all).
"""

from __future__ import annotations

from . import camera, file, folder, stream
from .base import SourceKind

KINDS: tuple[SourceKind, ...] = (camera.KIND, stream.KIND, folder.KIND, file.KIND)


def kind_of(uri: str) -> SourceKind:
    return next(k for k in KINDS if k.matches(uri))


def source_kind(uri: str) -> str:
    """The name of the kind that opens ``uri``: ``camera``, ``stream``, ``folder`` or ``file``."""
    return kind_of(uri).name
