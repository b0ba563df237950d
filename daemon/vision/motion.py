"""A face box's motion between detections: a constant-velocity Kalman filter (OpenCV's).

State (centre x, centre y, width, height) and their velocities, in pixels and pixels per
second, so frames dropped under load (a longer ``dt``) move the prediction further instead of
slowing it. Noise scales with the box height, as in ByteTrack/SORT: a near, large face moves
more pixels than a far, small one for the same walking speed.

OpenCV's ``cv2.KalmanFilter`` does the algebra (OpenCV is already on the device); this module
only builds its matrices. Detection boxes are what the tracker publishes when a face is
matched; the filter gives the box between detections and the gate for association.
"""

from __future__ import annotations

import numpy as np

from ..types import Box

# Per-second standard deviations as fractions of the box height (ByteTrack's per-frame 1/20
# and 1/160 at 25 frames/s, rounded); the measurement noise is YuNet/Haar box jitter.
POSITION_STD = 0.05
VELOCITY_STD = 0.15
MEASUREMENT_STD = 0.05
MAX_DT = 1.0  # a longer gap (camera stall) is predicted as one second: velocity is stale by then


class BoxMotion:
    """One track's filter: ``predict(t)`` on every frame, ``correct(box)`` on a match."""

    __slots__ = ("kf", "t")

    def __init__(self, box: Box, t: float) -> None:
        import cv2  # here, not at the top: validating a config imports the tracker's module, not OpenCV

        kf = cv2.KalmanFilter(8, 4, 0, cv2.CV_64F)
        kf.measurementMatrix = np.eye(4, 8, dtype=np.float64)
        x, y, w, h = box
        kf.statePost = np.array([[x + w / 2.0], [y + h / 2.0], [w], [h], [0.0], [0.0], [0.0], [0.0]], np.float64)
        side = max(float(h), 1.0)
        std = np.r_[[2 * POSITION_STD * side] * 4, [10 * VELOCITY_STD * side] * 4]
        kf.errorCovPost = np.diag(std**2)
        self.kf = kf
        self.t = t

    def predict(self, t: float) -> Box:
        """Advance to time ``t`` (monotonic seconds) and return the predicted box."""
        dt = min(max(t - self.t, 0.0), MAX_DT)
        self.t = t
        if dt > 0:
            kf = self.kf
            side = max(float(kf.statePost[3, 0]), 1.0)
            a = np.eye(8, dtype=np.float64)
            a[0:4, 4:8] = np.eye(4) * dt
            kf.transitionMatrix = a
            q = np.r_[[(POSITION_STD * side) ** 2] * 4, [(VELOCITY_STD * side) ** 2] * 4] * dt
            kf.processNoiseCov = np.diag(q)
            kf.predict()
        return self.box

    def correct(self, box: Box) -> None:
        x, y, w, h = box
        side = max(float(h), 1.0)
        self.kf.measurementNoiseCov = np.eye(4) * (MEASUREMENT_STD * side) ** 2
        self.kf.correct(np.array([[x + w / 2.0], [y + h / 2.0], [w], [h]], np.float64))

    def damp(self, factor: float) -> None:
        """Shrink the velocity (a lost face is more likely to have stopped than to walk on)."""
        self.kf.statePost[4:8] *= factor

    @property
    def box(self) -> Box:
        cx, cy, w, h = (float(v) for v in self.kf.statePost[:4, 0])
        w, h = max(w, 1.0), max(h, 1.0)
        return int(round(cx - w / 2)), int(round(cy - h / 2)), int(round(w)), int(round(h))
