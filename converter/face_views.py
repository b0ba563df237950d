"""Faces FER-2013 has few of, made from its aligned faces: turned heads in 3-D, near-infrared cameras.

**A turn in 3-D** (``turn``): the aligned face is laid on a head-shaped surface (a vertical
cylinder as wide as the head, with the nose standing out of it) and turned about the vertical
axis, seen orthographically: the near cheek widens, the far one narrows and hides behind the
nose, the nose moves off the eyes' midline, which a 2-D perspective warp does not do. The five
points move with the surface; the turned face is then cut again by its moved points onto the
template, as the daemon cuts a turned face (``daemon.model.face_align``), so the network learns
3/4 views exactly as it will be shown them.

**A near-infrared camera** (``near_infrared``): an active-IR cabin or door camera sees skin
pale and flat (skin reflects near-infrared strongly: a bright, low-contrast face), irises and
pupils dark, and its own sensor noise.

Both work on grey uint8 faces of any size, with the template as fractions of the side.
"""

from __future__ import annotations

import cv2
import numpy as np

from daemon.model.face_align import similarity, warp_filled

# The head's half-width in inter-ocular distances (a head is about 2.3 IODs wide at the temples)
HEAD_HALF_WIDTH_IOD = 1.15
# The nose tip stands this many IODs out of the cheeks' surface, spread over this many
NOSE_HEIGHT_IOD, NOSE_SPREAD_IOD = 0.45, 0.22


def _surface(side: int, template: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Depth (side, side) of the head surface under an aligned face, the axis' x and the head's
    half-width (pixels)."""
    t = template * side
    iod = float(t[1, 0] - t[0, 0])
    xc = float((t[0, 0] + t[1, 0]) / 2.0)
    r = HEAD_HALF_WIDTH_IOD * iod
    xs = np.arange(side, dtype=np.float64)
    yy, xx = np.meshgrid(xs, xs, indexing="ij")
    z = np.sqrt(np.clip(r * r - (xx - xc) ** 2, 0.0, None))
    nx, ny = t[2]
    s = NOSE_SPREAD_IOD * iod
    z += NOSE_HEIGHT_IOD * iod * np.exp(-((xx - nx) ** 2 + ((yy - ny) * 0.7) ** 2) / (2 * s * s))
    return z, xc, r


def turn(face: np.ndarray, template, yaw_deg: float) -> np.ndarray:
    """The aligned grey ``face`` turned by ``yaw_deg`` (positive: the face's nose moves to image
    right) and cut again by its moved five points onto ``template``."""
    side = face.shape[0]
    tmpl = np.asarray(template, np.float64)
    z, xc, r = _surface(side, tmpl)
    phi = np.radians(yaw_deg)
    xs = np.arange(side, dtype=np.float64)
    # where each source pixel lands: the head turns, the background beyond it stays (a tight
    # crop has no pixels to fill a turned background from); the gap at the near cheek is filled
    # by stretching its edge, as a real turn reveals more of the near side
    head = np.abs(xs[None, :] - xc) < r
    u = np.where(head, xc + (xs[None, :] - xc) * np.cos(phi) + z * np.sin(phi), xs[None, :])
    map_x = np.empty((side, side), np.float32)
    for row in range(side):
        ur = u[row]
        # visible: scanning away from the far side, a pixel is seen only where it lands beyond all
        # before it (the rest is behind the nose or the far cheek)
        mono = np.maximum.accumulate(ur) if yaw_deg >= 0 else np.minimum.accumulate(ur[::-1])[::-1]
        map_x[row] = np.interp(xs, mono, xs)
    map_y = np.repeat(xs[:, None], side, axis=1).astype(np.float32)
    turned = cv2.remap(face, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # the five points where the surface carried them
    pts = tmpl * side
    iy = np.clip(np.round(pts[:, 1]).astype(int), 0, side - 1)
    ix = np.clip(np.round(pts[:, 0]).astype(int), 0, side - 1)
    moved = pts.copy()
    moved[:, 0] = xc + (pts[:, 0] - xc) * np.cos(phi) + z[iy, ix] * np.sin(phi)
    # cut again by the moved points, as the daemon cuts a turned face
    return warp_filled(turned, similarity(moved, tmpl * side), side)


def near_infrared(face: np.ndarray, template, rng: np.random.Generator) -> np.ndarray:
    """The grey ``face`` as an active near-infrared camera sees it: pale, flat skin (gamma
    0.45-0.75, contrast 0.6-0.9), dark eyes (each eye's disc darkened to 35-70 %), sensor noise."""
    side = face.shape[0]
    x = face.astype(np.float32) / 255.0
    x = np.power(np.clip(x, 1e-4, 1.0), rng.uniform(0.45, 0.75))
    mean = float(x.mean())
    x = (x - mean) * rng.uniform(0.6, 0.9) + mean
    t = np.asarray(template, np.float64) * side
    iod = float(t[1, 0] - t[0, 0])
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    dark = np.ones((side, side), np.float32)
    radius = rng.uniform(0.12, 0.18) * iod
    for ex, ey in t[:2]:
        d2 = ((xx - ex) ** 2 + ((yy - ey) * 1.6) ** 2) / (radius * radius)
        dark = np.minimum(dark, 1.0 - (1.0 - rng.uniform(0.35, 0.7)) * np.exp(-d2))
    x = x * dark + rng.normal(0.0, rng.uniform(0.0, 0.025), x.shape).astype(np.float32)
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def turned_copies(faces: np.ndarray, template, seed: int, max_yaw: float = 45.0, min_yaw: float = 10.0,
                  nir_share: float = 0.4) -> np.ndarray:
    """One copy of each aligned face (N, S, S): turned by a random yaw of ``min_yaw``-``max_yaw``
    degrees either way, ``nir_share`` of them also in a near-infrared look."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(faces)
    for i, f in enumerate(faces):
        yaw = rng.uniform(min_yaw, max_yaw) * rng.choice((-1.0, 1.0))
        g = turn(f, template, yaw)
        out[i] = near_infrared(g, template, rng) if rng.random() < nir_share else g
    return out
