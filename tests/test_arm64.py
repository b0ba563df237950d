"""arm64 (issue "Proven on the boards it runs on"): the short form of ``scripts/arm64-check.sh``
under emulation, and the row-by-row comparison it judges with.

The short form builds (once, cached) an arm64 Debian root, installs the wheel of this checkout
there and checks on qemu's emulated CPUs: ``emotiond check``, ``precision: auto`` on a CPU with
and one without 8-bit dot products, ``analyze --results`` against the host's on the same frames,
and a subset of this suite. It needs root, binfmt_misc and qemu-user-static (the script exits 77
without them, and this test skips with its reason). The full form (clips decoded on each side,
more tests) is ``sudo scripts/arm64-check.sh``.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import compare_results  # noqa: E402

COLUMNS = ["file", "frame", "time_s", "track", "primary", "x", "y", "w", "h", "label", "confidence",
           "p_angry", "p_disgust", "p_fear", "p_happy", "p_neutral", "p_sad", "p_surprise", "eye_closed",
           "head_pose.yaw", "head_pose.pitch", "head_pose.roll", "gaze.yaw", "gaze.pitch", "gaze.openness"]


def _row(frame: int, happy: float, pitch: float = -5.0, x: int = 100) -> dict:
    p = {"p_angry": 0.0, "p_disgust": 0.0, "p_fear": 0.0, "p_happy": happy, "p_neutral": 1 - happy,
         "p_sad": 0.0, "p_surprise": 0.0}
    return {"file": "clip.mp4", "frame": frame, "time_s": frame / 25, "track": 1, "primary": 1, "x": x, "y": 50,
            "w": 80, "h": 80, "label": "happy" if happy > 0.5 else "neutral", "confidence": max(happy, 1 - happy),
            **p, "eye_closed": 0.1, "head_pose.yaw": 1.0, "head_pose.pitch": pitch, "head_pose.roll": 0.0,
            "gaze.yaw": 2.0, "gaze.pitch": -3.0, "gaze.openness": 0.25}


def _write(path: Path, rows: list[dict]) -> str:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return str(path)


def test_the_comparison_holds_rows_to_the_stated_tolerances(tmp_path, capsys):
    ref = _write(tmp_path / "ref.csv", [_row(0, 0.9), _row(1, 0.52), _row(2, 0.2)])
    same = _write(tmp_path / "same.csv", [_row(0, 0.89), _row(1, 0.48), _row(2, 0.21)])  # frame 1 flips: 0.04 apart
    assert compare_results.main([ref, same, "--prob", "0.05", "--label-margin", "0.1"]) == 0
    assert "1 of 3 rows differ (1 where the top two were within 0.1)" in capsys.readouterr().out
    assert compare_results.main([ref, same, "--prob", "0.05"]) == 1  # no margin allowed: the flip counts
    moved = _write(tmp_path / "moved.csv", [_row(0, 0.9, pitch=-9.0), _row(1, 0.52, x=120), _row(2, 0.2)])
    assert compare_results.main([ref, moved, "--pose-deg", "3", "--box-px", "12"]) == 1
    out = capsys.readouterr().out
    assert "FAIL head pose: max |difference| 4 (tolerance 3) at frame 0 head_pose.pitch" in out
    assert "FAIL box: max |difference| 20 (tolerance 12) at frame 1 x" in out
    lost = _write(tmp_path / "lost.csv", [_row(0, 0.9), _row(2, 0.2)])
    assert compare_results.main([ref, lost]) == 1
    assert "FAIL faces: 3 rows against 2; only in one: 1" in capsys.readouterr().out


@pytest.mark.slow
def test_the_short_arm64_check_passes_under_emulation():
    if os.geteuid() != 0:
        pytest.skip("the arm64 check needs root (debootstrap, chroot, binfmt_misc)")
    res = subprocess.run([str(REPO / "scripts" / "arm64-check.sh"), "--short"], capture_output=True, text=True,
                         timeout=1800)
    print(res.stdout[-6000:])
    if res.returncode == 77:
        pytest.skip(res.stdout.strip().splitlines()[-1])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    out = res.stdout
    assert "precision auto on cortex-a72 (features: -): emotion_wild_fp16.tflite" in out
    assert "precision auto on neoverse-n1 (features: asimddp" in out and "): emotion_wild.tflite" in out
    assert "ok   emotiond check passes on arm64" in out
    assert "FAIL" not in out
