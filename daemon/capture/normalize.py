"""What a frame must be before it leaves the capture stage: 8-bit BGR, three channels, big
enough to hold a face. Readers do not all deliver that: an IR camera read without OpenCV's RGB
conversion gives one grey channel (8- or 16-bit), some backends give BGRA, a broken decoder an
empty array. Convertible frames are converted; the rest are rejected, and the capture thread
counts both, so the pipeline sees one kind of image and an odd camera is visible in the stats
rather than a crash in a detector.
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_SIDE = 32  # smaller than the smallest face a detector looks for: nothing to see, skip


def to_bgr(image: object) -> tuple[np.ndarray | None, str]:
    """(8-bit BGR image, what was done) or (None, why it is unusable). ``what`` is "" for a
    frame that was already right, e.g. "grey→BGR" for a converted one."""
    if not isinstance(image, np.ndarray) or image.size == 0:
        return None, "empty frame"
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        return None, f"unusable frame shape {image.shape}"
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        return None, f"frame too small ({w}x{h})"
    done = []
    if image.dtype == np.uint16:  # 16-bit IR/thermal: keep the high byte
        image = (image >> 8).astype(np.uint8)
        done.append("16→8 bit")
    elif image.dtype != np.uint8:
        return None, f"unusable pixel type {image.dtype}"
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        done.append("grey→BGR")
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        done.append("BGRA→BGR")
    return image, ", ".join(done)
