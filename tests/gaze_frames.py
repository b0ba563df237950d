"""Real frames with the eyes moved: the iris cut out of each eye and pasted back at a known offset.

Builds gaze test sequences from the talking head's real frames: MediaPipe Iris finds each eye's
iris and lids; the iris disk is inpainted away (OpenCV's Telea inpainting fills it from the
sclera and lids around it), then pasted back shifted by a known share of the eye's width,
clipped to the lid aperture so the lids still cover what they covered. The head does not move,
so this is an eyes-only ("lizard") glance with a known eye-in-head offset.
"""

from __future__ import annotations

import cv2
import numpy as np

from daemon.model.iris import EyeReading


def move_iris(frame: np.ndarray, eyes: tuple[EyeReading, EyeReading], dx: float, dy: float = 0.0) -> np.ndarray:
    """A copy of ``frame`` with both irises moved by (dx, dy) eye widths (x towards image right)."""
    out = frame.copy()
    for eye in eyes:
        shift = np.array([dx, dy]) * eye.width_px
        centre = eye.iris[0].astype(np.float64)
        radius = float(np.linalg.norm(eye.iris[1:] - eye.iris[0], axis=1).mean()) * 1.15  # the dark rim too
        aperture = np.zeros(frame.shape[:2], np.uint8)
        lids = np.vstack([eye.contour[0:9], eye.contour[15:8:-1]])  # lower lid out -> in, upper lid in -> out
        cv2.fillPoly(aperture, [np.round(lids * 16).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4)
        disk = np.zeros_like(aperture)
        cv2.circle(disk, tuple(np.round(centre * 16).astype(int)), int(round(radius * 16)), 255, -1, shift=4)
        hole = cv2.dilate(cv2.bitwise_and(disk, aperture), np.ones((3, 3), np.uint8))
        clean = cv2.inpaint(out, hole, 3, cv2.INPAINT_TELEA)
        m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
        moved = cv2.warpAffine(out, m, (frame.shape[1], frame.shape[0]), flags=cv2.INTER_LINEAR)
        moved_disk = cv2.warpAffine(disk, m, (frame.shape[1], frame.shape[0]), flags=cv2.INTER_LINEAR)
        alpha = (cv2.GaussianBlur(cv2.bitwise_and(moved_disk, aperture), (3, 3), 0).astype(np.float32) / 255.0)[:, :, None]
        out = (clean * (1 - alpha) + moved * alpha).astype(np.uint8)
    return out
