"""Eye closure of a face: find the two eyes, classify both in one batch, average.

The eye model (``converter eyes``, trained on CEW) sees 24×24 grey patches cut tight around
one eye. The eyes are found from YuNet's eye landmarks when the detector gives them, else from
the face box's geometry: on Haar boxes the eye centres sit at a fixed share of the box
(measured on the talking-head clip against YuNet's landmarks: x 0.33 / 0.69, y 0.40 of the box,
inter-ocular distance 0.36 of its width, spread under 0.02). Each eye patch is a square
``EYE_SIDE_PER_IOD`` inter-ocular distances wide, which frames an eye as CEW does (corner to
corner with a little lid and brow); the manifest's crop margin is applied on top, and the
daemon's Preprocessor does the rest, exactly as for training-time evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from ...types import Box, FaceState, SignalValue
from .base import FaceSignal, SignalConfig

# Where the eyes are in a Haar face box (fractions of its width/height), and how wide an eye
# patch is, in inter-ocular distances (IOD). Measured on talking_head_640x360.mp4.
HAAR_EYE_X = (0.33, 0.69)  # image-left eye (the person's right), image-right eye
HAAR_EYE_Y = 0.40
HAAR_IOD_PER_WIDTH = 0.36
EYE_SIDE_PER_IOD = 0.7
# Landmarks are (right eye, left eye, nose, mouth right, mouth left): YuNet's order.
RIGHT_EYE, LEFT_EYE = 0, 1


# From this closed probability the annotation says "closed".
EYES_CLOSED_AT = 0.5
# Both eyes readable (open or closed) with less than this probability: the eyes are unreadable.
UNREADABLE_AT = 0.5
# Both eyes called unreadable at least this sure, and dark against the face around them: dark
# glasses, so the eyelid contour is not believed either (MediaPipe Iris draws an open eye on a
# lens). Painted dark lenses with a highlight on eyes_shut_desk (tests/test_eyes_any_angle.py):
# unreadable 0.97-1.0 on every frame, the eye's centre 0.22-0.25 as bright as the square four eye
# widths around it. The model is that sure on bare eyes too (small, dim, turned: 13 of 61 frames
# of street_multiface's dashcam view, 83 of 199 of mouth_open's night view), but there the ratio
# is 0.58-1.3, and the contour still reads them. Checked at every turn the eye model reads (it
# runs beyond its trust for this): head_turned_aside with the lenses 95 of 98 frames hidden, bare
# 0; the car clip (67 frames beyond 50 degrees), head_sweep_nod's dashcam view: 0.
HIDDEN_AT = 0.9
HIDDEN_DARK = 0.45
SURROUND_EYE_WIDTHS = 4.0


class EyesConfig(SignalConfig):
    enabled: bool = Field(True, title="estimate eye closure on the primary face (needed by driver_fatigue)")
    model: Path = Field(Path("models/eye_state.tflite"), title="eye open/closed model (.tflite) with its .json manifest")
    min_iod_px: float = Field(16.0, gt=0, title="smaller faces (inter-ocular distance in pixels) give no eye reading")
    min_contrast: float = Field(
        6.0, ge=0, title="eye patches flatter than this (grey standard deviation, 0-255) are unreadable: sunglasses, a mask")


def eye_centres(box: Box, landmarks: np.ndarray | None) -> np.ndarray:
    """(2, 2) float: the two eye centres in frame pixels, image-left eye first."""
    if landmarks is not None and len(landmarks) > LEFT_EYE:
        return np.asarray(landmarks[[RIGHT_EYE, LEFT_EYE]], dtype=np.float32)
    x, y, w, h = box
    return np.array([[x + fx * w, y + HAAR_EYE_Y * h] for fx in HAAR_EYE_X], dtype=np.float32)


def eye_boxes(centres: np.ndarray) -> list[Box]:
    """Square boxes around both eye centres, sized from the inter-ocular distance."""
    side = EYE_SIDE_PER_IOD * float(np.linalg.norm(centres[1] - centres[0]))
    return [(int(round(cx - side / 2)), int(round(cy - side / 2)), int(round(side)), int(round(side))) for cx, cy in centres]


class EyeStateEstimator:
    """``closed_prob(frame, face)``: probability that the face's eyes are closed.

    None when the eyes cannot be read (face too small, eyes outside the frame, flat patches, or
    the model itself calling both eyes unreadable): the rules treat that as unknown, never as
    closed, and ``driver_monitoring_degraded`` says so.

    Two crop contracts, as the model's manifest says (``crop.align``): ``eye_corners`` (the
    current model) cuts each eye upright between its corners (``daemon/model/eye_crop.py``),
    from the face's mesh when head_pose ran on it, else from the detector's eye points;
    ``box`` (the first CEW model) cuts a square around each eye centre.
    """

    def __init__(self, cfg: EyesConfig, threads: int = 1) -> None:
        from ...model.tflite import TfliteModel  # LiteRT and OpenCV load with the model, not with the config

        self.cfg = cfg
        self.model = TfliteModel(cfg.model, threads=threads)
        labels = self.model.labels
        if "closed" not in labels or "open" not in labels:
            raise ValueError(f"eye model {cfg.model} has labels {labels}; expected 'closed' and 'open'")
        self.closed, self.open = labels.index("closed"), labels.index("open")
        self.unreadable = labels.index("unreadable") if "unreadable" in labels else None
        crop = self.model.manifest.crop
        self.by_corners = crop.align == "eye_corners"
        self.eye_widths = crop.eye_widths
        spec = self.model.manifest.input
        self.side = spec.width
        self._batch = np.empty((2, spec.height, spec.width, spec.channels), dtype=self.model.preprocessor.dtype)

    def trusted(self, pose: SignalValue) -> str:
        """How far the model's reading holds at this head pose (its manifest's measured
        ``trust``): "yes", "ends" (a turned face: only sure readings) or "no". No pose reading at
        all (head_pose off) trusts the model as it reads."""
        if not isinstance(pose, dict):
            return "yes"
        trust = self.model.manifest.trust
        yaw = abs(float(pose["yaw"]))
        if float(pose["pitch"]) < -trust.max_pitch_down_deg:
            return "no"
        if yaw <= trust.max_yaw_deg:
            return "yes"
        return "ends" if trust.turned_max_yaw_deg is not None and yaw <= trust.turned_max_yaw_deg else "no"

    def read(self, frame_bgr: np.ndarray, box: Box, landmarks: np.ndarray | None = None,
             mesh: np.ndarray | None = None) -> np.ndarray | None:
        """(2, classes) probabilities of both eyes (image-left first), or None: unreadable."""
        if not self.by_corners:
            return self._read_boxes(frame_bgr, box, landmarks)
        from ...model.eye_crop import EYE_WIDTH_PER_IOD, corners_from_centres, corners_from_mesh, cut_eyes, eye_widths_px

        corners = corners_from_mesh(mesh) if mesh is not None else corners_from_centres(eye_centres(box, landmarks))
        widths = eye_widths_px(corners)
        # min_iod_px keeps its meaning (the eyes' distance) on either source of corners
        if float(widths.max()) < self.cfg.min_iod_px * EYE_WIDTH_PER_IOD:
            return None
        fh, fw = frame_bgr.shape[:2]
        mid = corners.mean(axis=1)
        if np.any(mid < 0) or np.any(mid[:, 0] >= fw) or np.any(mid[:, 1] >= fh):
            return None  # an eye outside the frame
        patches = cut_eyes(frame_bgr, corners, self.side, self.eye_widths)
        if patches is None:
            return None
        if self.cfg.min_contrast and min(self._centre_std(p) for p in patches) < self.cfg.min_contrast:
            return None  # flat: dark glasses or a cover (the model would still answer)
        for k in range(2):
            self.model.preprocessor.prepare_face(patches[k], out=self._batch[k])
        return self.model.predict(self._batch)

    def closed_prob(self, frame_bgr: np.ndarray, box: Box, landmarks: np.ndarray | None = None,
                    mesh: np.ndarray | None = None) -> float | None:
        probs = self.read(frame_bgr, box, landmarks, mesh)
        return None if probs is None else self.combine(probs)

    def hidden(self, probs: np.ndarray | None, frame_bgr: np.ndarray, mesh: np.ndarray | None) -> bool:
        """Both eyes hidden behind dark glasses: the model is sure both are unreadable
        (``HIDDEN_AT``) and they are dark against the face around them (``HIDDEN_DARK``). Flat
        patches are not enough (a small night face's eyes are flat to the model, and the contour
        still reads them; a flat lens is flat to the contour's own test too)."""
        if probs is None or self.unreadable is None or mesh is None or float(probs[:, self.unreadable].min()) < HIDDEN_AT:
            return False
        from ...model.eye_crop import corners_from_mesh, cut_eyes

        corners = corners_from_mesh(mesh)
        eyes, around = cut_eyes(frame_bgr, corners, self.side, self.eye_widths), cut_eyes(frame_bgr, corners, self.side, SURROUND_EYE_WIDTHS)
        if eyes is None or around is None:
            return False
        q = self.side // 4
        return float(eyes[:, q:-q, q:-q].mean()) < HIDDEN_DARK * max(float(around.mean()), 1.0)

    def combine(self, probs: np.ndarray) -> float | None:
        """Both eyes' probabilities → the closed probability among readable outcomes, each eye
        weighted by how readable the model finds it; None when neither eye is readable."""
        closed, open_ = probs[:, self.closed], probs[:, self.open]
        readable = closed + open_
        if self.unreadable is not None and float(readable.max()) < UNREADABLE_AT:
            return None
        share = closed / np.maximum(readable, 1e-6)
        return float(np.sum(share * readable) / max(float(readable.sum()), 1e-6))

    def _read_boxes(self, frame_bgr: np.ndarray, box: Box, landmarks: np.ndarray | None) -> np.ndarray | None:
        centres = eye_centres(box, landmarks)
        iod = float(np.linalg.norm(centres[1] - centres[0]))
        fh, fw = frame_bgr.shape[:2]
        if iod < self.cfg.min_iod_px:
            return None
        boxes = eye_boxes(centres)
        if any(x < 0 or y < 0 or x + s > fw or y + s > fh for x, y, s, _ in boxes):
            return None  # an eye cut by the frame edge would not look like a CEW patch
        if self.cfg.min_contrast and min(self._contrast(frame_bgr, b) for b in boxes) < self.cfg.min_contrast:
            # An eye patch flat: dark glasses or a cover. The model would still answer (flat
            # dark patches look "closed"); unreadable is the truth, and the degraded-monitoring
            # rule reports it. Measured on the clips: real eyes' central patches have a std of 10 and more.
            return None
        return self.model.classify(frame_bgr, boxes)

    @staticmethod
    def _centre_std(patch: np.ndarray) -> float:
        """Grey standard deviation of a patch's central half (iris, sclera and lids)."""
        s = patch.shape[0]
        q = s // 4
        return float(patch[q:s - q, q:s - q].std())

    @staticmethod
    def _contrast(frame_bgr: np.ndarray, box: Box) -> float:
        """Standard deviation of the central half of one eye patch, where iris, sclera and lid
        are (the rim may cross a lens edge, which is contrast of the wrong kind)."""
        x, y, w, h = box
        q, r = w // 4, h // 4
        return float(frame_bgr[y + r:y + h - r, x + q:x + w - q].std())


class EyeClosure(FaceSignal):
    """The ``eye_closed`` signal: the primary face's probability that its eyes are closed."""

    name = "eye_closed"
    config_key = "eyes"
    Config = EyesConfig
    title = "eye closure (eye open/closed model)"
    stage = "eyes"
    schema: ClassVar[dict[str, Any]] = {"type": "number", "minimum": 0, "maximum": 1}

    def __init__(self, cfg: EyesConfig, threads: int = 1) -> None:
        self.estimator = EyeStateEstimator(cfg, threads=threads)

    def measure(self, frame_bgr: np.ndarray, face: FaceState) -> SignalValue:
        # A pose the mesh could not read on a face it ran on (turned, tilted or dim past its fit) is
        # unknown, and so is the trust: bench/eye_views.py's "no pose" rows, open eyes read right
        # 7 %, wrong 8 %; the tilted car's open eyes read 0.85-0.99 closed there (a false microsleep).
        trust = "no" if face.mesh_lost else self.estimator.trusted(face.signal("head_pose"))
        probs = self.estimator.read(frame_bgr, face.box, face.landmarks, face.mesh)
        # dark glasses are dark glasses at any turn (the darkness test guards the model's call)
        face.eyes_hidden = self.estimator.hidden(probs, frame_bgr, face.mesh)
        if trust == "no":
            return None  # a pose the model was not shown to hold at: unknown, not a guess
        p = None if probs is None else self.estimator.combine(probs)
        if p is not None and trust == "ends":
            t = self.estimator.model.manifest.trust
            if t.turned_open_at < p < t.turned_closed_at:
                return None  # a turned face: only the model's sure readings hold there
        return p

    @classmethod
    def describe(cls, value: SignalValue) -> str | None:
        p = float(value)  # type: ignore[arg-type]
        closed = p >= EYES_CLOSED_AT
        return f"eyes {'closed' if closed else 'open'} {(p if closed else 1.0 - p):.0%}"
