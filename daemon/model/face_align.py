"""Cut a face by its five landmarks to the emotion model's canonical template (the face crop contract).

A detector's box frames a face differently with every turn, tilt and detector (and YuNet's box
differs from the one that cut FER-2013's faces); the five points (eye centres, nose tip, mouth
corners, YuNet's order: the person's right eye first, at image left) do not. The face is mapped
by the least-squares similarity (turn, scale, shift; no shear, so a face keeps its shape) that
puts its points nearest the template, so eyes, nose and mouth land on the same pixels of the
model input for every face. The template lives in the model's manifest (``crop.template``,
fractions of the input side): the converter writes the mean points of FER-2013's training faces
there, so an aligned face is framed as the faces the network learnt from.

The converter cuts its training and validation faces with this very function, so training and
the daemon cannot disagree about the crop.
"""

from __future__ import annotations

import cv2
import numpy as np

# Shrinking by more than this in one bilinear warp aliases (a 200-px face to 48 px samples one
# pixel in four); the face's region is first shrunk with area averaging to twice the output.
_MAX_WARP_SHRINK = 2.0


def similarity(points: np.ndarray, template: np.ndarray) -> np.ndarray:
    """The 2×3 least-squares similarity taking ``points`` (N, 2) onto ``template`` (N, 2).

    Umeyama's closed form: one SVD-free step for 2-D (a complex-number regression), exact and
    deterministic. ``cv2.estimateAffinePartial2D`` fits the same model but only robustly
    (RANSAC/LMEDS), which on five points may drop two of them and jump between frames."""
    p = np.asarray(points, np.float64)[:, :2]
    q = np.asarray(template, np.float64)[:, :2]
    pm, qm = p.mean(0), q.mean(0)
    pc, qc = p - pm, q - qm
    zp = pc[:, 0] + 1j * pc[:, 1]
    zq = qc[:, 0] + 1j * qc[:, 1]
    den = float(np.vdot(zp, zp).real)
    if den <= 1e-9:
        raise ValueError("the landmarks coincide: no face to align")
    a = complex(np.vdot(zp, zq)) / den  # scale * e^(i * angle)
    m = np.array([[a.real, -a.imag, 0.0], [a.imag, a.real, 0.0]])
    m[:, 2] = qm - m[:, :2] @ pm
    return m


def valid_points(points: np.ndarray | None) -> bool:
    """Five finite points with the eyes apart and the image-left eye left of the other."""
    if points is None:
        return False
    p = np.asarray(points, np.float64)
    if p.shape[0] < 5 or p.shape[-1] < 2 or not np.all(np.isfinite(p[:5, :2])):
        return False
    return bool(p[1, 0] - p[0, 0] > 1.0)


def aligned_face(image: np.ndarray, points: np.ndarray, template: np.ndarray, side: int,
                 gray: bool = False) -> np.ndarray:
    """The face of ``image`` (grey or BGR uint8) whose five ``points`` are given, mapped onto
    ``template`` (fractions of the side) in a ``side``×``side`` patch (``warp_filled``).
    ``gray``: the model reads grey, so a BGR region to be shrunk is turned grey first (the area
    shrink of a 100-px face is most of this function's time: 0.14 ms in BGR, 0.07 in grey)."""
    dst = np.asarray(template, np.float64)[:5] * side
    m = similarity(np.asarray(points, np.float64)[:5], dst)
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    if scale * _MAX_WARP_SHRINK < 1.0:
        # area-shrink the face's region first (the output square mapped back, clamped)
        inv = cv2.invertAffineTransform(m)
        corners = np.array([[0, 0, 1], [side, 0, 1], [0, side, 1], [side, side, 1]], np.float64) @ inv.T
        h, w = image.shape[:2]
        x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, [w - 1, h - 1])
        x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 1, 1, [w, h])
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            f = scale * _MAX_WARP_SHRINK
            rw, rh = max(2, int(round((x1 - x0) * f))), max(2, int(round((y1 - y0) * f)))
            region = image[y0:y1, x0:x1]
            if gray and region.ndim == 3:
                region = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)
            image = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
            fx, fy = rw / (x1 - x0), rh / (y1 - y0)
            # a point of the region's resized pixels back to the frame, then through m
            back = np.array([[1 / fx, 0, x0], [0, 1 / fy, y0], [0, 0, 1]], np.float64)
            m = m @ back
    return warp_filled(image, m, side)


def warp_filled(image: np.ndarray, m: np.ndarray, side: int) -> np.ndarray:
    """``image`` through the 2×3 ``m`` into a ``side``-px square. Where the square reaches past
    the image (a face at the frame's edge; FER-2013's tight crops, whose forehead and far cheek
    lie outside), the edge pixels are spread and blurred: a mirrored border would put a second
    eye or mouth into the face, a repeated one streaks."""
    out = cv2.warpAffine(image, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    h, w = image.shape[:2]
    corners = np.array([[0, 0, 1], [side - 1, 0, 1], [0, side - 1, 1], [side - 1, side - 1, 1]], np.float64)
    src = corners @ cv2.invertAffineTransform(m).T
    if src.min() >= 0 and src[:, 0].max() <= w - 1 and src[:, 1].max() <= h - 1:
        return out  # the square lies inside the image: the usual case in the daemon
    inside = cv2.warpAffine(np.ones((h, w), np.float32), m, (side, side), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if out.ndim == 3:
        inside = inside[:, :, None]
    fill = cv2.GaussianBlur(out, (0, 0), side / 16.0)
    return np.clip(inside * out + (1.0 - inside) * fill + 0.5, 0, 255).astype(np.uint8)

