"""What a source kind is: a name, a URI test, an opener, and whether it is live.

An opener returns a *reader* with ``cv2.VideoCapture``'s four calls (``isOpened``, ``read``,
``get``, ``release``), so the capture thread treats a camera, a stream, a file and a folder of
images alike, or ``None`` and the reason it could not open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .config import SourceConfig


class Reader(Protocol):
    def isOpened(self) -> bool: ...  # noqa: N802 - cv2.VideoCapture's naming

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


Opener = Callable[[SourceConfig], "tuple[Reader | None, str]"]


@dataclass(frozen=True)
class SourceKind:
    name: str  # shown in logs and returned by registry.source_kind()
    matches: Callable[[str], bool]  # does this kind handle the URI?
    open: Opener
    live: bool  # live sources are never paced and never "finish"; files and folders are and do
