"""What does the ``head_pose`` face signal cost per face, and how right are its angles?

Answers three questions about ``daemon/model/face_mesh.py`` (MediaPipe FaceMesh,
``models/face_landmark.tflite``, plus the rigid Kabsch/Umeyama pose fit), in one process on one
core (pinned at start like ``taskset -c 0``), LiteRT and OpenCV on one thread each:

1. cost: ``FaceMesh.read()`` per face, p50/p99 ms over the first ``--frames`` frames of
   ``talking_head_640x360.mp4``, with the default second upright pass (``retilt_deg=3.0``) and
   with one pass only (``retilt_deg=None``). The face boxes (YuNet, largest face, the last box
   kept when it misses) are computed before any timing. The EAR/MAR of those readings are
   compared with the clip's ``.ear_mar.csv`` on the side (free: same readings).
2. pose error against known angles: the real meshes of the most frontal talking-head frames
   are frontalised (their own estimated pose undone), scaled to a 100 px wide face, rotated in
   3-D over a yaw -50..50, pitch -35..25, roll -20..20 grid (10 deg steps) and kept in weak
   perspective (x, y in pixels, z on the same scale: what FaceMesh outputs), with no noise and
   with 1 px Gaussian noise on x, y and z; ``estimate_pose`` must give the angles back.
   This checks the convention, the Euler extraction and the noise sensitivity of the fit; it
   does not measure FaceMesh's own depth errors on turned heads (the clips below do that).
3. signs on real clips: first and last yaw of ``head_turn_woman_480x270.gif`` (she starts turned
   to her right: negative yaw) and the lowest pitch while the talking-head woman glances down
   (frames 29-79: negative pitch).

Needs ``../shared/data`` (videos and the YuNet detector) beside the repository; exits with a
clear message when it is absent. About 10 s on one core.

    python bench/head_pose.py
    python bench/head_pose.py --frames 200 --core 0
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np
from _common import (
    REPO,
    SHARED,
    TALKING_HEAD,
    VIDEOS,
    cpu_flags,
    machine,
    pct,
    pin_to_core,
    require,
    table,
)

MODEL = REPO / "models" / "face_landmark.tflite"
YUNET = SHARED / "detectors" / "face_detection_yunet_2023mar.onnx"
HEAD_TURN = VIDEOS / "head_turn_woman_480x270.gif"
EAR_MAR_CSV = VIDEOS / "talking_head_640x360.ear_mar.csv"
GLANCE_DOWN = (29, 79)  # talking head: she looks down at her notes (inclusive frame range)
YAWS, PITCHES, ROLLS = range(-50, 51, 10), range(-35, 26, 10), range(-20, 21, 10)
FACE_PX = 100.0         # synthetic face width (x extent of the 468 points), pixels
_FLIP = np.diag([1.0, -1.0, -1.0])


def frames(path):
    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, image = cap.read()
            if not ok:
                return
            yield image
    finally:
        cap.release()


def boxed(path, limit: int | None = None) -> list[tuple[np.ndarray, tuple]]:
    """(frame, box) per frame: YuNet's largest face, the previous box when it finds none."""
    det, size, box, out = None, None, None, []
    for image in frames(path):
        if limit is not None and len(out) >= limit:
            break
        hw = (image.shape[1], image.shape[0])
        if det is None:
            det = cv2.FaceDetectorYN.create(str(YUNET), "", hw, 0.5)
        elif hw != size:
            det.setInputSize(hw)
        size = hw
        faces = det.detect(image)[1]
        if faces is not None and len(faces):
            box = tuple(float(v) for v in max(faces, key=lambda r: r[2] * r[3])[:4])
        out.append((image, box))
    return out


def timed_reads(mesh, data, hinted: bool = False) -> tuple[list[float], list]:
    """``hinted``: each read gets the previous frame's eye-line angle, as the daemon's head_pose
    signal passes it per track."""
    for image, box in data[:10]:          # warm-up: not counted
        mesh.read(image, box)
    mesh.second_passes = 0
    ms, readings, hint = [], [], 0.0
    for image, box in data:
        t0 = time.perf_counter()
        r = mesh.read(image, box, hint if hinted else 0.0)
        ms.append((time.perf_counter() - t0) * 1000.0)
        readings.append(r)
        hint = r.tilt if r is not None else 0.0
    return ms, readings


# -- synthetic rotations (as /work/scratch/pose/measure.py) -----------------------------------

