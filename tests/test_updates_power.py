"""Power cuts during a fleet update: the daemon is SIGKILLed while it downloads a release, just
after it installed it, as it switches to it, and in its health window. Each time the next start
runs a good version (the config file's model: nothing was committed yet), the interrupted
release is then tried again and committed, and every event any run logged reaches a
persistent-session QoS 1 subscriber (the outbox is untouched by updates)."""

from __future__ import annotations

import json
import signal

import pytest

from broker import Collector, needs_mosquitto
from conftest import REPO
from daemon_helpers import DaemonProcess, check_payload, prefix
from test_updates_daemon import BASE_MODEL, NEW_MODEL, updated_daemon, wait_status
from update_repo import RepoServer, golden_face, publish

pytestmark = [needs_mosquitto, pytest.mark.slow]
FAULTS = REPO / "tests" / "update_faults"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repo")
    r, k = tmp / "repo", tmp / "keys"
    publish(r, k, "init")
    publish(r, k, "add", "--version", "1", "--model", str(NEW_MODEL), "--golden", str(golden_face(tmp)))
    publish(r, k, "rollout", "--version", "1")
    server = RepoServer(r)
    yield r, server
    server.stop()


@pytest.mark.parametrize("step", ["download", "install", "switch", "window"])
def test_a_power_cut_at_each_step_leaves_a_good_version_and_every_event(tmp_path, broker, served, monkeypatch, step):
    r, server = served
    device = f"cut-{step}"
    sub = Collector(broker, [f"{prefix(device)}/update", f"{prefix(device)}/events"],
                    client_id=f"{device}-sub", persistent=True)
    if step != "window":
        monkeypatch.setenv("PYTHONPATH", str(FAULTS))
        monkeypatch.setenv("EMOTIOND_TEST_KILL_AT", step)
    rules = [{"type": "emotion_summary", "period_s": 0.5}]
    first = updated_daemon(tmp_path, broker, device, server, r, "default", sections={"rules": rules})
    logged: set[str] = set()
    try:
        if step == "window":
            wait_status(sub, device, state="trying", target=1)
            first.proc.send_signal(signal.SIGKILL)
        rc = first.wait(60)
        assert rc == -signal.SIGKILL, first.log()[-2000:]
        logged |= {i for _t, _p, i in first.events()}
        state_file = tmp_path / "state" / "updates" / "state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        assert state.get("current") is None  # nothing committed before the cut
        if step in ("switch", "window"):
            assert state["trying"] == 1

        monkeypatch.delenv("EMOTIOND_TEST_KILL_AT", raising=False)
        monkeypatch.delenv("PYTHONPATH", raising=False)
        second = DaemonProcess(first.config)
        second.wait_log(r"emotiond running", timeout=60)
        assert f"model {BASE_MODEL.name}" in second.log()  # the good version: the config file's
        if step in ("switch", "window"):
            second.wait_log(r"health window interrupted; running release None, 1 is tried again", timeout=5)
        done = wait_status(sub, device, state="committed", version=1, timeout=60)
        assert done["committed"] == 1
        second.wait_log(r"event emotion_summary", timeout=30)
        assert second.terminate(15) == 0
        logged |= {i for _t, _p, i in second.events()}
        state = json.loads(state_file.read_text())
        assert state["current"] == 1 and state["trying"] is None and state["failed"] == {}
        assert not list((tmp_path / "state" / "updates" / "download").glob("*/*.tflite"))
        assert logged
        got = lambda: {check_payload("events", m.payload)["id"] for m in sub.on(f"{prefix(device)}/events")}  # noqa: E731
        assert sub.wait_for(lambda _m: got() >= logged, 30), f"{len(logged - got())} logged events not delivered"
    finally:
        for p in (first, locals().get("second")):
            if p is not None and p.running:
                p.kill()
        sub.close()
