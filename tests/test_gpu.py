"""``classifier.delegate: gpu``: LiteRT's GPU accelerator (CompiledModel, WebGPU over Vulkan),
run for real on SwiftShader's software Vulkan (Debian's chromium ships it; CI installs
chromium), compared with the CPU; no usable GPU with ``fallback: false`` stops the daemon (78);
a GPU failing after start hands over to the CPU once, logged and counted."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, TALKING_HEAD, read_frames, shared_file
from daemon.exitcodes import EX_CONFIG
from daemon.model.tflite import TfliteModel

FP16 = REPO / "models" / "emotion_wild_fp16.tflite"  # the default's float sibling
# probabilities of the GPU and the CPU path, per face and class; the timeline rounds to 1e-4
# (measured: equal at that rounding on every frame of the clip)
TOLERANCE = 1e-3


def swiftshader_icd() -> Path | None:
    """SwiftShader's Vulkan driver manifest, as ``dpkg -L`` lists it for the chromium packages."""
    try:
        out = subprocess.run(["dpkg", "-L", "chromium", "chromium-common"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    found = [Path(line) for line in out.splitlines() if line.endswith("/vk_swiftshader_icd.json")]
    return next((p for p in found if p.is_file()), None)


@pytest.fixture
def swiftshader_env(tmp_path) -> dict[str, str]:
    icd = swiftshader_icd()
    if icd is None:
        pytest.skip("SwiftShader's vk_swiftshader_icd.json not installed (apt-get install chromium)")
    if not FP16.is_file():
        pytest.skip(f"{FP16} not built")
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    return {**os.environ, "VK_ICD_FILENAMES": str(icd), "XDG_RUNTIME_DIR": str(runtime), "PYTHONUNBUFFERED": "1"}


def _analyze(tmp_path: Path, name: str, env: dict[str, str], **classifier) -> tuple[subprocess.CompletedProcess, dict]:
    cfg = tmp_path / f"{name}.yaml"
    # 2 Hz per face: SwiftShader runs the three-network model at about one face per second
    cfg.write_text(yaml.safe_dump({"classifier": {"model": str(FP16), "max_rate_hz": 2.0, **classifier},
                                   "eyes": {"enabled": False}, "rules": []}))
    timeline = tmp_path / f"{name}.json"
    out = subprocess.run(
        [sys.executable, "-m", "daemon", "analyze", str(shared_file(TALKING_HEAD)), "--config", str(cfg),
         "--out", str(tmp_path / f"{name}.mp4"), "--results", str(timeline)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out, json.loads(timeline.read_text())


@pytest.mark.slow  # SwiftShader compiles the shaders and emulates the GPU on the CPU: ~30 s
def test_daemon_on_the_gpu_classifies_the_talking_head_clip_as_the_cpu_does(tmp_path, swiftshader_env):
    gpu, on_gpu = _analyze(tmp_path, "gpu", swiftshader_env, delegate="gpu", fallback=False)
    assert "runs on gpu (vulkan, vk_swiftshader_icd.json, fully accelerated)" in gpu.stderr, gpu.stderr[-3000:]
    _, on_cpu = _analyze(tmp_path, "cpu", swiftshader_env, delegate="cpu")
    # --results rows: one per face (a frame without a face has one row with no label)
    assert len(on_gpu) == len(on_cpu) > 200
    faces = 0
    for a, b in zip(on_gpu, on_cpu):
        assert (a["frame"], a["track"], a["label"] is None) == (b["frame"], b["track"], b["label"] is None)
        if a["label"] is None:
            continue
        pa, pb = (np.array([v for k, v in sorted(r.items()) if k.startswith("p_")]) for r in (a, b))
        assert np.abs(pa - pb).max() <= TOLERANCE, (a["frame"], a, b)
        assert a["label"] == b["label"]
        faces += 1
    assert faces > 200


def test_gpu_without_a_usable_driver_and_no_fallback_exits_78_with_the_reason(tmp_path, swiftshader_env):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "classifier": {"model": str(FP16), "delegate": "gpu", "fallback": False}, "eyes": {"enabled": False},
        "rules": [], "outbox": {"state_dir": str(tmp_path / "state")}, "mqtt": {"host": "127.0.0.1", "port": 1},
    }))
    env = {**swiftshader_env, "VK_ICD_FILENAMES": str(tmp_path / "no_such_icd.json")}
    out = subprocess.run([sys.executable, "-m", "daemon", "run", "--config", str(cfg)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == EX_CONFIG, out.stderr[-3000:]
    assert "no usable GPU" in out.stderr and "no_such_icd.json" in out.stderr and "fallback" in out.stderr
    assert "Traceback" not in out.stderr


def test_gpu_without_a_usable_driver_falls_back_to_the_cpu_and_says_why(tiny_emotion_model, monkeypatch):
    monkeypatch.setenv("VK_ICD_FILENAMES", "/nonexistent/icd.json")
    model = TfliteModel(tiny_emotion_model, delegate="gpu", fallback=True)
    assert model.delegate_in_use == "cpu"
    assert "no usable GPU" in model.fallback_reason and "/nonexistent/icd.json" in model.fallback_reason
    assert model.info()["fallback_reason"] == model.fallback_reason


@pytest.fixture(scope="module")
def frame_and_boxes():
    """A talking-head frame and three boxes around its face: a batch of real crops."""
    frame = read_frames(TALKING_HEAD, limit=1)[0]
    return frame, [(250, 60, 140, 140), (230, 60, 140, 140), (265, 70, 140, 140)]


class _BrokenGpu:
    """A GPU runner whose device was lost after start."""

    calls = 0

    def run(self, batch):
        self.calls += 1
        raise RuntimeError("ERROR: [delegate_webgpu.cc] device lost")


def test_gpu_failing_after_start_falls_back_once_logged_and_counted(tiny_float_model, frame_and_boxes, caplog):
    frame, boxes = frame_and_boxes
    reference = TfliteModel(tiny_float_model).classify(frame, boxes)
    model = TfliteModel(tiny_float_model)
    broken = model._gpu = _BrokenGpu()
    model.delegate_in_use = "gpu (vulkan, fully accelerated)"
    with caplog.at_level(logging.WARNING, logger="daemon.model.tflite"):
        first = model.classify(frame, boxes)
        second = model.classify(frame, boxes)
    np.testing.assert_allclose(first, reference, atol=1e-6)
    np.testing.assert_allclose(second, reference, atol=1e-6)
    assert broken.calls == 1  # not retried: no crash loop
    assert model.delegate_in_use == "cpu" and model.delegate_fallbacks == 1
    assert "device lost" in model.fallback_reason
    assert model.info()["delegate_fallbacks"] == 1
    warnings = [r for r in caplog.records if "running on the CPU from now on" in r.message]
    assert len(warnings) == 1
