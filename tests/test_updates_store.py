"""The device's update store and config without a network: which release runs after a cut
health window, how often an interrupted release is retried, what a release sets over the config,
and that a daemon without python-tuf starts with updates off and exits 78, saying why, with
them on."""

from __future__ import annotations

import json
import pytest

from conftest import REPO
from daemon.config import ConfigError, parse_config
from daemon.exitcodes import EX_CONFIG
from daemon.update.store import Store
from daemon_helpers import DaemonProcess, daemon_config


def release(folder, version, model=True, config=None):
    d = folder / f"dl{version}"
    d.mkdir(parents=True)
    files = {}
    if model:
        (d / "m.tflite").write_bytes(b"x")
        files["model"] = {"name": "m.tflite"}
    if config is not None:
        (d / "config.yaml").write_text(config)
        files["config"] = {"name": "config.yaml"}
    (d / "release.json").write_text(json.dumps({"version": version, "files": files}))
    return d


def test_commit_rollback_and_interrupted_windows(tmp_path):
    s = Store(tmp_path / "u")
    assert s.current is None and s.overlay(None) == {}
    s.install(1, release(tmp_path, 1, config="publish:\n  stats_interval_s: 2\n"))
    s.begin(1)
    s.commit(1)
    assert Store(tmp_path / "u").current == 1  # on disk
    overlay = s.overlay(1)
    assert overlay["publish"] == {"stats_interval_s": 2}
    assert overlay["classifier"] == {"model": str(tmp_path / "u" / "releases" / "1" / "m.tflite"), "precision": "file"}

    s.install(2, release(tmp_path, 2))
    s.begin(2)  # ... and the power goes
    again = Store(tmp_path / "u")
    assert "tried again" in again.at_start(max_attempts=2)
    assert again.current == 1 and again.trying is None and again.failed(2) is None
    again.begin(2)  # the second try is cut too
    third = Store(tmp_path / "u")
    assert "failed" in third.at_start(max_attempts=2)
    assert third.current == 1 and "interrupted 2 times" in third.failed(2)
    assert not (tmp_path / "u" / "releases" / "2").exists()

    third.install(3, release(tmp_path, 3))
    third.begin(3)
    third.fail(3, "too slow")
    assert third.current == 1 and third.failed(3) == "too slow"
    third.install(4, release(tmp_path, 4))
    third.begin(4)
    third.commit(4)
    assert third.state["previous"] == 1
    assert sorted(p.name for p in (tmp_path / "u" / "releases").iterdir()) == ["1", "4"]


def test_the_updates_section_is_off_by_default_and_complete_when_on(tmp_path):
    assert parse_config({}).updates.enabled is False
    with pytest.raises(ConfigError) as e:
        parse_config({"updates": {"enabled": True}})
    assert "updates.url" in e.value.problems[0]
    with pytest.raises(ConfigError) as e:
        parse_config({"updates": {"enabled": True, "url": "http://x", "root": str(tmp_path / "root.json")}})
    assert e.value.problems == [f"updates.root: file not found: {tmp_path / 'root.json'}"]
    with pytest.raises(ConfigError) as e:
        parse_config({"updates": {"url": "ftp://x"}})
    assert "http://" in e.value.problems[0]


@pytest.mark.parametrize("enabled", [False, True])
def test_without_python_tuf_the_daemon_runs_with_updates_off_and_exits_78_with_them_on(tmp_path, enabled,
                                                                                       monkeypatch):
    root = tmp_path / "root.json"
    root.write_text("{}")
    (tmp_path / "frames").mkdir()
    cfg = daemon_config(tmp_path, None, "no-tuf", REPO / "models" / "emotion_wild.tflite",
                        source={"uri": str(tmp_path / "frames")},
                        updates={"enabled": enabled, "url": "http://127.0.0.1:1", "root": str(root)})
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests" / "no_tuf"))
    proc = DaemonProcess(cfg)
    if enabled:
        assert proc.wait(60) == EX_CONFIG, proc.log()[-2000:]
        assert "updates.enabled needs python-tuf" in proc.log() and "updates extra" in proc.log()
    else:
        proc.wait_log(r"emotiond running", timeout=60)
        assert proc.terminate(15) == 0


def test_the_health_window_judges_frames_faces_speed_and_errors():
    from daemon.update.health import Before, HealthWindow

    def window(before=Before(100.0, True), **kw):
        args = {"window_s": 10, "min_frames": 10, "min_fps_share": 0.5, "require_faces": True} | kw
        return HealthWindow(before, args["window_s"], args["min_frames"], args["min_fps_share"],
                            args["require_faces"], t0=0.0, frames0=1000, classified0=500)

    w = window()
    w.observe(1600, 900)
    assert w.verdict(5.0) is None  # still running
    assert w.verdict(10.0) == (True, "600 frames, 400 faces classified, 60.0 frames/s (before 100.0)")
    w = window()
    w.observe(1400, 700)
    ok, why = w.verdict(10.0)
    assert not ok and why.startswith("too slow: 400 frames") and "below 50% of before" in why
    w = window()
    w.observe(1600, 500)
    assert w.verdict(10.0)[1].startswith("no face classified")
    w = window(before=Before(100.0, False))  # no face before: none needed after
    w.observe(1600, 500)
    assert w.verdict(10.0)[0]
    w = window()
    w.observe(1005, 501)
    assert w.verdict(10.0)[1].startswith("frames not flowing")
    w = window(before=Before(0.0, False))  # a camera offline before and after: not the release's fault
    w.observe(1000, 500)
    assert w.verdict(10.0)[0]
    w = window()
    w.observe(1001, 500, "RuntimeError: boom")
    assert w.verdict(0.5) == (False, "stage error: RuntimeError: boom")  # at once, not at the window's end
