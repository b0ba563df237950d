"""The systemd units: clean `systemd-analyze verify`, a security exposure of at most 2.5 with
every remaining item justified, the lifecycle directives the daemon relies on, and the
daemon's libraries working inside the unit's seccomp sandbox."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TALKING_HEAD, shared_file

UNITS = REPO / "systemd"
SANDBOX = Path(__file__).with_name("systemd_sandbox.py")
EXEC_PATH = "/opt/emotiond/venv/bin/emotiond"
MAX_EXPOSURE = 2.5
# The template differs from the plain unit only in these instance-specific settings.
INSTANCE_KEYS = {"Description", "Conflicts", "ExecStart", "StateDirectory", "WorkingDirectory",
                 "EnvironmentFile"}

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze not installed (apt-get install systemd)")


def directives(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, repeated keys kept in order."""
    out, section = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def service(path: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for section, key, value in directives(path):
        if section == "Service":
            values.setdefault(key, []).append(value)
    return values


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> dict[str, Path]:
    """Copies of the units whose ExecStart names an executable that exists, as verify wants.

    The template is staged under an instance name (``emotiond@cab.service``): verify and
    security need a concrete instance.
    """
    root = tmp_path_factory.mktemp("units")
    exe = root / "emotiond"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    staged = {}
    for src, name in (("emotiond.service", "emotiond.service"), ("emotiond@.service", "emotiond@cab.service")):
        text = (UNITS / src).read_text()
        assert EXEC_PATH in text
        (root / name).write_text(text.replace(EXEC_PATH, str(exe)))
        staged[src] = root / name
    return staged


@needs_analyze
@pytest.mark.parametrize("unit", ["emotiond.service", "emotiond@.service"])
def test_verify_prints_nothing(staged, unit):
    # verify exits 0 on many mistakes (unknown keys, bad values): its output is the verdict.
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(staged[unit])],
                         capture_output=True, text=True, cwd=staged[unit].parent, timeout=60)
    assert res.returncode == 0 and res.stdout + res.stderr == "", res.stdout + res.stderr


@needs_analyze
def test_verify_catches_a_bad_unit(staged, tmp_path):
    """The check above can fail: a misspelt key makes verify print a warning."""
    bad = tmp_path / "emotiond.service"
    bad.write_text(staged["emotiond.service"].read_text().replace("ProtectClock=yes", "ProtectClocks=yes"))
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert "ProtectClocks" in res.stdout + res.stderr


def security(unit: Path) -> tuple[float, list[str]]:
    """The overall exposure and the names of the settings it flags (✗ lines)."""
    res = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
                         capture_output=True, text=True, cwd=unit.parent, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", res.stdout)
    assert m, res.stdout + res.stderr
    flagged = [line.split()[1].split("=")[0] for line in res.stdout.splitlines() if line.startswith("✗")]
    return float(m.group(1)), flagged


@needs_analyze
@pytest.mark.parametrize("unit", ["emotiond.service", "emotiond@.service"])
def test_security_exposure_is_low_and_justified(staged, unit):
    exposure, flagged = security(staged[unit])
    assert exposure <= MAX_EXPOSURE, f"{unit}: exposure {exposure} > {MAX_EXPOSURE}"
    justified = set(re.findall(r"EXPOSURE ((?:\w+= ?)+):", (UNITS / unit).read_text()))
    justified_keys = {k for group in justified for k in re.findall(r"(\w+)=", group)}
    assert flagged, "the analyzer flagged nothing: did its output format change?"
    unexplained = sorted(set(flagged) - justified_keys)
    assert not unexplained, f"{unit}: flagged without an 'EXPOSURE Key=:' comment: {unexplained}"


@pytest.mark.parametrize("unit,config", [("emotiond.service", "/etc/emotiond/config.yaml"),
                                         ("emotiond@.service", "/etc/emotiond/%i.yaml")])
