"""How right is each eye cue where drivers are? Per yaw band, eye size and light, on people the
eye model never saw.

The held-out clips of ``converter/eye_data.py`` (the bearded man of ``drivers/``, eyes open and
shut, and the car's driver, seen at ~45 degrees), each played through the daemon's Pipeline
(config.yaml) as filmed and as several other cameras see it (``converter/views.py``: the face
shrunk to 120, 80 and 50 px, turned 35 degrees as a plane, a night cabin). On every frame that
a person labelled (``bench/scenarios/*.yaml``'s ``eyes``: open or shut) and the pipeline has a
face, each cue's reading is scored:

* **eye model (CEW, box crop)**: the first model (``git show REV:models/eye_state.tflite``),
  closed from 0.6, open to 0.4, wherever it answers (the daemon trusted it only within 20 deg);
* **lid contour**: MediaPipe Iris's aperture against the prior open aperture (rules/eyes.py);
* **eye model (new)**: ``models/eye_state.tflite`` on the ``eye_corners`` crop, the same cut-offs,
  unreadable when it says so, read at every pose (not gated by its manifest's ``trust``: this
  is where the trust is measured).

Rows: right, wrong (open read closed or shut read open), no reading; by how far the face is
turned from the camera (0-20, 20-35, 35-50, over 50 degrees: the head's own yaw as the mesh
measures it, or the view's warp where that is larger: FaceMesh reads a flat warp of a frontal
face as a head turned a third as far, so the warp's angle is what foreshortens the eyes), by the
eye's width in pixels and by day/night.

    python bench/eye_views.py                  # writes the tables to stdout (bench/RESULTS.md keeps them)
    python bench/eye_views.py --rows rows.json # and every scored frame (p of both models), for the trust figures
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import REPO, SHARED, machine, table

sys.path.insert(0, str(REPO))

from converter.eye_data import HELD_OUT, read_clip  # noqa: E402
from converter.views import View, apply_view  # noqa: E402

SCENARIO_OF = {clip: Path(clip).stem.rsplit("_", 1)[0] for clip in HELD_OUT}
VIEWS = {
    "as filmed": View(),
    "face 80 px": View(face_px=80),
    "face 50 px": View(face_px=50),
    "face 80 px, turned 20": View(yaw=20, face_px=80),
    "face 80 px, turned 35": View(yaw=35, face_px=80),
    "face 80 px, turned 50": View(yaw=50, face_px=80),
    "face 50 px, turned 35": View(yaw=35, face_px=50),
    "night, face 80 px": View(face_px=80, night=True),
    "night, face 50 px, turned 35": View(yaw=35, face_px=50, night=True),
}

YAW_BANDS = ((0, 20), (20, 35), (35, 50), (50, 90))
EYE_BANDS = ((0, 8), (8, 12), (12, 20), (20, 1000))
CLOSED_AT, OPEN_AT = 0.6, 0.4


def baseline_model(rev: str, folder: Path) -> Path:
    path = folder / "eye_state_cew.tflite"
    for suffix in (".tflite", ".json"):
        data = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:models/eye_state{suffix}"], capture_output=True, check=True).stdout
        path.with_suffix(suffix).write_bytes(data)
    return path


def reading(p: float | None) -> str | None:
    return None if p is None else "closed" if p >= CLOSED_AT else "open" if p <= OPEN_AT else None


def band(value: float, bands) -> str:
    for a, b in bands:
        if a <= value < b:
            return f"{a}-{b}" if b < 1000 else f"{a}+"
    return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-rev", default="de73aeb", help="git revision whose models/eye_state.tflite is the first model")
    ap.add_argument("--config", type=Path, default=REPO / "config.yaml")
    ap.add_argument("--views", nargs="+", choices=list(VIEWS), default=list(VIEWS))
    ap.add_argument("--rows", type=Path, help="write every scored frame as JSON")
    args = ap.parse_args()

    import yaml

    from daemon.config import load_config
    from daemon.model.eye_crop import corners_from_mesh, eye_widths_px
    from daemon.rules.eyes import OPEN_PRIOR, EyeJudge
    from daemon.types import Frame
    from daemon.vision.pipeline import Pipeline
    from daemon.vision.signals.eyes import EyesConfig, EyeStateEstimator

    print(machine())
    cfg = load_config(args.config)
    judge = EyeJudge(20.0)
    judge.open_lids = OPEN_PRIOR
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        old = EyeStateEstimator(EyesConfig(model=baseline_model(args.baseline_rev, Path(tmp))))
        new = EyeStateEstimator(EyesConfig(model=REPO / "models" / "eye_state.tflite"))  # read directly: not gated by its trust
        t0 = time.time()
        for clip in HELD_OUT:
            name = SCENARIO_OF[clip]
            sc = yaml.safe_load((REPO / "bench" / "scenarios" / f"{name}.yaml").read_text())
            eyes = [(float(a), float(b), s) for a, b, s in sc.get("eyes") or [] if s in ("open", "shut")]
            frames, fps = read_clip(SHARED / clip)
            first = None
            for view_name in args.views:
                view = VIEWS[view_name]
                pipe = Pipeline.from_config(cfg)
                for i, im in enumerate(frames):
                    t = i / fps
                    label = next((s for a, b, s in eyes if a <= t <= b), None)
                    face_at = None
                    if view.face_px or view.yaw:
                        face_at = _face(first, i)
                        if face_at is None:
                            continue
                    v = apply_view(im, view, face_at)
                    obs = pipe.process(Frame(v, i, t, time.time()))
                    f = obs.primary
                    if view_name == "as filmed":
                        first = first or {}
                        if f is not None:
                            first[i] = (f.box[0] + f.box[2] / 2, f.box[1] + f.box[3] / 2, float(f.box[2]))
                    if label is None or f is None:
                        continue
                    pose = f.signal("head_pose")
                    gaze = f.signal("gaze")
                    yaw = abs(float(pose["yaw"])) if isinstance(pose, dict) else None
                    eye_px = float(eye_widths_px(corners_from_mesh(f.mesh)).max()) if f.mesh is not None else \
                        (0.45 * float(np.linalg.norm(f.landmarks[1] - f.landmarks[0])) if f.landmarks is not None else 0.0)
                    contour = None if not isinstance(gaze, dict) else judge.contour(float(gaze["openness"]))
                    rows.append({
                        "clip": name, "view": view_name, "label": label, "eye_px": eye_px, "night": view.night,
                        "yaw": None if yaw is None else max(yaw, abs(view.yaw)),

                        "lid contour": {"open": "open", "shut": "closed", "lowered": None, None: None}[contour],
                        "p_new": new.closed_prob(v, f.box, f.landmarks, f.mesh),
                        "p_old": old.closed_prob(v, f.box, f.landmarks),
                    })
        print(f"{len(rows)} labelled frames in {time.time() - t0:.0f} s")
    for r in rows:
        r["eye model (CEW, box crop)"] = reading(r["p_old"])
        r["eye model (new)"] = reading(r["p_new"])
    if args.rows:
        import json

        args.rows.write_text(json.dumps(rows))
    cues = ("eye model (CEW, box crop)", "lid contour", "eye model (new)")

    def score(sel: list[dict]) -> list[str]:
        out = []
        for cue in cues:
            said = [r[cue] for r in sel]
            truth = ["closed" if r["label"] == "shut" else "open" for r in sel]
            n = len(sel)
            right = sum(s == t for s, t in zip(said, truth))
            none = sum(s is None for s in said)
            out.append(f"{right / n:.0%} / {(n - right - none) / n:.0%} / {none / n:.0%}" if n else "-")
        return out

    header = ["eyes", "group", "frames"] + [f"{c}: right / wrong / none" for c in cues]
    def yaw_key(r: dict) -> str:
        return "no pose" if r["yaw"] is None else band(r["yaw"], YAW_BANDS)

    for title, key in (("turn from the camera (degrees: the mesh's yaw or the warp's)", yaw_key),
                       ("eye width (px)", lambda r: band(r["eye_px"], EYE_BANDS)),
                       ("light", lambda r: "night" if r["night"] else "day"),
                       ("view", lambda r: r["view"])):
        out = []
        for label in ("open", "shut"):
            groups: dict[str, list[dict]] = {}
            for r in rows:
                if r["label"] == label:
                    groups.setdefault(key(r), []).append(r)
            for g in sorted(groups):
                out.append([label, g, str(len(groups[g]))] + score(groups[g]))
        print(f"\nby {title}")
        print(table(out, header))
    return 0


def _face(first: dict | None, i: int):
    """The face (cx, cy, width) of frame i as filmed, else the nearest frame's."""
    if not first:
        return None
    if i in first:
        return first[i]
    k = min(first, key=lambda j: abs(j - i))
    return first[k]


if __name__ == "__main__":
    sys.exit(main())
