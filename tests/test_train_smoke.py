"""The training command end to end on a tiny real subset, killed mid-run and resumed.

A run is killed (SIGKILL, as a power cut would) after its first epoch is logged; the same
command with the same ``--out`` must continue from the next epoch rather than start again, and
finish with the model, the logs and the curves.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, shared_file

pytest.importorskip("tensorflow")


def _train_cmd(out: Path, epochs: int) -> list[str]:
    return [
        sys.executable, "-m", "converter", "train", "--data", str(shared_file("fer2013")), "--out", str(out),
        "--arch", "smallcnn", "--limit", "128", "--batch", "32", "--epochs", str(epochs), "--patience", "100",
    ]


def _logged_epochs(out: Path, phase: str = "finetune") -> list[int]:
    log = out / f"log_{phase}.csv"
    if not log.is_file():
        return []
    with log.open() as fh:
        return [int(row["epoch"]) for row in csv.DictReader(fh) if row.get("epoch", "").isdigit()]


ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def _kill_after_first_epoch(cmd: list[str], out: Path, phase: str = "finetune") -> None:
    """Start a training run and SIGKILL it (as a power cut would) once ``phase`` logs an epoch."""
    first = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    try:
        while not _logged_epochs(out, phase):
            assert first.poll() is None, first.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, f"first {phase} epoch never logged"
            time.sleep(0.1)
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow  # two TensorFlow processes and five short epochs: about a minute on 2 cores
def test_training_is_killed_and_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "run"
    _kill_after_first_epoch(_train_cmd(out, 50), out)
    killed_after = _logged_epochs(out)
    assert killed_after[0] == 0 and not (out / "DONE").exists()
    assert (out / "best.keras").is_file() and (out / "train_config.json").is_file()

    done = subprocess.run(_train_cmd(out, 4), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # resumed: epoch 0 ran once, the second run went on from the epoch after the last one logged
    assert _logged_epochs(out) == [0, 1, 2, 3]
    for name in ("best.keras", "best.json", "log_finetune.csv", "curves.png", "DONE"):
        assert (out / name).is_file(), name
    assert "[train] 128 images" in done.stdout
    assert not (out / "backup_finetune").exists()  # the resume state is cleared once finished


def _mobilenet_cmd(out: Path, head_epochs: int, epochs: int) -> list[str]:
    return [
        sys.executable, "-m", "converter", "train", "--data", str(shared_file("fer2013")), "--out", str(out),
        "--arch", "mobilenetv2", "--backbone-size", "32", "--alpha", "0.35", "--limit", "64", "--batch", "32",
        "--head-epochs", str(head_epochs), "--epochs", str(epochs), "--patience", "100",
    ]


@pytest.mark.slow  # two short TensorFlow processes: about 40 s on 2 cores
def test_a_run_killed_in_the_head_phase_still_fine_tunes_every_epoch(tmp_path):
    """Keras' BackupAndRestore leaves the resumed epoch on the model; the fine-tuning phase after
    a resumed head phase must still start at its epoch 0 (it used to skip epochs)."""
    out = tmp_path / "run"
    _kill_after_first_epoch(_mobilenet_cmd(out, 50, 2), out, "head")
    done = subprocess.run(_mobilenet_cmd(out, 2, 2), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _logged_epochs(out, "head") == [0, 1]
    assert _logged_epochs(out, "finetune") == [0, 1]
