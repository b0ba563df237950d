"""int8 against float per model on this CPU, side by side in one run: what
``classifier.precision: auto`` decides here, and the figures behind the decision.

    python bench/precision.py                      # the shipped models and their float siblings
    python bench/precision.py --repeats 5 --runs 100

Each model runs a face and its mirror per invoke (flip averaging, as the daemon does), one
thread; the figure is the median over ``--repeats`` rounds of the median of ``--runs`` invokes,
the models interleaved round by round so that a busy neighbour slows them alike. Accuracy and
agreement come from each model's manifest (FER-2013 PublicTest, measured by the converter).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import REPO, cpu_flags, machine, peak_rss_mb, pin_to_core, table

from daemon.model.precision import FLOAT_SUFFIX, _host, float_is_faster
from daemon.model.tflite import TfliteModel

PAIRS = ("emotion_wild", "emotion_ferplus")  # the shipped stems; emotion_ferplus has no float sibling


def memory_of(path: Path) -> str:
    """Resident memory of a fresh process holding only this classifier: loaded, then after
    batches of 1, 2 and 8 faces with their mirrors (each batch size keeps an interpreter, and
    each interpreter its own packed weights)."""
    m = TfliteModel(path, threads=1)
    out = [f"{peak_rss_mb(os.getpid()):.0f}"]
    for faces in (1, 2, 8):
        m.predict(np.zeros((2 * faces, *m.preprocessor.shape), m.preprocessor.dtype))
        out.append(f"{peak_rss_mb(os.getpid()):.0f}")
    return " / ".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(REPO / "models"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)  # the child process of the memory column
    a = ap.parse_args()
    if a.memory_of:
        print(memory_of(Path(a.memory_of)))
        return 0

    print(machine(), "|", pin_to_core(0))
    print(cpu_flags())
    faster, why = float_is_faster(*_host())
    print(f"classifier.precision auto: {'float' if faster else 'int8'} ({why})\n")

    paths = []
    for stem in PAIRS:
        for name in (stem, stem + FLOAT_SUFFIX):
            p = Path(a.models) / f"{name}.tflite"
            if p.is_file():
                paths.append(p)
    models = {p: TfliteModel(p, threads=1) for p in paths}
    face = np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)
    times: dict[Path, list[float]] = {p: [] for p in paths}
    for _ in range(a.repeats):
        for p, m in models.items():
            x = m.preprocessor.prepare_face(face)[None]
            x = np.concatenate([x, x[:, :, ::-1]])
            for _ in range(10):
                m.predict(x)
            ts = []
            for _ in range(a.runs):
                t0 = time.perf_counter()
                m.predict(x)
                ts.append(time.perf_counter() - t0)
            times[p].append(float(np.median(ts)) * 1000)

    memory = {p: subprocess.run([sys.executable, __file__, "--memory-of", str(p)], capture_output=True, text=True,
                                check=True).stdout.strip().splitlines()[-1] for p in paths}
    rows = []
    for stem in PAIRS:
        base = next((p for p in paths if p.stem == stem), None)
        for p in (q for q in paths if q.stem in (stem, stem + FLOAT_SUFFIX)):
            m = models[p].manifest
            ms = float(np.median(times[p]))
            agree = m.metrics.float_agreement if m.metrics and m.metrics.float_agreement is not None else 1.0
            rows.append([
                p.name, m.quantization.type, f"{ms:.2f}",
                f"{ms / float(np.median(times[base])):.2f}x" if base is not None else "-",
                f"{m.metrics.accuracy * 100:.2f} %" if m.metrics else "-", f"{agree * 100:.1f} %", memory[p],
            ])
    print(table(rows, ["model", "type", "ms/face", "vs int8", "accuracy", "agrees w/ float",
                       "RSS MB: loaded / 1 / 2 / 8 faces"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