def test_lifecycle_directives(unit, config):
    s = service(UNITS / unit)
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] and s["WatchdogSec"][0] not in ("0", "infinity")
    assert s["ExecStart"] == [f"{EXEC_PATH} run --config {config}"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["Restart"] == ["on-failure"]
    assert "78" in s["RestartPreventExitStatus"][0].split()  # EX_CONFIG: do not loop on a bad config
    assert s["DynamicUser"] == ["yes"] and s["SupplementaryGroups"] == ["video"]
    assert s["DeviceAllow"] == ["char-video4linux rw"] and s["DevicePolicy"] == ["closed"]
    assert s["ConfigurationDirectory"] == ["emotiond"]
    assert s["StateDirectory"] == (["emotiond"] if unit == "emotiond.service" else ["emotiond-%i"])


def test_template_hardening_matches_plain_unit():
    plain = {k: v for k, v in service(UNITS / "emotiond.service").items() if k not in INSTANCE_KEYS}
    template = {k: v for k, v in service(UNITS / "emotiond@.service").items() if k not in INSTANCE_KEYS}
    assert template == plain


# --- the daemon's libraries inside the unit's seccomp sandbox -----------------------------------

DETECTOR_TFLITE = "detectors/face_detection_short_range.tflite"  # a float model: XNNPACK runs it

WORKLOAD = r"""
import mmap, os, socket, sqlite3, sys, tempfile
import cv2, numpy as np
from ai_edge_litert.interpreter import Interpreter

clip, models = sys.argv[1], sys.argv[2:]
cap = cv2.VideoCapture(clip)
casc = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
faces = 0
for _ in range(10):
    ok, frame = cap.read()
    assert ok, "video decode failed"
    faces += len(casc.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 1.2, 5))
print("faces", faces)
for path in models:  # the default XNNPACK delegate
    it = Interpreter(model_path=path, num_threads=2)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    it.invoke()
    print("tflite", os.path.basename(path), it.get_output_details()[0]["shape"].tolist())
print("resolve", socket.getaddrinfo("localhost", 1883, type=socket.SOCK_STREAM)[0][4][0])
with tempfile.TemporaryDirectory() as d:
    db = sqlite3.connect(os.path.join(d, "outbox.sqlite"))
    db.execute("pragma journal_mode=wal"); db.execute("create table t(x)"); db.commit()
    print("sqlite ok")
for name, call in (("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)),
                   ("wx-mmap", lambda: mmap.mmap(-1, 4096, prot=7))):
    try:
        call()
        print(name, "allowed")
    except OSError as exc:
        print(name, "denied", exc.errno)
"""


def sandbox_available() -> bool:
    sys.path.insert(0, str(SANDBOX.parent))
    try:
        import systemd_sandbox
        return systemd_sandbox.import_seccomp() is not None and shutil.which("systemd-analyze") is not None
    finally:
        sys.path.pop(0)


needs_sandbox = pytest.mark.skipif(not sandbox_available(),
                                   reason="libseccomp Python binding missing (apt-get install python3-seccomp)")


@needs_sandbox
def test_libraries_work_under_the_units_seccomp_rules():
    """MemoryDenyWriteExecute=yes, the system call filter, the address families and the /proc
    view do not break numpy, OpenCV (FFmpeg decode, Haar), LiteRT with XNNPACK, name lookup or
    SQLite."""
    clip = shared_file(TALKING_HEAD)
    models = [str(shared_file(DETECTOR_TFLITE))] + [str(p) for p in (REPO / "models").glob("*.tflite")]
    res = subprocess.run(
        [sys.executable, str(SANDBOX), str(UNITS / "emotiond.service"), "--",
         sys.executable, "-c", WORKLOAD, str(clip), *models],
        capture_output=True, text=True, timeout=180,
    )
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert int(re.search(r"faces (\d+)", out).group(1)) >= 5
    assert len(re.findall(r"^tflite ", out, re.M)) == len(models)
    assert "resolve 127.0.0.1" in out and "sqlite ok" in out
    # XNNPACK is in use (it is not when its cpuinfo cannot read /proc/cpuinfo: ProcSubset=pid).
    if os.geteuid() == 0:
        assert "Created TensorFlow Lite XNNPACK delegate" in res.stderr, res.stderr
    # The sandbox was really in force: what the unit forbids was refused.
    assert "netlink denied 97" in out  # EAFNOSUPPORT
    assert "wx-mmap denied 1" in out  # EPERM


@needs_sandbox
def test_daemon_runs_a_clip_under_the_units_seccomp_rules(tmp_path, emotion_model):
    """The whole daemon, not only its libraries: a clip to its end (exit 0) in the sandbox."""
    clip = shared_file(TALKING_HEAD)
    if subprocess.run([sys.executable, "-c", "import daemon.runtime.app"], cwd=REPO, capture_output=True).returncode:
        pytest.skip("daemon.runtime.app does not import yet")
    config = tmp_path / "config.yaml"
    config.write_text(
        "device_id: sandbox\n"
        f"source: {{uri: '{clip}', loop: false, realtime: false}}\n"
        f"classifier: {{model: '{emotion_model}'}}\n"
        "eyes: {enabled: false}\n"
        "mqtt: {host: 127.0.0.1, port: 9}\n"  # nothing listens there: the daemon must not care
    )
    env = dict(os.environ, STATE_DIRECTORY=str(tmp_path))  # as StateDirectory= sets it
    res = subprocess.run(
        [sys.executable, str(SANDBOX), str(UNITS / "emotiond.service"), "--",
         sys.executable, "-m", "daemon", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "source finished" in res.stdout + res.stderr
    assert (tmp_path / "outbox.sqlite").is_file()
