"""Peak RSS and start-up time (process start → first ``state`` message) of ``emotiond run``
with the shipped ``config.yaml`` and with the demo's ``demo/config.yaml``, against a process
doing the same job with TensorFlow loaded.

* config.yaml: ``python -m daemon run`` on the talking-head clip (real time, looped) with the
  repository's config.yaml (YuNet, following, classifier, eyes, head pose, gaze) and a local
  Mosquitto; peak RSS is the kernel's VmHWM after ``--run-s`` seconds of running;
* demo: ``python -m daemon run`` with demo/config.yaml on its clip (``build/demo/astronaut.mp4``,
  made by scripts/make_demo_clip.py when absent; real time, to the end of the clip), what
  ``scripts/demo.sh`` runs; peak RSS is the whole run's (``ru_maxrss`` when it exits);
* tensorflow: ``python bench/footprint.py --tf-child``: imports TensorFlow, detects with Haar,
  runs the int8 model with ``tf.lite.Interpreter`` and publishes with paho (what a tutorial
  script does), VmHWM after ``--run-s`` seconds.
Medians of ``--repeats`` starts.

    python bench/footprint.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _common import REPO, TALKING_HEAD, machine, require, table
from _daemon import Subscriber, daemon_config, make_broker, peak_rss_mb, start_daemon, stop


def tf_child(port: int, topic: str) -> None:
    """The same job with TensorFlow: Haar + the int8 model via tf.lite + paho."""
    import cv2
    import numpy as np
    import paho.mqtt.client as paho
    import tensorflow as tf

    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    interp = tf.lite.Interpreter(model_path=str(REPO / "models" / "emotion_wild.tflite"), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zero = inp["quantization"]
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    cap = cv2.VideoCapture(str(TALKING_HEAD))
    while True:
        ok, frame = cap.read()
        if not ok:
            cap = cv2.VideoCapture(str(TALKING_HEAD))
            continue
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        faces = cascade.detectMultiScale(cv2.resize(grey, (320, 180)), 1.2, 5)
        state = {"faces": len(faces), "ts": time.time()}
        if len(faces):
            x, y, w, h = (int(v * 2) for v in faces[0])
            face = cv2.resize(grey[y : y + h, x : x + w], (48, 48)).astype(np.float32) / 127.5 - 1.0
            interp.set_tensor(inp["index"], np.round(face / scale + zero).astype(inp["dtype"])[None, :, :, None])
            interp.invoke()
            state["emotion"] = int(np.argmax(interp.get_tensor(out["index"])))
        client.publish(topic, json.dumps(state), retain=True)
        time.sleep(1 / 25)


def measure(start, broker, topic: str, run_s: float | None, timeout: float = 120.0) -> tuple[float, float]:
    """Start-up time (to the first state) and peak RSS: after ``run_s`` seconds of running, or,
    with ``run_s`` None, of the whole run of a process that ends by itself (the demo's clip)."""
    sub = Subscriber(broker, [topic])
    t0 = time.time()
    proc = start()
    try:
        got = sub.first(topic, 60.0)
        if got is None:
            raise SystemExit(f"no state on {topic} within 60 s: {proc.stderr.read().decode()[-2000:]}")
        if run_s is not None:
            time.sleep(run_s)
            return got[0] - t0, peak_rss_mb(proc.pid)
        deadline = time.monotonic() + timeout
        while True:  # wait4, not wait: the kernel's peak RSS of the finished process comes with it
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the run did not finish within {timeout:g} s")
            time.sleep(0.2)
        if proc.returncode != 0:
            raise SystemExit(f"the run exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        return got[0] - t0, usage.ru_maxrss / 1024.0  # Linux: kB
    finally:
        stop(proc)
        sub.close()


DEMO_CLIP = REPO / "build" / "demo" / "astronaut.mp4"


def demo_config(folder: Path, broker, device: str) -> Path:
    """demo/config.yaml as scripts/demo.sh runs it, with this bench's broker, device id and outbox."""
    base = REPO / "demo"
    cfg = yaml.safe_load((base / "config.yaml").read_text())
    cfg["device_id"] = device
    cfg["source"] = {**cfg["source"], "uri": str(DEMO_CLIP)}
    for section in ("classifier", "eyes"):
        cfg[section]["model"] = str((base / cfg[section]["model"]).resolve())
    cfg["mqtt"] = {**cfg["mqtt"], "host": broker.host, "port": broker.port}
    cfg["outbox"] = {**cfg["outbox"], "state_dir": str(folder / f"outbox-{device}")}
    path = folder / f"{device}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--run-s", type=float, default=5.0, help="seconds to run after the first state before reading peak RSS")
    ap.add_argument("--tf-child", nargs=2, metavar=("PORT", "TOPIC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tf_child:
        tf_child(int(args.tf_child[0]), args.tf_child[1])
        return
    require(TALKING_HEAD)
    if not DEMO_CLIP.is_file():
        DEMO_CLIP.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_demo_clip.py"), str(DEMO_CLIP)], check=True)
    print(machine())
    results: dict[str, list[tuple[float, float]]] = {
        "emotiond run, config.yaml": [], "emotiond run, demo (whole clip)": [], "tensorflow script": []}
    with tempfile.TemporaryDirectory(prefix="emotiond-footprint-") as tmp:
        folder = Path(tmp)
        broker = make_broker(folder / "broker")
        try:
            for i in range(args.repeats):
                device = f"footprint{i}"
                cfg = daemon_config(folder, broker, device, {"uri": str(TALKING_HEAD), "realtime": True, "loop": True})
                results["emotiond run, config.yaml"].append(
                    measure(lambda: start_daemon(cfg), broker, f"emotiond/{device}/state", args.run_s))
                demo = demo_config(folder, broker, f"demo{i}")
                results["emotiond run, demo (whole clip)"].append(
                    measure(lambda: start_daemon(demo), broker, f"emotiond/demo{i}/state", None))
                topic = f"tfscript/{i}/state"
                results["tensorflow script"].append(measure(
                    lambda: subprocess.Popen([sys.executable, __file__, "--tf-child", str(broker.port), topic],
                                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
                    broker, topic, args.run_s))
        finally:
            broker.stop()
    rows = []
    for name, runs in results.items():
        starts, rss = [r[0] for r in runs], [r[1] for r in runs]
        rows.append([name, f"{statistics.median(starts):.2f}", f"{min(starts):.2f}-{max(starts):.2f}",
                     f"{statistics.median(rss):.0f}", f"{min(rss):.0f}-{max(rss):.0f}"])
    print(f"{args.repeats} starts each; peak RSS: VmHWM after {args.run_s:g} s of running (config.yaml, "
          "tensorflow), the whole run's (demo); MB = 2^20 bytes")
    print(table(rows, ["process", "start→first state s (median)", "range", "peak RSS MB (median)", "range"]))
    (e_start, e_rss), _, (t_start, t_rss) = ((statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
                                             for v in results.values())
    print(f"ratio tensorflow / emotiond (config.yaml): start-up {t_start / e_start:.1f}x, peak RSS {t_rss / e_rss:.1f}x")


if __name__ == "__main__":
    main()
