"""A driver asleep from the first frame, as dashcams see him: does the monitor say so?

eyes_shut_desk's shut stretch (5.2-8.8 s, real shut eyes) played forwards and back twice
(14.4 s), seen through ``converter/views.py``'s dashcam (422x240, 15 frames/s, the face
``face_px`` wide and turned ``yaw`` degrees by a perspective warp, by day and at night: grey, 35 %
bright, noisy), through config.yaml's pipeline and rules on the clip's clock. The driver's eyes
are never seen open, so his open aperture is the prior's. One row per view: when each
driver_fatigue level and any other driver alert started.

    python bench/asleep_views.py                 # 50 and 40 px, +-35 degrees, day and night
    python bench/asleep_views.py --px 50 --yaw 35 --night
"""

from __future__ import annotations

import argparse
import sys

import cv2

from _common import REPO, SHARED, machine, table

CLIP = "drivers/eyes_shut_desk_540x960.mp4"
FPS = 20.0  # the clip's (../shared/data/drivers/README.md)
SHUT = (5.2, 8.8)  # the eyes shut, inside the labels' 5.0-9.0 s (+-0.3 s)


def frames_of(path) -> list:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        out.append(image)
    cap.release()
    return out


def play(frames: list, face: tuple[float, float, float], px: float, yaw: float, night: bool) -> list[str]:
    from converter.views import View, apply_view
    from daemon.config import load_config
    from daemon.rules import RulesEngine
    from daemon.types import Frame
    from daemon.vision.pipeline import Pipeline

    view = View(yaw=yaw, pitch=8.0, face_px=px, canvas=(422, 240), night=night)
    cfg = load_config(REPO / "config.yaml")
    pipe = Pipeline.from_config(cfg)
    rules = RulesEngine(cfg.rules, pipe.labels, cfg.zones)
    said, n = [], 0
    for i, image in enumerate(frames):
        if i % 4 == 3:
            continue  # 20 -> 15 frames/s: a slower camera never took this frame
        t = i / FPS
        for e in rules.step(pipe.process(Frame(apply_view(image, view, face), n, t, 1e9 + t))):
            if e.type.startswith("driver_") and (e.phase == "start" or (e.type == "driver_fatigue" and e.phase == "update")):
                said.append(f"{e.type.removeprefix('driver_')} {e.level}@{t:.1f}")
        n += 1
    return said


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--px", type=float, nargs="+", default=[50.0, 40.0], help="face widths after the view")
    ap.add_argument("--yaw", type=float, nargs="+", default=[35.0, -35.0], help="turns of the view (degrees)")
    ap.add_argument("--night", action="store_true", help="only the night view")
    args = ap.parse_args()
    path = SHARED / CLIP
    if not path.is_file():
        sys.exit(f"shared clip not found: {path}")
    frames = frames_of(path)
    det = cv2.FaceDetectorYN.create(str(REPO / "models/face_detection_yunet_2023mar.onnx"), "", frames[0].shape[1::-1])
    _, found = det.detect(frames[0])
    x, y, w, h = found[0][:4]
    face = (x + w / 2, y + h / 2, w)
    shut = frames[round(SHUT[0] * FPS):round(SHUT[1] * FPS)]
    seq = (shut + shut[::-1]) * 2
    print(machine())
    rows = []
    for px in args.px:
        for yaw in args.yaw:
            for night in ((True,) if args.night else (False, True)):
                said = play(seq, face, px, yaw, night)
                asleep = any(s.startswith("fatigue sleep") for s in said)
                rows.append([f"{px:.0f} px", f"{yaw:+.0f}", "night" if night else "day", "; ".join(said) or "nothing",
                             "asleep" if asleep else "MISSED"])
    print(f"{CLIP} {SHUT[0]}-{SHUT[1]} s, forwards and back twice ({len(seq) / FPS:.1f} s), asleep from the first frame")
    print(table(rows, ["face", "yaw", "light", "driver alerts (level@s)", "verdict"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
