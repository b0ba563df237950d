"""Eye patches cut from real clips exactly as the daemon cuts them, seen by other cameras.

``python -m converter eye-data --out build/eye_patches.npz`` (then ``converter eyes --clips``).

For each training clip, one pass as filmed finds each frame's label: the eye intervals a
person read (``bench/scenarios/<clip>.yaml``'s ``eyes``: open, shut, lowered = open eyes
looking down), and between them the eyelid contour on the large, frontal, well-lit face where it
is right (``gaze.openness`` under ``CLOSED_SHARE`` of the clip's open median: closed; over
``OPEN_SHARE``: open; in between: no label). Then ``passes`` more passes, each through a fresh
daemon ``Pipeline`` (YuNet, the tracker, FaceMesh: what runs on a device) on the clip as one
random camera sees it (``converter/views.py``: turned up to 45 degrees, the face 40-200 px, night,
dim, blur, noise), cut both eyes of the primary face by the manifest's crop contract
(``daemon/model/eye_crop.py``; from the mesh, and on some frames from the detector's eye points
as the daemon does for a face without a mesh) and give them the frame's label. A patch cut one
to two and a half eye widths off the eye (a mesh that slid onto a cheek, a brow, hair) is an
``unreadable`` example.

**Which clips.** Only people the scenario suite does not judge on the same decision: the
bearded man of ``drivers/`` (eyes_shut_desk, head_sweep_nod, head_turned_aside) and the car's
driver are held out entirely, so the eye model has never seen the faces on which the suite
judges fatigue on a dashcam and the no-fatigue verdict on a turned driver.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from daemon.model.eye_crop import EYE_WIDTHS, corners_from_centres, corners_from_mesh, cut_eyes, eye_widths_px

from .views import View, apply_view

SIDE = 24
CLOSED, OPEN, UNREADABLE = 0, 1, 2
LABELS = ["closed", "open", "unreadable"]
# clip (under ../shared/data) -> its scenario labels file (bench/scenarios/<name>.yaml)
TRAIN_CLIPS = {
    "videos/talking_head_640x360.mp4": "talking_head",
    "videos/webcam_talking_400x300.mp4": "webcam_talking",
    "videos/mouth_open_480x480.mp4": "mouth_open",
    "videos/head_turns_two_people_480x270.gif": "head_turns_two_people",
    "videos/head_turn_woman_480x270.gif": "head_turn_woman",
}
HELD_OUT = ("drivers/eyes_shut_desk_540x960.mp4", "drivers/head_sweep_nod_540x960.mp4",
            "drivers/head_turned_aside_540x960.mp4", "drivers/car_phone_in_lap_1920x1080.mp4")
# The contour teacher on the as-filmed pass (share of the clip's median open aperture). On the
# talking head: blinks under 0.18 of open, notes 0.25-0.45, open 0.8-1.2.
CLOSED_SHARE = 0.2
OPEN_SHARE = 0.7
GIF_FPS = 12.5
OFF_EYE = (1.2, 2.5)  # unreadable examples: the patch this many eye widths off the eye
OFF_EYE_SHARE = 0.25  # ... on this share of the frames with a mesh
CENTRES_SHARE = 0.3  # frames whose eyes are also cut from the detector's eye points


@dataclass
class Patches:
    x: np.ndarray  # (N, SIDE, SIDE) uint8
    y: np.ndarray  # (N,) int: CLOSED, OPEN, UNREADABLE
    clip: np.ndarray  # (N,) str
    yaw: np.ndarray  # (N,) the mesh's yaw on that view (nan: no mesh)
    eye_px: np.ndarray  # (N,) the eye's width in the view's pixels
    night: np.ndarray  # (N,) bool

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **asdict(self))

    @classmethod
    def load(cls, path: Path) -> "Patches":
        with np.load(path, allow_pickle=False) as z:
            return cls(**{k: z[k] for k in ("x", "y", "clip", "yaw", "eye_px", "night")})


def read_clip(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"cannot open {path}")
    fps = cap.get(cv2.CAP_PROP_FPS)
    if path.suffix.lower() == ".gif" or not fps or fps > 240:
        fps = GIF_FPS
    frames = []
    while True:
        ok, im = cap.read()
        if not ok:
            break
        frames.append(im)
    cap.release()
    return frames, float(fps)


def _pipeline(config: Path):
    from daemon.config import load_config
    from daemon.vision.pipeline import Pipeline

    cfg = load_config(config)
    cfg = cfg.model_copy(update={"eyes": cfg.eyes.model_copy(update={"enabled": False})})
    return Pipeline.from_config(cfg)


def frame_labels(frames: list[np.ndarray], fps: float, intervals: list[tuple[float, float, str]], config: Path
                 ) -> tuple[list[int | None], list[tuple[float, float, float] | None]]:
    """Each frame's eye label and the primary face (cx, cy, width), from the as-filmed pass."""
    from daemon.types import Frame

    pipe = _pipeline(config)
    openness: list[float | None] = []
    faces: list[tuple[float, float, float] | None] = []
    for i, im in enumerate(frames):
        obs = pipe.process(Frame(im, i, i / fps, time.time()))
        f = obs.primary
        g = None if f is None else f.signal("gaze")
        openness.append(float(g["openness"]) if isinstance(g, dict) else None)  # a shut eye has no gaze confidence
        faces.append(None if f is None else (f.box[0] + f.box[2] / 2, f.box[1] + f.box[3] / 2, float(f.box[2])))
    known = [o for o in openness if o is not None]
    open_median = float(np.median(known)) if known else 0.25
    labels: list[int | None] = []
    for i, o in enumerate(openness):
        t = i / fps
        said = next((s for a, b, s in intervals if a <= t <= b), None)
        if said in ("open", "lowered"):
            labels.append(OPEN)
        elif said == "shut":
            labels.append(CLOSED)
        elif o is None:
            labels.append(None)
        else:
            labels.append(CLOSED if o < CLOSED_SHARE * open_median else OPEN if o > OPEN_SHARE * open_median else None)
    return labels, faces