def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-axes rotation for the documented convention (the inverse of estimate_pose)."""
    a, b, c = np.radians([yaw, -pitch, -roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return _FLIP @ ry @ rx @ rz @ _FLIP


def frontal(lm: np.ndarray, estimate_pose) -> np.ndarray:
    """The mesh with its own estimated pose undone, centred, scaled to a FACE_PX wide face."""
    lm = lm.astype(np.float64)
    yaw, pitch, roll, _ = estimate_pose(lm)
    base = (lm - lm.mean(0)) @ rotation(yaw, pitch, roll)   # row vectors: R^T, the inverse
    return base * (FACE_PX / np.ptp(base[:, 0]))


def pose_errors(bases: list[np.ndarray], noise: float, rng, estimate_pose) -> np.ndarray:
    """(n, 3) absolute yaw/pitch/roll errors in degrees over the grid and the meshes."""
    err = []
    centre = np.array([320.0, 180.0, 0.0])   # where in the frame: irrelevant to the fit
    for base in bases:
        for yaw in YAWS:
            for pitch in PITCHES:
                for roll in ROLLS:
                    pts = base @ rotation(yaw, pitch, roll).T + centre   # weak perspective
                    if noise:
                        pts = pts + rng.normal(0.0, noise, pts.shape)
                    e = np.abs(np.array(estimate_pose(pts)[:3]) - (yaw, pitch, roll))
                    err.append(np.minimum(e, 360.0 - e))
    return np.array(err)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="talking-head frames timed (one read each)")
    ap.add_argument("--frontal", type=int, default=5, help="most frontal frames used for the synthetic test")
    ap.add_argument("--core", type=int, default=0)
    args = ap.parse_args()
    require(MODEL, YUNET, TALKING_HEAD, HEAD_TURN, EAR_MAR_CSV)
    cv2.setNumThreads(1)
    print(machine())
    print(cpu_flags())
    pinned = pin_to_core(args.core) if hasattr(os, "sched_setaffinity") else "not pinned (no sched_setaffinity here)"
    print(pinned + "; LiteRT and OpenCV each on 1 thread; face boxes: YuNet (computed before timing)")

    from daemon.model.face_mesh import FaceMesh, estimate_pose

    # 1. cost ----------------------------------------------------------------------------------
    data = boxed(TALKING_HEAD, args.frames)
    if len(data) < args.frames or any(b is None for _, b in data):
        raise SystemExit(f"talking head: {len(data)} frames, {sum(b is None for _, b in data)} without a face box")
    two = FaceMesh(MODEL, threads=1, min_presence=0.0, retilt_deg=3.0)
    one = FaceMesh(MODEL, threads=1, min_presence=0.0, retilt_deg=None)
    ms_two, read_two = timed_reads(two, data)
    tilted = two.second_passes
    ms_hint, _ = timed_reads(two, data, hinted=True)
    hinted_passes = two.second_passes
    ms_one, read_one = timed_reads(one, data)
    lm = read_two[0].landmarks
    t0 = time.perf_counter()
    for _ in range(1000):
        estimate_pose(lm)
    fit_ms = (time.perf_counter() - t0)          # total s for 1000 = ms per call

    print(f"\n== 1. FaceMesh read() per face, {len(data)} talking-head frames (640x360, face ~104 px)")
    rows = [["retilt_deg=3.0, no hint", f"{pct(ms_two, 50):.2f}", f"{pct(ms_two, 99):.2f}",
             f"{tilted}/{len(data)}"],
            ["retilt_deg=3.0, last frame's tilt (daemon)", f"{pct(ms_hint, 50):.2f}", f"{pct(ms_hint, 99):.2f}",
             f"{hinted_passes}/{len(data)}"],
            ["retilt_deg=None (one pass)", f"{pct(ms_one, 50):.2f}", f"{pct(ms_one, 99):.2f}", "0"],
            ["estimate_pose alone (1000 calls)", f"{fit_ms:.3f}", "-", "-"]]
    print(table(rows, ["setting", "p50 ms", "p99 ms", "frames with 2nd pass"]))

    csv = np.loadtxt(EAR_MAR_CSV, delimiter=",", skiprows=1)[: len(data)]
    rows = []
    for name, readings in (("retilt_deg=3.0", read_two), ("retilt_deg=None", read_one)):
        got = np.array([[r.ear, r.mar] for r in readings])
        rows.append([name, *[f"{np.corrcoef(got[:, k], csv[:, k + 1])[0, 1]:.5f} / "
                             f"{np.abs(got[:, k] - csv[:, k + 1]).mean():.4f}" for k in (0, 1)]])
    print(f"\nEAR/MAR against {EAR_MAR_CSV.name} (same {len(data)} readings)")
    print(table(rows, ["setting", "EAR corr / mean |diff|", "MAR corr / mean |diff|"]))

    # 2. synthetic pose accuracy ---------------------------------------------------------------
    order = sorted(range(len(read_two)), key=lambda i: abs(read_two[i].yaw) + abs(read_two[i].pitch)
                   + abs(read_two[i].roll))[: args.frontal]
    bases = [frontal(read_two[i].landmarks, estimate_pose) for i in order]
    rng = np.random.default_rng(0)
    n_grid = len(YAWS) * len(PITCHES) * len(ROLLS)
    print(f"\n== 2. pose error, real meshes of talking-head frames {sorted(order)} rotated by known angles: "
          f"yaw {YAWS.start}..{YAWS.stop - 1}, pitch {PITCHES.start}..{PITCHES.stop - 1}, "
          f"roll {ROLLS.start}..{ROLLS.stop - 1} (10 deg steps, {n_grid} poses x {len(bases)} meshes), "
          f"weak perspective, {FACE_PX:.0f} px face")
    rows = []
    for noise in (0.0, 1.0):
        err = pose_errors(bases, noise, rng, estimate_pose)
        rows.append([f"{noise:.0f} px" if noise else "none", str(len(err)),
                     *[f"{err[:, k].mean():.2f} / {err[:, k].max():.2f}" for k in range(3)]])
    print(table(rows, ["noise (x, y, z)", "poses", "yaw mean / max deg", "pitch mean / max deg",
                       "roll mean / max deg"]))

    # 3. signs on real clips -------------------------------------------------------------------
    turn = [two.read(image, box) if box else None for image, box in boxed(HEAD_TURN)]
    yaws = [r.yaw for r in turn if r is not None]
    a, b = GLANCE_DOWN
    down = [r.pitch for r in read_two[a: b + 1]]
    look = pct([r.pitch for r in read_two], 80)
    print("\n== 3. signs on real clips (default retilt_deg=3.0)")
    rows = [[HEAD_TURN.name, "first frame yaw (turned to her right: expect < 0)", f"{yaws[0]:+.1f}",
             "ok" if yaws[0] < -20 else "WRONG SIGN"],
            ["", f"last frame yaw ({len(turn)} frames, {len(turn) - len(yaws)} without a face)",
             f"{yaws[-1]:+.1f}", "-"],
            ["", "yaw min / max over the clip", f"{min(yaws):+.1f} / {max(yaws):+.1f}", "-"],
            [TALKING_HEAD.name, f"min pitch, frames {a}-{b} (glances down: expect < 0)", f"{min(down):+.1f}",
             "ok" if min(down) < look - 5 else "WRONG SIGN"],
            ["", f"pitch looking into the camera (p80 of {len(read_two)} frames)", f"{look:+.1f}", "-"]]
    print(table(rows, ["clip", "what", "degrees", "sign"]))
    pipeline_with_and_without()


def pipeline_with_and_without() -> None:
    """The whole per-frame pipeline (config.yaml: Haar, emotion int8, eye model, rules) on the
    talking head, twice through, with the head_pose signal off and on: what it costs a device."""
    import time

    from daemon.config import load_config
    from daemon.rules import RulesEngine
    from daemon.stats import PipelineStats
    from daemon.types import Frame
    from daemon.vision.pipeline import Pipeline

    clip = list(frames(TALKING_HEAD))
    cfg = load_config(REPO / "config.yaml")
    rows = []
    for on in (False, True):
        c = cfg.model_copy(update={"head_pose": cfg.head_pose.model_copy(update={"enabled": on})})
        stats = PipelineStats()
        pipe = Pipeline.from_config(c, stats)
        rules = RulesEngine(c.rules, pipe.labels)
        n, t0 = 0, time.perf_counter()
        for _ in range(2):
            for image in clip:
                rules.step(pipe.process(Frame(image, n, n / 25, n / 25)))
                n += 1
        fps = n / (time.perf_counter() - t0)
        lat = stats.latency()
        hp = lat.get("head_pose", {})
        rows.append([f"head_pose {'on' if on else 'off'}", f"{fps:.1f}", f"{lat['total']['p50']:.1f}",
                     f"{lat['total']['p99']:.1f}", f"{hp.get('p50', 0):.1f}" if hp else "-"])
    print(f"\n== 4. pipeline on {TALKING_HEAD.name}, config.yaml, one core, frames as fast as they go")
    print(table(rows, ["pipeline", "frames/s", "total p50 ms", "total p99 ms", "head_pose p50 ms"]))


if __name__ == "__main__":
    main()
