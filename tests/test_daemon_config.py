"""Config problems seen from outside: ``python -m daemon run`` exits 78 naming the key path;
a delegate that cannot load falls back to the CPU (or stops, with fallback false); a source that
cannot be read leaves the daemon up, retrying and saying so on ``camera/status``."""

from __future__ import annotations

import re
import shutil

import pytest

from broker import Collector
from conftest import REPO, TALKING_HEAD, shared_file
from daemon import __version__
from daemon.config import ConfigError, parse_config
from daemon.model.lineup import REMOVED, SHIPPED
from daemon_helpers import EX_CONFIG, DaemonProcess, check_payload, daemon_config, prefix, run_cli


def key_path(*parts: str | int) -> str:
    """A regex for a key path exactly as a user writes it: ``rules[0].threshold``."""
    out = ""
    for part in parts:
        out += rf"\[{part}\]" if isinstance(part, int) else (r"\." if out else "") + part
    return r"(?<![\w.\]])" + out


def run_invalid(tmp_path, emotion_model, **sections) -> str:
    """Run the daemon on an invalid config: it must exit 78 at once; returns its stderr."""
    cfg = daemon_config(tmp_path, None, "cfg-test", emotion_model, **sections)
    out = run_cli("run", "--config", str(cfg))
    assert out.returncode == EX_CONFIG, f"rc {out.returncode}\n{out.stdout}{out.stderr}"
    return out.stderr