def random_view(rng: np.random.Generator, seed: int) -> View:
    night = bool(rng.random() < 0.3)
    return View(
        yaw=float(rng.uniform(-45, 45)), pitch=float(rng.uniform(-10, 15)),
        face_px=float(math.exp(rng.uniform(math.log(40), math.log(200)))),
        night=night, dim=1.0 if night or rng.random() > 0.25 else float(rng.uniform(0.35, 0.8)),
        blur=float(rng.uniform(0.3, 1.2)) if rng.random() < 0.25 else 0.0,
        noise=float(rng.uniform(2, 8)) if rng.random() < 0.3 else 0.0, seed=seed)


def cut_view_pass(frames: list[np.ndarray], fps: float, labels: list[int | None], faces, view: View,
                  config: Path, rng: np.random.Generator, out: dict[str, list]) -> None:
    from daemon.types import Frame

    pipe = _pipeline(config)
    for i, im in enumerate(frames):
        if faces[i] is None:
            continue
        v = apply_view(im, view, faces[i])
        obs = pipe.process(Frame(v, i, i / fps, time.time()))
        f = obs.primary
        if f is None:
            continue
        pose = f.signal("head_pose")
        yaw = float(pose["yaw"]) if isinstance(pose, dict) else float("nan")
        sources = []
        if f.mesh is not None:
            sources.append(corners_from_mesh(f.mesh))
        if f.landmarks is not None and (f.mesh is None or rng.random() < CENTRES_SHARE):
            sources.append(corners_from_centres(f.landmarks[:2]))
        for corners in sources:
            if labels[i] is not None:
                _add(out, cut_eyes(v, corners, SIDE, EYE_WIDTHS), labels[i], view, yaw, corners)
            if rng.random() < OFF_EYE_SHARE:
                width = float(eye_widths_px(corners).mean())
                a = rng.uniform(0, 2 * np.pi)
                shift = width * rng.uniform(*OFF_EYE) * np.array([np.cos(a), np.sin(a)], np.float32)
                _add(out, cut_eyes(v, corners + shift, SIDE, EYE_WIDTHS), UNREADABLE, view, yaw, corners)


def _add(out: dict[str, list], patches: np.ndarray | None, label: int, view: View, yaw: float, corners: np.ndarray) -> None:
    if patches is None:
        return
    for k, p in enumerate(patches):
        out["x"].append(p)
        out["y"].append(label)
        out["clip"].append(out["_clip"])
        out["yaw"].append(yaw)
        out["eye_px"].append(float(eye_widths_px(corners)[k]))
        out["night"].append(view.night)


def build(shared: Path, scenarios: Path, config: Path, passes: int, seed: int) -> Patches:
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {k: [] for k in ("x", "y", "clip", "yaw", "eye_px", "night")}
    for clip, name in TRAIN_CLIPS.items():
        path = shared / clip
        if not path.is_file():
            raise SystemExit(f"training clip not found: {path}")
        labels_file = scenarios / f"{name}.yaml"
        intervals = [(float(a), float(b), str(s)) for a, b, s in (yaml.safe_load(labels_file.read_text()).get("eyes") or [])] \
            if labels_file.is_file() else []
        frames, fps = read_clip(path)
        # long clips get fewer passes: every clip weighs about the same
        n_passes = max(2, round(passes * min(1.0, 300 / len(frames))))
        t0 = time.time()
        labels, faces = frame_labels(frames, fps, intervals, config)
        counts = {LABELS[k]: sum(1 for lb in labels if lb == k) for k in (CLOSED, OPEN)}
        out["_clip"] = name  # type: ignore[assignment]
        before = len(out["x"])
        for p in range(n_passes):
            cut_view_pass(frames, fps, labels, faces, random_view(rng, seed + p), config, rng, out)
        print(f"{name}: {len(frames)} frames, labelled {counts}, {n_passes} views -> {len(out['x']) - before} patches "
              f"({time.time() - t0:.0f} s)", flush=True)
    return Patches(np.asarray(out["x"], np.uint8).reshape(-1, SIDE, SIDE), np.asarray(out["y"], np.int32),
                   np.asarray(out["clip"]), np.asarray(out["yaw"], np.float32), np.asarray(out["eye_px"], np.float32),
                   np.asarray(out["night"], bool))


def add_parser(sub) -> None:
    p = sub.add_parser("eye-data", help="cut eye patches from the training clips as other cameras see them (for converter eyes --clips)")
    p.add_argument("--shared", default="../shared/data", help="the shared data folder")
    p.add_argument("--scenarios", default="bench/scenarios", help="the clips' eye labels (YAML per clip)")
    p.add_argument("--config", default="config.yaml", help="daemon config whose pipeline cuts the patches")
    p.add_argument("--passes", type=int, default=12, help="random camera views per short clip")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", default="build/eye_patches.npz")


def run(args) -> int:
    patches = build(Path(args.shared), Path(args.scenarios), Path(args.config), args.passes, args.seed)
    patches.save(Path(args.out))
    counts = {LABELS[k]: int((patches.y == k).sum()) for k in range(3)}
    print(f"wrote {args.out}: {len(patches.y)} patches {counts}")
    return 0
