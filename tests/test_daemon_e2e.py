"""The daemon as a product: ``python -m daemon run`` on real video against a real Mosquitto.

One module-scoped run plays the whole talking-head clip in real time (no loop, eyes and the
driver rules on, under ``-X importtime``) while a subscriber records everything; most tests
read that recording. Lifecycle tests (SIGTERM, SIGKILL), the multi-face clip and
``emotiond check`` start their own daemons.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest

import daemon
from broker import Broker, Collector, free_port, needs_mosquitto
from conftest import REPO, STREET, TALKING_HEAD, YUNET, shared_file
from daemon_helpers import (DaemonProcess, check_all_payloads, check_payload, daemon_config, labels_of, prefix,
                            run_cli)

pytestmark = needs_mosquitto
DRIVER_RULES = [{"type": "driver_fatigue"}, {"type": "driver_absent"},
                {"type": "sustained_emotion", "emotion": "angry"}]


@dataclass
class Recording:
    rc: int
    log: str
    messages: list[paho.MQTTMessage]
    retained_online: paho.MQTTMessage
    retained_after_exit: paho.MQTTMessage
    prefix: str

    def payloads(self, kind: str) -> list[dict]:
        return [check_payload(kind, m.payload) for m in self.messages if m.topic == f"{self.prefix}/{kind}"]

    def plain(self, kind: str) -> list[bytes]:
        return [m.payload for m in self.messages if m.topic == f"{self.prefix}/{kind}"]


@pytest.fixture(scope="module")
def talking_head(broker, emotion_model, tmp_path_factory) -> Recording:
    clip = shared_file(TALKING_HEAD)
    device = "e2e-talking-head"
    pfx = prefix(device)
    sub = Collector(broker, [f"{pfx}/#"])
    cfg = daemon_config(tmp_path_factory.mktemp("talking_head"), broker, device, emotion_model,
                        source={"uri": str(clip), "realtime": True}, eyes={"enabled": True}, rules=DRIVER_RULES,
                        # as config.yaml ships: the head gate keeps her glances at her notes from
                        # reading as microsleeps under the Euro NCAP default timings
                        head_pose={"enabled": True, "model": str(REPO / "models" / "face_landmark.tflite")})
    proc = DaemonProcess(cfg, python_flags=("-X", "importtime"))
    try:
        proc.wait_log(r"MQTT connected")
        fresh = Collector(broker, [f"{pfx}/status"])
        retained_online = fresh.wait_topic(f"{pfx}/status", b"online")
        fresh.close()
        rc = proc.wait(90)
    finally:
        proc.kill()
    after = Collector(broker, [f"{pfx}/status"])
    retained_after_exit = after.wait_topic(f"{pfx}/status")
    after.close()
    sub.close()
    return Recording(rc, proc.log(), list(sub.messages), retained_online, retained_after_exit, pfx)


def test_file_source_without_loop_finishes_with_exit_0(talking_head):
    assert talking_head.rc == 0, talking_head.log[-3000:]
    assert "source finished" in talking_head.log


def test_status_is_retained_online_then_offline_after_a_clean_end(talking_head):
    assert talking_head.retained_online.retain and talking_head.retained_online.payload == b"online"
    status = talking_head.plain("status")
    assert status[0] == b"online" and status[-1] == b"offline"
    assert talking_head.retained_after_exit.retain and talking_head.retained_after_exit.payload == b"offline"


def test_state_carries_the_manifest_labels(talking_head, emotion_model):
    labels = labels_of(emotion_model)
    states = talking_head.payloads("state")
    faces = [s["primary"] for s in states if s["primary"] is not None]
    assert faces, f"{len(states)} state messages (published on change only), none with a face"
    for face in faces:
        assert list(face["probs"]) == labels
        assert face["emotion"] in labels
        assert abs(sum(face["probs"].values()) - 1.0) < 0.05
    assert any(f["eye_closed"] is not None for f in faces), "eyes are enabled: eye closure is reported"


def test_stats_and_camera_status(talking_head):
    stats = talking_head.payloads("stats")
    assert stats, "no stats message"
    assert stats[-1]["frames"] > 0 and stats[-1]["delegate"] == "cpu"
    # the default cuts faces by their five points; a followed talking head always has them
    assert stats[-1]["faces_unaligned"] == 0 and stats[-1]["faces"] >= 1
    assert any(s["broker_connected"] for s in stats)
    assert b"online" in talking_head.plain("camera/status")


def test_every_payload_is_valid_against_its_schema(talking_head):
    seen = check_all_payloads(talking_head.messages, talking_head.prefix)
    assert {"status", "state", "stats", "camera/status"} <= set(seen)


def test_no_fatigue_alert_on_an_alert_talking_driver(talking_head):
    """The clip shows an awake woman talking (three short blinks): no driver_fatigue event."""
    events = talking_head.payloads("events")
    fatigue = [e for e in events if e["type"] == "driver_fatigue"]
    assert not fatigue, f"false fatigue alerts: {fatigue}"
    assert not re.search(r"event driver_fatigue ", talking_head.log)


def test_logs_are_one_line_per_meaningful_event_not_per_frame(talking_head):
    lines = [ln for ln in talking_head.log.splitlines() if not ln.startswith("import time:")]
    assert any("emotiond running" in ln for ln in lines) and any("source finished" in ln for ln in lines)
    assert len(lines) < 40, f"{len(lines)} log lines for a 225-frame clip:\n" + "\n".join(lines)


def test_the_daemon_process_never_imports_tensorflow(talking_head):
    """``-X importtime`` lists every module the daemon process imported, to its end."""
    modules = {m.group(1).split(".")[0] for m in re.finditer(r"^import time:.*\|\s*(\S+)\s*$", talking_head.log, re.M)}
    assert "ai_edge_litert" in modules or "tflite_runtime" in modules, "the import listing is incomplete"
    assert not modules & {"tensorflow", "keras", "tf_keras"}


def test_sigterm_publishes_offline_and_exits_0_within_5_s(broker, emotion_model, tmp_path):
    device = "e2e-sigterm"
    pfx = prefix(device)
    sub = Collector(broker, [f"{pfx}/#"])
    cfg = daemon_config(tmp_path, broker, device, emotion_model, logging={"json": True},
                        source={"uri": str(shared_file(TALKING_HEAD)), "loop": True})
    proc = DaemonProcess(cfg)
    try:
        sub.wait_topic(f"{pfx}/state", timeout=30)
        assert proc.terminate(timeout=5) == 0, proc.log()[-3000:]
    finally:
        proc.kill()
    assert sub.wait_for(lambda msgs: [m.payload for m in msgs if m.topic == f"{pfx}/status"][-1:] == [b"offline"])
    records = [json.loads(ln) for ln in proc.log().splitlines() if ln.startswith("{")]
    assert {"emotiond running", "stopping"} <= {r["msg"].split(":")[0] for r in records}, proc.log()
    assert "Traceback" not in proc.log()
    sub.close()


def test_sigkill_leaves_the_last_will_offline_retained(broker, emotion_model, tmp_path):
    device = "e2e-sigkill"
    pfx = prefix(device)
    cfg = daemon_config(tmp_path, broker, device, emotion_model,
                        source={"uri": str(shared_file(TALKING_HEAD)), "loop": True})
    proc = DaemonProcess(cfg)
    try:
        watcher = Collector(broker, [f"{pfx}/status"])
        watcher.wait_topic(f"{pfx}/status", b"online", timeout=30)
    finally:
        proc.kill()
    watcher.wait_topic(f"{pfx}/status", b"offline")  # the broker sends the will at once
    watcher.close()
    fresh = Collector(broker, [f"{pfx}/status"])
    last = fresh.wait_topic(f"{pfx}/status")
    assert last.retain and last.payload == b"offline"
    fresh.close()


def test_street_clip_yields_several_tracked_faces(broker, emotion_model, tmp_path):
    device = "e2e-street"
    pfx = prefix(device)
    sub = Collector(broker, [f"{pfx}/state"])
    cfg = daemon_config(tmp_path, broker, device, emotion_model,
                        source={"uri": str(shared_file(STREET)), "loop": True, "realtime": False},
                        detector={"type": "yunet", "model": str(shared_file(YUNET)), "downscale_width": 960})
    proc = DaemonProcess(cfg)
    try:
        crowded = lambda msgs: any(check_payload("state", m.payload)["faces"] >= 3 for m in msgs)  # noqa: E731
        assert sub.wait_for(crowded, timeout=60), \
            f"faces seen: {[check_payload('state', m.payload)['faces'] for m in sub.messages]}\n{proc.log()[-2000:]}"
        assert proc.terminate() == 0
    finally:
        proc.kill()
    states = [check_payload("state", m.payload) for m in sub.messages]
    best = max(states, key=lambda s: s["faces"])
    assert best["tracks"] >= 3 and best["primary"] is not None
    sub.close()


def test_check_reports_ok_per_part_with_a_running_broker(broker, emotion_model, tmp_path):
    cfg = daemon_config(tmp_path, broker, "e2e-check", emotion_model,
                        source={"uri": str(shared_file(TALKING_HEAD))}, eyes={"enabled": True})
    out = run_cli("check", "--config", str(cfg))
    assert out.returncode == 0, out.stdout + out.stderr
    for part in ("config", "model", "eyes", "source", "broker"):
        assert re.search(rf"^{part}\s+ok\b", out.stdout, re.M), out.stdout


def test_check_names_the_broker_when_it_is_down(emotion_model, tmp_path):
    down = Broker(tmp_path, free_port())  # a port nothing listens on
    cfg = daemon_config(tmp_path, down, "e2e-check-down", emotion_model,
                        source={"uri": str(shared_file(TALKING_HEAD))})
    out = run_cli("check", "--config", str(cfg), "--timeout", "2")
    assert out.returncode != 0
    assert re.search(r"^broker\s+failed\b.*" + str(down.port), out.stdout, re.M), out.stdout
    assert re.search(r"^model\s+ok\b", out.stdout, re.M), out.stdout


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"emotiond {daemon.__version__}"


def test_paths_in_the_config_are_relative_to_its_folder(broker, emotion_model, tmp_path):
    """A config beside its model uses relative paths (config.py resolves them)."""
    from conftest import copy_model

    model = copy_model(emotion_model, tmp_path)
    cfg = daemon_config(tmp_path, broker, "e2e-relative", Path(model.name),
                        source={"uri": str(shared_file(TALKING_HEAD))})
    out = run_cli("check", "--config", str(cfg))
    assert re.search(rf"^model\s+ok\s+{re.escape(str(model))}", out.stdout, re.M), out.stdout
