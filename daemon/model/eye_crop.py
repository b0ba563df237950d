"""Eye patches as the eye-state model sees them: the crop contract its manifest names.

One function cuts both eyes of a face, at training time (``converter eyes``, on frames of real
clips seen from other cameras) and in the daemon (``daemon/vision/signals/eyes.py``), so the two
never disagree about what an eye patch is:

* each eye is a square ``eye_widths`` eye widths wide (corner to corner), centred on the
  midpoint of its two corners and **rotated upright** so that the corner line is horizontal: a
  head rolled, tilted or turned by the camera's placement gives the same kind of patch as a
  frontal one (only foreshortened: a face turned 40 degrees narrows its eyes by ~25 %);
* the image-right eye is **mirrored**, so the model sees every eye the same way round;
* grey, resized straight to the model's input side by one affine warp (area-averaged first when
  the eye is much larger than the patch: a 200-px face must not alias its lid edge away).

Where the corners come from: the face mesh (``head_pose``'s FaceMesh points 33/133 and 263/362,
MediaPipe Iris's own corners) when the face has one, else the detector's two eye centres, from
which the corners are placed ``EYE_WIDTH_PER_IOD`` inter-ocular distances apart along the eye
line (measured on the shared clips' frontal frames, FaceMesh corners against YuNet's eye points).
"""

from __future__ import annotations

import cv2
import numpy as np

# FaceMesh eye corners (outer, inner): the image-left eye (the subject's right), the image-right
# eye. The same points as MediaPipe Iris's crop (daemon/model/iris.py).
MESH_EYE_CORNERS = ((33, 133), (263, 362))
# Eye width (corner to corner) over the distance between the two eye centres. FaceMesh corners
# against YuNet eye points on frontal frames of talking_head and eyes_shut_desk: 0.43-0.47.
EYE_WIDTH_PER_IOD = 0.45
EYE_WIDTHS = 1.6  # the patch side in eye widths: the eye, its lids and a little brow and cheek


def corners_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """(2, 2, 2) float32: per eye (image-left first) its two corners, from a FaceMesh."""
    return np.asarray([[mesh[a, :2], mesh[b, :2]] for a, b in MESH_EYE_CORNERS], dtype=np.float32)


def corners_from_centres(centres: np.ndarray) -> np.ndarray:
    """(2, 2, 2) float32: corners placed around two eye centres (image-left first), along the
    eye line, ``EYE_WIDTH_PER_IOD`` inter-ocular distances apart."""
    c = np.asarray(centres, dtype=np.float32).reshape(2, 2)
    half = (c[1] - c[0]) * (EYE_WIDTH_PER_IOD / 2.0)
    return np.stack([np.stack([c[k] - half, c[k] + half]) for k in range(2)]).astype(np.float32)


def eye_widths_px(corners: np.ndarray) -> np.ndarray:
    """(2,) each eye's width in frame pixels (corner to corner)."""
    return np.linalg.norm(corners[:, 1] - corners[:, 0], axis=1)


def eye_transform(corners: np.ndarray, side: int, eye_widths: float, mirror: bool) -> np.ndarray | None:
    """The 2×3 affine map from frame pixels to one eye's ``side``-pixel patch; None when the
    corners lie on top of each other."""
    a, b = np.asarray(corners[0], np.float64), np.asarray(corners[1], np.float64)
    left, right = (a, b) if a[0] <= b[0] else (b, a)
    width = float(np.hypot(*(right - left)))
    if width < 1.0:
        return None
    c = (left + right) / 2.0
    angle = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
    m = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), angle, side / (eye_widths * width))
    m[:, 2] += (side / 2.0 - c[0], side / 2.0 - c[1])
    if mirror:
        m = np.array([[-1.0, 0.0, side], [0.0, 1.0, 0.0]]) @ np.vstack([m, (0.0, 0.0, 1.0)])
    return m


def cut_eyes(frame: np.ndarray, corners: np.ndarray, side: int, eye_widths: float = EYE_WIDTHS) -> np.ndarray | None:
    """(2, side, side) uint8 grey patches of both eyes (image-left first, the second mirrored);
    None when an eye is degenerate. ``frame``: BGR or grey uint8."""
    out = np.empty((2, side, side), np.uint8)
    for k in range(2):
        m = eye_transform(corners[k], side, eye_widths, mirror=k == 1)
        if m is None:
            return None
        scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))  # patch pixels per frame pixel
        src = None
        if scale < 0.5:
            # Shrinking more than 2x: cut the eye's neighbourhood, area-average it down to twice
            # the patch's resolution, then warp (one bilinear warp would skip most pixels and alias).
            cx, cy = cv2.invertAffineTransform(m) @ np.array([side / 2.0, side / 2.0, 1.0])
            r = int(np.ceil(side / scale * 0.75))
            x0, y0 = max(0, int(cx) - r), max(0, int(cy) - r)
            x1, y1 = min(frame.shape[1], int(cx) + r), min(frame.shape[0], int(cy) + r)
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                k_down = 0.5 / scale
                size = (max(1, round((x1 - x0) / k_down)), max(1, round((y1 - y0) / k_down)))
                src = cv2.resize(frame[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
                m = m @ np.array([[k_down, 0.0, x0], [0.0, k_down, y0], [0.0, 0.0, 1.0]])  # patch <- frame <- reduced region
        if src is None:
            # only the rows and columns the warp reads (a whole frame's grey conversion is not this stage's to pay)
            ys, xs = _bounds(m, side, frame.shape)
            src = frame[ys, xs]
            m = m @ np.array([[1.0, 0.0, xs.start], [0.0, 1.0, ys.start], [0.0, 0.0, 1.0]])
        if src.ndim == 3:
            src = cv2.cvtColor(src, cv2.COLOR_BGR2GRAY)
        out[k] = cv2.warpAffine(src, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def _bounds(m: np.ndarray, side: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The frame rows and columns a patch's warp reads (its corners mapped back, one pixel more)."""
    inv = cv2.invertAffineTransform(m)
    pts = np.array([[0, 0, 1], [side, 0, 1], [0, side, 1], [side, side, 1]], np.float64) @ inv.T
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 2
    h, w = shape[:2]
    x0, y0 = min(max(0, x0), w - 1), min(max(0, y0), h - 1)
    x1, y1 = max(min(w, x1), x0 + 1), max(min(h, y1), y0 + 1)
    return slice(y0, y1), slice(x0, x1)
