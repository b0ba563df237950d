"""Signed updates, the device's refusals: a real TUF repository made by ``python -m fleet.publish``
and served over real HTTP; the device's client (python-tuf's ngclient) takes a release from it
and refuses a tampered file, a replayed older timestamp (rollback), an expired timestamp
(freeze) and metadata signed by the wrong key, each with its reason code."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from conftest import REPO
from update_repo import RepoServer, publish

from daemon.update.client import Client, UpdateRefused  # noqa: E402

MODEL = REPO / "models" / "emotion_ferplus.tflite"  # a shipped model that is not the default


@pytest.fixture
def repo(tmp_path):
    """A repository with release 1 (the emotion_ferplus model) for every group, served over HTTP."""
    r, k = tmp_path / "repo", tmp_path / "keys"
    publish(r, k, "init")
    publish(r, k, "add", "--version", "1", "--model", str(MODEL))
    publish(r, k, "rollout", "--group", "default", "--version", "1")
    server = RepoServer(r)
    yield r, k, server
    server.stop()


def client(tmp_path, server, repo_dir, name="dev") -> Client:
    return Client(server.url, repo_dir / "metadata" / "1.root.json", tmp_path / name)


def test_a_release_arrives_verified_with_its_files(tmp_path, repo):
    r, k, server = repo
    c = client(tmp_path, server, r)
    wanted = c.wanted("canary", tmp_path / "scratch")  # canary is not named: the default group's
    assert wanted.version == 1 and not wanted.downgrade
    release = c.download_release(1, tmp_path / "rel")
    assert set(release["files"]) >= {"model", "manifest"}
    got = (tmp_path / "rel" / "emotion_ferplus.tflite").read_bytes()
    assert got == MODEL.read_bytes()
    assert release["files"]["model"]["sha256"] == hashlib.sha256(got).hexdigest()
    assert c.bytes_fetched > len(got)
    # the trusted metadata stays in the device's state directory
    assert (tmp_path / "dev" / "tuf" / "timestamp.json").is_file()

    publish(r, k, "add", "--version", "2", "--model", str(REPO / "models" / "emotion_wild.tflite"))
    publish(r, k, "rollout", "--group", "canary", "--version", "2")
    assert c.wanted("canary", tmp_path / "scratch").version == 2
    assert c.wanted("other", tmp_path / "scratch").version == 1


def test_a_tampered_model_is_refused(tmp_path, repo):
    r, _k, server = repo
    for f in (r / "targets" / "releases" / "1").glob("*.emotion_ferplus.tflite"):
        data = bytearray(f.read_bytes())
        data[1000] ^= 0xFF
        f.write_bytes(bytes(data))
    c = client(tmp_path, server, r)
    assert c.wanted("default", tmp_path / "s").version == 1
    with pytest.raises(UpdateRefused) as e:
        c.download_release(1, tmp_path / "rel")
    assert e.value.reason == "tampered"
    assert not (tmp_path / "rel" / "emotion_ferplus.tflite").exists()


def test_a_replayed_older_timestamp_is_refused(tmp_path, repo):
    r, k, server = repo
    old = (r / "metadata" / "timestamp.json").read_bytes()
    publish(r, k, "add", "--version", "2", "--model", str(REPO / "models" / "emotion_wild.tflite"))
    c = client(tmp_path, server, r)
    c.refresh(tmp_path / "s")  # the device has seen the newer repository
    (r / "metadata" / "timestamp.json").write_bytes(old)  # a mirror replays the old one
    with pytest.raises(UpdateRefused) as e:
        c.refresh(tmp_path / "s")
    assert e.value.reason == "rollback"
    assert "BadVersionNumberError" in str(e.value)


def test_an_expired_timestamp_is_refused(tmp_path, repo):
    r, k, server = repo
    publish(r, k, "timestamp", "--hours", "-1")  # signed, but already expired: a frozen repository
    with pytest.raises(UpdateRefused) as e:
        client(tmp_path, server, r).wanted("default", tmp_path / "s")
    assert e.value.reason == "expired"


def test_metadata_signed_by_the_wrong_key_is_refused(tmp_path, repo):
    r, _k, server = repo
    trusted_root = tmp_path / "trusted-root.json"
    shutil.copy(r / "metadata" / "1.root.json", trusted_root)
    # an attacker's repository with the same files and versions, signed by keys of its own
    evil, evil_keys = tmp_path / "evil", tmp_path / "evil-keys"
    publish(evil, evil_keys, "init")
    publish(evil, evil_keys, "add", "--version", "1", "--model", str(MODEL))
    publish(evil, evil_keys, "rollout", "--group", "default", "--version", "1")
    shutil.rmtree(r / "metadata")
    shutil.copytree(evil / "metadata", r / "metadata")
    c = Client(server.url, trusted_root, tmp_path / "dev")
    with pytest.raises(UpdateRefused) as e:
        c.wanted("default", tmp_path / "s")
    assert e.value.reason == "bad_signature"


def test_a_rotated_timestamp_key_is_followed_through_the_new_root(tmp_path, repo):
    r, k, server = repo
    c = client(tmp_path, server, r)
    c.refresh(tmp_path / "s")
    old_key = (k / "timestamp.pem").read_bytes()
    publish(r, k, "rotate", "--role", "timestamp")
    assert (k / "timestamp.pem").read_bytes() != old_key
    assert json.loads((r / "metadata" / "2.root.json").read_text())["signed"]["version"] == 2
    assert c.wanted("default", tmp_path / "s").version == 1  # verified with the new key
    assert json.loads((tmp_path / "dev" / "tuf" / "root.json").read_text())["signed"]["version"] == 2


def test_the_unreachable_repository_is_a_reason_too(tmp_path, repo):
    r, _k, server = repo
    c = client(tmp_path, server, r)
    server.stop()
    with pytest.raises(UpdateRefused) as e:
        c.wanted("default", tmp_path / "s")
    assert e.value.reason == "unreachable"


def test_emotiond_check_verifies_the_update_repository(tmp_path, repo):
    from daemon_helpers import daemon_config, run_cli

    r, _k, server = repo
    (tmp_path / "frames").mkdir()
    ok = daemon_config(tmp_path / "ok", None, "chk", MODEL, source={"uri": str(tmp_path / "frames")},
                       updates={"enabled": True, "url": server.url, "root": str(r / "metadata" / "1.root.json"),
                                "group": "canary"})
    out = run_cli("check", "--config", str(ok), "--timeout", "1")
    line = next(x for x in out.stdout.splitlines() if x.startswith("updates"))
    assert line.split()[1] == "ok" and f"{server.url} verified; group canary: release 1" in line
    publish(r, _k, "timestamp", "--hours", "-1")
    out = run_cli("check", "--config", str(ok), "--timeout", "1")
    line = next(x for x in out.stdout.splitlines() if x.startswith("updates"))
    assert line.split()[1] == "failed" and "refused (expired)" in line and out.returncode == 1