RULE = {"type": "sustained_emotion", "emotion": "angry"}
INVALID = {
    "unknown key": ({"source": {"urii": "0"}}, ("source", "urii"), "unknown key"),
    "wrong type": ({"classifier": {"threads": "many"}}, ("classifier", "threads"), "integer"),
    "missing model": ({"classifier": {"model": "/nonexistent/mine.tflite"}}, ("classifier", "model"), "not found"),
    "unknown rule type": ({"rules": [{"type": "nap_detector"}]}, ("rules", 0), "nap_detector"),
    "negative duration": ({"rules": [{**RULE, "duration_s": -1}]}, ("rules", 0, "duration_s"), "greater than or equal"),
    "threshold above 1": ({"rules": [{**RULE, "threshold": 1.5}]}, ("rules", 0, "threshold"), "less than or equal"),
    "unknown emotion label": ({"rules": [RULE, {**RULE, "name": "bored", "emotion": "bored"}]}, ("rules", 1, "emotion"),
                              "not a label"),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_invalid_config_exits_78_naming_the_key(case, tmp_path, emotion_model):
    sections, path, words = INVALID[case]
    err = run_invalid(tmp_path, emotion_model, **sections)
    assert re.search(key_path(*path) + r": .*" + re.escape(words), err), err


def test_every_problem_is_listed(tmp_path, emotion_model):
    err = run_invalid(tmp_path, emotion_model, source={"urii": "0", "loop": "sometimes"},
                      classifier={"model": "/nonexistent/mine.tflite"}, publish={"stats_interval_s": -1})
    for path in (("source", "urii"), ("source", "loop"), ("publish", "stats_interval_s")):
        assert re.search(key_path(*path) + ": ", err), err


def test_device_id_with_mqtt_wildcards_is_a_config_error(tmp_path, emotion_model):
    cfg = daemon_config(tmp_path, None, "car+1", emotion_model)
    out = run_cli("run", "--config", str(cfg))
    assert out.returncode == EX_CONFIG and re.search(r"device_id: ", out.stderr), out.stderr[-2000:]


def test_delegate_that_cannot_load_stops_the_daemon_without_fallback(tmp_path, emotion_model):
    err = run_invalid(tmp_path, emotion_model, classifier={"delegate": "/nonexistent/libfoo.so", "fallback": False})
    assert "/nonexistent/libfoo.so" in err and "fallback" in err, err
    assert "Traceback" not in err


def test_delegate_that_cannot_load_falls_back_to_the_cpu(broker, tmp_path, emotion_model):
    device = "cfg-delegate"
    pfx = prefix(device)
    sub = Collector(broker, [f"{pfx}/stats"])
    cfg = daemon_config(tmp_path, broker, device, emotion_model,
                        source={"uri": str(shared_file(TALKING_HEAD)), "loop": True},
                        classifier={"delegate": "/nonexistent/libfoo.so", "fallback": True})
    proc = DaemonProcess(cfg)
    try:
        stats = check_payload("stats", sub.wait_topic(f"{pfx}/stats", timeout=30).payload)
        assert stats["delegate"] == "cpu"
        assert re.search(r"WARNING.*/nonexistent/libfoo\.so.*(CPU|cpu)", proc.log()), proc.log()
        assert proc.terminate() == 0
    finally:
        proc.kill()
    sub.close()


@pytest.mark.parametrize("uri", ["/dev/video99", "missing.mp4"])
def test_unreadable_source_keeps_the_daemon_up_and_says_camera_offline(uri, broker, tmp_path, emotion_model):
    """The daemon stays up publishing stats; a file that appears later is picked up (retries)."""
    device = "cfg-nosource-" + re.sub(r"\W", "", uri)
    pfx = prefix(device)
    path = tmp_path / uri if not uri.startswith("/dev/") else None
    sub = Collector(broker, [f"{pfx}/#"])
    cfg = daemon_config(tmp_path, broker, device, emotion_model,
                        source={"uri": str(path or uri), "loop": True, "reconnect_initial_s": 0.2, "reconnect_max_s": 0.5})
    proc = DaemonProcess(cfg)
    try:
        sub.wait_topic(f"{pfx}/status", b"online", timeout=30)
        stats_now = lambda msgs: [m for m in msgs if m.topic == f"{pfx}/stats"]  # noqa: E731
        assert sub.wait_for(lambda msgs: len(stats_now(msgs)) >= 3, timeout=30), "stats stopped"
        assert all(check_payload("stats", m.payload)["camera_online"] is False for m in stats_now(sub.messages))
        assert proc.running
        fresh = Collector(broker, [f"{pfx}/camera/status"])
        camera = fresh.wait_topic(f"{pfx}/camera/status")
        assert camera.retain and camera.payload == b"offline"
        fresh.close()
        if path is not None:
            path.symlink_to(shared_file(TALKING_HEAD))
            sub.wait_topic(f"{pfx}/camera/status", b"online", timeout=30)
            sub.wait_topic(f"{pfx}/state", timeout=30)
        assert proc.terminate() == 0, proc.log()[-3000:]
    finally:
        proc.kill()
    assert "Traceback" not in proc.log()
    sub.close()


@pytest.mark.parametrize("removed", sorted(REMOVED))
def test_a_config_naming_a_removed_model_is_refused_with_its_replacement(removed, tmp_path):
    # the bare name, the models/ path as config.yaml writes it, and a path elsewhere: all missing
    for named in (removed, f"models/{removed}", f"/nonexistent/{removed}"):
        with pytest.raises(ConfigError) as err:
            parse_config({"classifier": {"model": named}}, "<test>", tmp_path)
        (line,) = [p for p in err.value.problems if p.startswith("classifier.model: ")]
        assert f"models/{removed} was removed in emotiond {__version__}: use {REMOVED[removed]}" in line
        instead = re.findall(r"emotion\w*\.tflite", line.split(": use ")[1].split(" (not found")[0])
        assert instead and set(instead) <= set(SHIPPED), line


def test_the_removed_table_points_only_at_shipped_models_int8_at_int8_and_float_at_float():
    for removed, instead in REMOVED.items():
        named = re.findall(r"emotion\w*\.tflite", instead)
        assert named and set(named) <= set(SHIPPED) and removed not in SHIPPED, (removed, instead)
        assert any(n.endswith("_fp16.tflite") == removed.endswith("_fp16.tflite") for n in named), (removed, instead)
    assert not any((REPO / "models" / n).exists() for n in REMOVED)
    assert all((REPO / "models" / n).is_file() for n in SHIPPED)


def test_a_users_own_file_of_a_removed_name_still_runs(tmp_path, emotion_model):
    """The refusal is for a file that is not there: a model the user keeps under an old name wins."""
    own = tmp_path / "emotion_fast.tflite"
    shutil.copy(emotion_model, own)
    shutil.copy(emotion_model.with_suffix(".json"), own.with_suffix(".json"))
    assert parse_config({"classifier": {"model": "emotion_fast.tflite"}}, "<test>", tmp_path).classifier.model == own


def test_emotiond_check_and_run_stop_on_a_removed_model_with_exit_78(tmp_path, emotion_model):
    cfg = daemon_config(tmp_path, None, "cfg-test", emotion_model, classifier={"model": "models/emotion.tflite"})
    for command in ("check", "run"):
        out = run_cli(command, "--config", str(cfg))
        assert out.returncode == EX_CONFIG, f"{command}: rc {out.returncode}\n{out.stdout}{out.stderr}"
        said = out.stdout + out.stderr
        assert (f"classifier.model: models/emotion.tflite was removed in emotiond {__version__}: "
                "use emotion_wild.tflite (the default) or emotion_ferplus.tflite") in said
