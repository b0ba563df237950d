"""FaceMesh face signal: 468 landmarks, head pose, eye and mouth aspect ratios.

The model stage's FaceMesh runner (the face signal that uses it is
``daemon/vision/signals/head_pose.py``). Runs MediaPipe FaceMesh (``face_landmark.tflite``: float32 [1,192,192,3] RGB in [0, 1];
outputs 1404 = 468 x (x, y, z) in crop pixels and one face-presence logit) on a crop around
a face box from any detector, and derives what a driver monitor needs from the mesh.
Dependencies: NumPy, OpenCV, ai_edge_litert (never TensorFlow).

Coordinates: landmarks are returned in frame pixels: x right, y down, z in the same pixel
scale, relative to the head centre, smaller = nearer the camera (FaceMesh's own convention).

Head pose (degrees), for a camera that is NOT mirrored (the subject faces the lens):
  yaw   > 0  the subject turns to THEIR LEFT   (nose moves towards image right)
  pitch > 0  the subject looks UP              (pitch < 0 looks down)
  roll  > 0  head tilts to THEIR LEFT shoulder (face turns clockwise on screen)
Intrinsic yaw-pitch-roll order. Zero is the frontal reference below: the pitch zero is "one
person looking into her camera", so the daemon should still calibrate each driver's neutral.

Why Kabsch/Umeyama on FaceMesh's own 3-D points and not cv2.solvePnP: FaceMesh outputs a
weak-perspective mesh (z already estimated, same scale as x), so a closed-form similarity fit
needs no camera intrinsics, has no local minima, and costs ~0.1 ms. The reference holds only 48
rigid upper-face points (forehead, temples, nose ridge, eye corners, cheekbones, face sides):
eyelids, brows, lips and jaw are left out so blinks, speech and yawns do not move the pose.
It is the Procrustes mean of FaceMesh on talking_head_640x360.mp4 (the most frontal half of the
frames), made left/right symmetric, centred and scaled to unit RMS radius (make_reference.py).

EAR (mean of both eyes, 2-D, Soukupova & Cech form (|p2-p6| + |p3-p5|) / (2 |p1-p4|)):
  subject-right eye p1..p6 = 33, 159, 158, 133, 153, 145
  subject-left  eye p1..p6 = 362, 385, 386, 263, 374, 380
These reproduce talking_head_640x360.ear_mar.csv to 0.0002; the often-quoted set with 160/144
and 387/373 reads ~8 % lower (with the default second upright pass, agreement is corr 0.98,
mean abs diff 0.014: see REPORT.md). MAR = |13-14| / |78-308| (inner lips over inner mouth corners, 2-D).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from .tflite import ModelError, _litert

_SIZE = 192          # model input side
_MARGIN = 1.5        # crop side = 1.5 x box side, i.e. 25 % margin each side, as MediaPipe
_EYES = ((33, 159, 158, 133, 153, 145), (362, 385, 386, 263, 374, 380))
_MOUTH = (13, 14, 78, 308)
_EYE_CORNERS = (33, 263)  # outer eye corners: the face's width scale for the mouth width

# Rigid reference, camera axes (x right, y down, z away from camera), unit RMS radius.
_MID_IDX = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 2)
_MID_YZ = (  # midline points: x = 0
    -0.9834, -0.1693, -0.7210, -0.2529, -0.4504, -0.3218, -0.2939, -0.3178, -0.1473, -0.3283,
    -0.0068, -0.4157, 0.1097, -0.5127, 0.2152, -0.6204, 0.3290, -0.7285, 0.4727, -0.7798,
    0.5923, -0.7534, 0.7177, -0.5100)
_RIGHT_IDX = (109, 67, 103, 54, 21, 33, 133, 130, 226, 116, 123, 50, 117, 234, 127, 93, 98, 64)
_LEFT_IDX = (338, 297, 332, 284, 251, 263, 362, 359, 446, 345, 352, 280, 346, 454, 356, 323, 327, 294)
_SIDE_XYZ = (  # subject-right side (image left); the left side is its mirror x -> -x
    -0.3123, -0.9703, -0.1455, -0.5762, -0.9147, -0.0419, -0.8169, -0.7950, 0.1337,
    -0.9730, -0.6223, 0.3304, -1.0686, -0.4070, 0.5100, -0.7708, -0.0313, 0.0259,
    -0.3020, -0.0090, -0.0642, -0.8059, -0.0286, 0.0457, -0.8639, 0.0018, 0.0873,
    -1.0486, 0.2694, 0.2025, -1.0473, 0.4961, 0.1522, -0.8311, 0.5169, -0.1315,
    -0.8850, 0.2540, -0.0020, -1.1187, 0.3371, 0.8806, -1.1324, 0.0860, 0.8322,
    -1.1019, 0.5887, 0.8598, -0.2965, 0.6887, -0.3755, -0.3278, 0.6227, -0.4446)


def _build_reference() -> tuple[np.ndarray, np.ndarray]:
    mid = np.array(_MID_YZ, np.float64).reshape(-1, 2)
    side = np.array(_SIDE_XYZ, np.float64).reshape(-1, 3)
    ref = np.vstack([np.c_[np.zeros(len(mid)), mid], side, side * (-1.0, 1.0, 1.0)])
    ref -= ref.mean(0)
    return np.array(_MID_IDX + _RIGHT_IDX + _LEFT_IDX), ref / np.sqrt((ref ** 2).sum(1).mean())


RIGID_IDX, REFERENCE = _build_reference()
# Residual (RMS, in reference units) at which pose_confidence halves. Measured: 0.03-0.06 on
# good frontal frames, higher on very turned or mis-cropped faces (see REPORT.md).
_RESID_HALF = 0.10
_RETILT_DEG = 3.0    # eye-line tilt (deg) above which the crop is re-run upright
_FLIP = np.diag([1.0, -1.0, -1.0])   # camera axes -> x right, y up, z towards the camera


def estimate_pose(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """(yaw, pitch, roll, residual) from a (468, 3) mesh in any uniform pixel scale.

    Umeyama similarity fit  P ~ s R REF + t  on the rigid subset; residual is the RMS misfit
    after removing scale, in units of the reference radius (0 = perfect rigid match)."""
    p = landmarks[RIGID_IDX].astype(np.float64)
    p -= p.mean(0)
    u, sv, vt = np.linalg.svd(REFERENCE.T @ p)
    d = 1.0 if np.linalg.det(vt.T @ u.T) > 0 else -1.0   # forbid reflections
    rot = vt.T @ np.diag((1.0, 1.0, d)) @ u.T
    scale = (sv[0] + sv[1] + d * sv[2]) / len(p)          # REFERENCE has unit RMS radius
    resid = float(np.sqrt(((p - scale * REFERENCE @ rot.T) ** 2).sum(1).mean()) / max(scale, 1e-9))
    r = _FLIP @ rot @ _FLIP           # R = Ry(yaw) Rx(-pitch) Rz(-roll) in the y-up frame
    yaw = np.degrees(np.arctan2(r[0, 2], r[2, 2]))
    pitch = np.degrees(np.arcsin(np.clip(r[1, 2], -1.0, 1.0)))
    roll = -np.degrees(np.arctan2(r[1, 0], r[1, 1]))
    return float(yaw), float(pitch), float(roll), resid


def _dist(lm: np.ndarray, a: int, b: int) -> float:
    return float(np.hypot(*(lm[a, :2] - lm[b, :2])))


def _eye_line_deg(lm: np.ndarray) -> float:
    """Angle of the line between the outer eye corners (33 -> 263) in the frame, degrees."""
    dx, dy = lm[263, :2] - lm[33, :2]
    return float(np.degrees(np.arctan2(dy, dx)))


def eye_aspect_ratio(lm: np.ndarray) -> float:
    """Mean 6-point EAR of both eyes (2-D); ~0.3 open, < ~0.15 closed."""
    ears = [(_dist(lm, p2, p6) + _dist(lm, p3, p5)) / (2.0 * max(_dist(lm, p1, p4), 1e-6))
            for p1, p2, p3, p4, p5, p6 in _EYES]
    return float(np.mean(ears))


def mouth_aspect_ratio(lm: np.ndarray) -> float:
    """Inner-lip gap 13-14 over inner mouth width 78-308 (2-D); ~0 closed."""
    top, bottom, left, right = _MOUTH
    return _dist(lm, top, bottom) / max(_dist(lm, left, right), 1e-6)


def mouth_width(lm: np.ndarray) -> float:
    """Inner mouth width (78-308) over the outer eye-corner distance (33-263), 2-D. A yawn
    stretches the mouth into a tall O (narrower than at rest); a shout or a laugh widens it:
    on mouth_open_480x480.mp4, 0.45 in the yawn, 0.50 at rest, 0.58 in the shout."""
    return _dist(lm, _MOUTH[2], _MOUTH[3]) / max(_dist(lm, *_EYE_CORNERS), 1e-6)


@dataclass(slots=True)
class MeshReading:
    landmarks: np.ndarray   # (468, 3) float32, frame pixels (z same scale, relative)
    presence: float         # 0..1 face presence probability from the model
    yaw: float              # degrees, > 0 subject turns to their left
    pitch: float            # degrees, > 0 looking up, < 0 looking down
    roll: float             # degrees, > 0 head tilts to the subject's left shoulder
    pose_confidence: float  # 0..1, presence x fit quality
    ear: float              # eye aspect ratio, mean of both eyes
    mar: float              # mouth aspect ratio
    mouth_width: float      # inner mouth width over eye-corner distance (yawn: narrower)
    pose_residual: float = 0.0  # raw rigid-fit misfit (reference units), for diagnostics
    tilt: float = 0.0       # eye line's angle in the frame (degrees): the next frame's tilt_hint


class FaceMesh:
    """FaceMesh on a detector box. One instance per thread (the interpreter is not shareable)."""

    def __init__(self, model_path: str | os.PathLike, threads: int = 1,
                 min_presence: float = 0.5, retilt_deg: float | None = _RETILT_DEG) -> None:
        """min_presence: read() returns None below it (0 = always return a reading).
        retilt_deg: eye-line tilt above which a second, upright crop is run; None = one pass
        only (half the cost, reproduces the project's ear_mar.csv exactly, roll under-read)."""
        path = os.fspath(model_path)
        if not os.path.isfile(path):
            raise ModelError(f"FaceMesh model file not found: {path}")
        try:
            self._it = _litert().Interpreter(model_path=path, num_threads=threads)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # LiteRT's errors for a bad flatbuffer
            raise ModelError(f"FaceMesh model could not be loaded: {path}: {exc}") from None
        inp = self._it.get_input_details()
        out = {int(np.prod(d["shape"])): d["index"] for d in self._it.get_output_details()}
        if len(inp) != 1 or tuple(inp[0]["shape"]) != (1, _SIZE, _SIZE, 3) or 1404 not in out or 1 not in out:
            raise ModelError(f"{path} is not a 468-point FaceMesh model (input "
                             f"{[d['shape'].tolist() for d in inp]}, output sizes {sorted(out)})")
        self._in, self._out_lm, self._out_score = inp[0]["index"], out[1404], out[1]
        self.min_presence, self.retilt_deg = min_presence, retilt_deg
        self.second_passes = 0  # reads that needed a second, re-rotated crop
        # Reused buffers: the crop, its RGB version and the float input tensor.
        self._crop = np.zeros((_SIZE, _SIZE, 3), np.uint8)
        self._rgb = np.zeros((_SIZE, _SIZE, 3), np.uint8)
        self._input = np.zeros((1, _SIZE, _SIZE, 3), np.float32)

    def read(self, frame_bgr: np.ndarray, box: tuple[int, int, int, int], tilt_hint: float = 0.0) -> MeshReading | None:
        """Landmarks and signals for the face in box (x, y, w, h, frame pixels).

        ``tilt_hint``: the eye line's angle in the previous frame of this face (``reading.tilt``);
        the crop is rotated by it, so a steadily tilted head needs one pass, not two.
        Returns None for an empty box or when presence < min_presence."""
        x, y, w, h = (float(v) for v in box)
        if w <= 1 or h <= 1 or frame_bgr is None or frame_bgr.size == 0:
            return None
        cx, cy, side = x + w / 2, y + h / 2, max(w, h) * _MARGIN
        angle = tilt_hint if self.retilt_deg is not None else 0.0
        presence, lm = self._run(frame_bgr, cx, cy, side, angle)
        # FaceMesh is trained on upright crops (MediaPipe rotates them using the eyes, from the
        # previous frame as here): on a crop tilted against the head it under-reads the tilt (30
        # deg reads ~20, worse on small faces looking down) and the other landmarks suffer too.
        # When the crop's angle is off by more than retilt_deg, run again on an upright crop.
        tilt = _eye_line_deg(lm)
        if self.retilt_deg is not None and abs(tilt - angle) > self.retilt_deg and presence >= self.min_presence:
            presence, lm = self._run(frame_bgr, cx, cy, side, tilt)
            tilt = _eye_line_deg(lm)
            self.second_passes += 1
        if presence < self.min_presence:
            return None
        yaw, pitch, roll, resid = estimate_pose(lm)
        conf = presence * 0.5 ** ((resid / _RESID_HALF) ** 2)
        return MeshReading(lm, presence, yaw, pitch, roll, float(conf),
                           eye_aspect_ratio(lm), mouth_aspect_ratio(lm), mouth_width(lm), resid, float(tilt))

    def _run(self, frame: np.ndarray, cx: float, cy: float, side: float,
             angle: float) -> tuple[float, np.ndarray]:
        """Crop a side x side square centred at (cx, cy), rotated by angle (deg, counter-
        clockwise), run the model; return (presence, (468, 3) landmarks in frame pixels)."""
        k = _SIZE / side                                   # crop pixels per frame pixel
        m = cv2.getRotationMatrix2D((cx, cy), angle, k)
        m[:, 2] += (_SIZE / 2 - cx, _SIZE / 2 - cy)
        # warpAffine pads outside the frame with black, so faces cut by the frame edge still
        # get a correctly scaled, centred crop (MediaPipe pads the same way).
        colour = frame.ndim == 3
        crop = cv2.warpAffine(frame, m, (_SIZE, _SIZE), dst=self._crop if colour else None,
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        cv2.cvtColor(crop, cv2.COLOR_BGR2RGB if colour else cv2.COLOR_GRAY2RGB, dst=self._rgb)
        np.multiply(self._rgb, np.float32(1.0 / 255.0), out=self._input[0])   # model wants [0, 1]
        self._it.set_tensor(self._in, self._input)
        self._it.invoke()
        logit = float(self._it.get_tensor(self._out_score).ravel()[0])
        presence = float(1.0 / (1.0 + np.exp(-np.clip(logit, -50.0, 50.0))))
        lm = self._it.get_tensor(self._out_lm).reshape(468, 3).astype(np.float32)  # a copy
        inv = cv2.invertAffineTransform(m)                 # crop -> frame pixels
        lm[:, :2] = lm[:, :2] @ inv[:, :2].T + inv[:, 2]
        lm[:, 2] /= k
        return presence, lm
