"""``emotiond-fleet-publish``: the operator's side of fleet updates, a TUF repository on disk.

The repository is a folder that any plain HTTP server serves (``metadata/`` and ``targets/``);
the devices verify everything they fetch from it with python-tuf's ngclient
(``daemon/update/client.py``). This module makes and signs it with python-tuf's metadata API:

* ``init``: four Ed25519 keys (``root``, ``targets``, ``snapshot``, ``timestamp``) in a keys
  folder, and version 1 of each role's metadata. ``root.pem`` belongs offline (it only signs a
  new root: a key rotation); the other three sign every publish.
* ``add``: a release, one integer version: a model (its ``.tflite``, its manifest ``.json``,
  its card when there is one), a golden face the device checks the model's outputs on, and/or a
  config fragment (YAML), each a TUF target under ``releases/<version>/``, described by
  ``releases/<version>/release.json`` (also a target, so signed like the files).
* ``rollout``: which release each device group runs, one signed target ``rollout.json``;
  ``stop`` puts a group back on the release it ran before (signed, marked as a downgrade so
  the devices accept the older version); ``watch`` reads the fleet view in PostgreSQL and
  stops a group's rollout by itself once its share of failed devices passes a threshold.
* ``timestamp``: a new timestamp (the online role that expires first: a device refuses a
  repository whose timestamp has expired, so a frozen mirror cannot keep it on an old release).
* ``rotate``: a new key for one role, in a new root signed by the old and the new root key.

Consistent snapshots are on: every metadata file but ``timestamp.json`` is written under its
version (``3.targets.json``) and every target under its hash, so a device that fetches while a
publish is half written still sees one whole, consistent repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

log = logging.getLogger("emotiond.fleet.publish")

ROLES = ("root", "targets", "snapshot", "timestamp")
ONLINE = ("targets", "snapshot", "timestamp")
EXPIRY_DAYS = {"root": 365, "targets": 90, "snapshot": 7, "timestamp": 1}
ROLLOUT = "rollout.json"
RELEASE = "release.json"
DEFAULT_GROUP = "default"  # the group of every device that names no other, and of the groups not listed


class PublishError(RuntimeError):
    """A publish that cannot be done (missing key, missing file, unknown release)."""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Repository:
    """A TUF repository in ``repo`` (served) signed with the keys in ``keys`` (not served)."""

    def __init__(self, repo: str | Path, keys: str | Path) -> None:
        self.repo = Path(repo)
        self.keys = Path(keys)
        self.metadata = self.repo / "metadata"
        self.targets_dir = self.repo / "targets"

    # -- keys -------------------------------------------------------------------------------
    def _key_path(self, role: str) -> Path:
        return self.keys / f"{role}.pem"

    def signer(self, role: str):
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from securesystemslib.signer import CryptoSigner, SSlibKey

        path = self._key_path(role)
        if not path.is_file():
            raise PublishError(f"no {role} key: {path} not found (run init, or bring the offline key)")
        private = load_pem_private_key(path.read_bytes(), password=None)
        return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))

    def _new_key(self, role: str, path: Path | None = None):
        from securesystemslib.signer import CryptoSigner

        signer = CryptoSigner.generate_ed25519()
        path = path or self._key_path(role)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(signer.private_bytes)
        return signer

    # -- metadata files ---------------------------------------------------------------------
    def load(self, role: str):
        from tuf.api.metadata import Metadata

        path = self.metadata / f"{role}.json"
        if not path.is_file():
            raise PublishError(f"no repository at {self.repo}: {path} not found (run init first)")
        return Metadata.from_file(str(path))

    def _write(self, md, role: str) -> None:
        """Sign and write one role: ``<version>.<role>.json`` (not for the timestamp) and the
        unversioned copy this tool reads back (and the devices fetch for the timestamp)."""
        from tuf.api.serialization.json import JSONSerializer

        md.signatures.clear()
        md.sign(self.signer(role), append=True)
        data = md.to_bytes(JSONSerializer(compact=False))
        if role != "timestamp":
            _atomic_write(self.metadata / f"{md.signed.version}.{role}.json", data)
        _atomic_write(self.metadata / f"{role}.json", data)

    def _bump(self, md, role: str, expires: timedelta | None = None) -> None:
        md.signed.version += 1
        md.signed.expires = _now() + (expires or timedelta(days=EXPIRY_DAYS[role]))

    def init(self, expires: dict[str, timedelta] | None = None) -> None:
        from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp

        if (self.metadata / "root.json").exists():
            raise PublishError(f"{self.metadata / 'root.json'} exists: this repository is initialised already")
        expires = {r: (expires or {}).get(r, timedelta(days=EXPIRY_DAYS[r])) for r in ROLES}
        signers = {role: self._new_key(role) for role in ROLES}
        root = Root(expires=_now() + expires["root"], consistent_snapshot=True)
        for role, s in signers.items():
            root.add_key(s.public_key, role)
        self._write(Metadata(root), "root")
        self._write(Metadata(Targets(expires=_now() + expires["targets"])), "targets")
        self._write(Metadata(Snapshot(expires=_now() + expires["snapshot"],
                                      meta={"targets.json": MetaFile(version=1)})), "snapshot")
        self._write(Metadata(Timestamp(expires=_now() + expires["timestamp"], snapshot_meta=MetaFile(version=1))),
                    "timestamp")
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        log.info("repository initialised in %s, keys in %s (move %s offline)", self.repo, self.keys,
                 self._key_path("root"))

    # -- targets ----------------------------------------------------------------------------
    def target_names(self) -> list[str]:
        return sorted(self.load("targets").signed.targets)

    def read_target(self, name: str) -> bytes:
        """A target's bytes from the repository's own folder (what ``add`` stored)."""
        info = self.load("targets").signed.targets.get(name)
        if info is None:
            raise PublishError(f"no target {name!r} in the repository")
        digest = info.hashes["sha256"]
        folder, _, base = name.rpartition("/")
        return (self.targets_dir / folder / f"{digest}.{base}").read_bytes()

    def publish(self, files: dict[str, bytes], *, timestamp_expires: timedelta | None = None,
                targets_expires: timedelta | None = None) -> int:
        """Add or replace targets, then sign new targets, snapshot and timestamp (in that order:
        a device reading meanwhile sees the old timestamp, hence the old whole). Returns the
        new targets version."""
        from tuf.api.metadata import MetaFile, TargetFile

        targets = self.load("targets")
        for name, data in files.items():
            info = TargetFile.from_data(name, data, ["sha256"])
            folder, _, base = name.rpartition("/")
            dest = self.targets_dir / folder / f"{info.hashes['sha256']}.{base}"
            if not dest.exists():
                _atomic_write(dest, data)
            targets.signed.targets[name] = info
        self._bump(targets, "targets", targets_expires)
        self._write(targets, "targets")
        snapshot = self.load("snapshot")
        snapshot.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
        self._bump(snapshot, "snapshot")
        self._write(snapshot, "snapshot")
        self.timestamp(timestamp_expires)
        return targets.signed.version

    def timestamp(self, expires: timedelta | None = None) -> int:
        """A new timestamp for the current snapshot (run it from cron well within its expiry)."""
        from tuf.api.metadata import MetaFile

        snapshot = self.load("snapshot")
        ts = self.load("timestamp")
        ts.signed.snapshot_meta = MetaFile(version=snapshot.signed.version)
        self._bump(ts, "timestamp", expires)
        self._write(ts, "timestamp")
        return ts.signed.version

    def rotate(self, role: str, new_root_key: Path | None = None) -> None:
        """A new key for ``role``: a new root version lists it, signed by the current root key
        (and, for the root itself, by the new one too, so devices can verify the chain)."""
        from tuf.api.serialization.json import JSONSerializer

        if role not in ROLES:
            raise PublishError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        root = self.load("root")
        old_root_signer = self.signer("root")
        for keyid in list(root.signed.roles[role].keyids):
            root.signed.revoke_key(keyid, role)
        aside = self._key_path(role).with_suffix(f".pem.old-{int(time.time())}")
        shutil.copy2(self._key_path(role), aside)
        new = self._new_key(role)
        root.signed.add_key(new.public_key, role)
        self._bump(root, "root")
        root.signatures.clear()
        root.sign(old_root_signer, append=True)
        if role == "root":
            root.sign(new, append=True)
        data = root.to_bytes(JSONSerializer(compact=False))
        _atomic_write(self.metadata / f"{root.signed.version}.root.json", data)
        _atomic_write(self.metadata / "root.json", data)
        if role != "root":  # everything the rotated role signed is signed again with its new key
            self.publish({})
        log.info("rotated the %s key (old one kept as %s); root is now version %d", role, aside, root.signed.version)

    # -- releases and rollouts --------------------------------------------------------------
    def releases(self) -> dict[int, dict]:
        out = {}
        for name in self.target_names():
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == "releases" and parts[2] == RELEASE:
                out[int(parts[1])] = json.loads(self.read_target(name))
        return out

    def add_release(self, version: int, model: Path | None = None, config: Path | None = None,
                    golden: Path | None = None, golden_label: str | None = None, note: str = "", **kw) -> dict:
        """Put one release's files in the repository (none of the devices runs it yet)."""
        if version < 1:
            raise PublishError("a release version is a positive integer")
        if version in self.releases():
            raise PublishError(f"release {version} exists already; releases are never replaced, add {version + 1}")
        if model is None and config is None:
            raise PublishError("a release needs a model (--model) or a config fragment (--config), or both")
        base = f"releases/{version}"
        files: dict[str, bytes] = {}
        release: dict = {"schema": 1, "version": version, "created": _now().isoformat(), "note": note, "files": {}}

        def take(kind: str, path: Path, name: str | None = None) -> None:
            if not path.is_file():
                raise PublishError(f"{kind}: file not found: {path}")
            data = path.read_bytes()
            name = name or path.name
            files[f"{base}/{name}"] = data
            release["files"][kind] = {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}

        if model is not None:
            take("model", model)
            take("manifest", model.with_suffix(".json"), model.with_suffix(".json").name)
            card = model.parent / f"{model.stem.upper()}_CARD.md"
            if card.is_file():
                take("card", card)
        if config is not None:
            import yaml

            try:
                fragment = yaml.safe_load(config.read_text()) if config.is_file() else None
            except yaml.YAMLError as exc:
                raise PublishError(f"config fragment {config}: not YAML ({exc})") from None
            if config.is_file() and not isinstance(fragment, dict):
                raise PublishError(f"config fragment {config}: must be a mapping of config sections")
            take("config", config, "config.yaml")
        if golden is not None:
            take("golden", golden, "golden" + golden.suffix)
            if golden_label:
                release["files"]["golden"]["label"] = golden_label
        files[f"{base}/{RELEASE}"] = json.dumps(release, indent=2, sort_keys=True).encode() + b"\n"
        self.publish(files, **kw)
        log.info("release %d added: %s", version, ", ".join(sorted(release["files"])))
        return release

    def rollout_doc(self) -> dict:
        if ROLLOUT in self.target_names():
            return json.loads(self.read_target(ROLLOUT))
        return {"schema": 1, "groups": {}, "history": []}

    def set_group(self, group: str, version: int, *, downgrade: bool = False, reason: str = "", **kw) -> dict:
        """Sign a rollout that puts ``group`` on release ``version``."""
        if version not in self.releases():
            raise PublishError(f"no release {version} (add it first; releases: {sorted(self.releases())})")
        doc = self.rollout_doc()
        before = doc["groups"].get(group)
        entry = {"version": version, "since": _now().isoformat()}
        if downgrade:
            entry["downgrade"] = True
        if reason:
            entry["reason"] = reason
        if before is not None:
            entry["previous"] = before["version"]
        doc["groups"][group] = entry
        doc["history"] = (doc.get("history", []) + [{"group": group, **entry}])[-100:]
        self.publish({ROLLOUT: json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"}, **kw)
        log.info("group %s -> release %d%s", group, version, f" ({reason})" if reason else "")
        return doc

    def stop(self, group: str, reason: str = "stopped by the operator", **kw) -> dict:
        """Put ``group`` back on the release it ran before its current one (a signed downgrade)."""
        entry = self.rollout_doc()["groups"].get(group)
        if entry is None or entry.get("previous") is None:
            raise PublishError(f"group {group!r} has no earlier release to go back to")
        return self.set_group(group, entry["previous"], downgrade=True, reason=reason, **kw)


# -- the fleet view: stop a rollout when too many devices of a group fail ------------------------
def progress(dsn: str, group: str, version: int) -> tuple[int, int, int]:
    """(devices of ``group`` that reported on release ``version``, of them those running it,
    those that failed it), from the ingest's ``rollout_progress`` view (fleet/schema.sql)."""
    import psycopg

    with psycopg.connect(dsn, connect_timeout=5) as db:
        row = db.execute("SELECT reported, running, failed FROM rollout_progress WHERE device_group = %s AND release = %s",
                         (group, version)).fetchone()
    return (0, 0, 0) if row is None else (int(row[0]), int(row[1]), int(row[2]))


def watch(repo: Repository, dsn: str, group: str, threshold: float, min_devices: int = 1, interval_s: float = 5.0,
          timeout_s: float | None = None) -> str:
    """Poll the fleet view; stop the group's rollout once ``failed / reported > threshold``
    (hawkBit's error threshold). Returns ``"stopped"``, ``"done"`` (``min_devices`` or more
    reported and every one of them runs the release) or ``"timeout"``."""
    entry = repo.rollout_doc()["groups"].get(group)
    if entry is None:
        raise PublishError(f"group {group!r} has no rollout to watch")
    version = entry["version"]
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while deadline is None or time.monotonic() < deadline:
        reported, running, failed = progress(dsn, group, version)
        if reported >= min_devices and failed / reported > threshold:
            reason = f"{failed} of {reported} devices failed release {version} (threshold {threshold:.0%})"
            log.warning("group %s: %s: stopping the rollout", group, reason)
            repo.stop(group, reason=reason)
            return "stopped"
        if reported >= min_devices and running == reported:
            log.info("group %s: all %d reporting devices run release %d", group, reported, version)
            return "done"
        time.sleep(interval_s)
    return "timeout"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="emotiond-fleet-publish", description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True, type=Path, help="the repository folder (served over HTTP)")
    ap.add_argument("--keys", required=True, type=Path, help="the keys folder (never served; root.pem offline)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init", help="new keys and an empty repository")
    p.add_argument("--timestamp-hours", type=float, default=24.0)
    p = sub.add_parser("add", help="add a release (a model and/or a config fragment)")
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--model", type=Path, help="a .tflite with its manifest .json beside it")
    p.add_argument("--config", type=Path, help="a config fragment (YAML), merged over the device's config")
    p.add_argument("--golden", type=Path, help="a face crop the device classifies before it switches")
    p.add_argument("--golden-label", help="the label the model must give the golden face")
    p.add_argument("--note", default="")
    p = sub.add_parser("rollout", help="put a group on a release (canary first, then widen)")
    p.add_argument("--group", default=DEFAULT_GROUP)
    p.add_argument("--version", type=int, required=True)
    p = sub.add_parser("stop", help="put a group back on its previous release")
    p.add_argument("--group", default=DEFAULT_GROUP)
    p.add_argument("--reason", default="stopped by the operator")
    p = sub.add_parser("watch", help="stop a group's rollout when its failed share passes a threshold")
    p.add_argument("--dsn", required=True)
    p.add_argument("--group", default=DEFAULT_GROUP)
    p.add_argument("--threshold", type=float, default=0.2, help="failed share that stops the rollout (0..1)")
    p.add_argument("--min-devices", type=int, default=1)
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--timeout", type=float)
    p = sub.add_parser("timestamp", help="sign a fresh timestamp (run it from cron)")
    p.add_argument("--hours", type=float, default=24.0)
    p = sub.add_parser("rotate", help="a new key for one role")
    p.add_argument("--role", required=True, choices=ROLES)
    sub.add_parser("status", help="releases and rollout as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    repo = Repository(args.repo, args.keys)
    try:
        if args.cmd == "init":
            repo.init({"timestamp": timedelta(hours=args.timestamp_hours)})
        elif args.cmd == "add":
            repo.add_release(args.version, args.model, args.config, args.golden, args.golden_label, args.note)
        elif args.cmd == "rollout":
            repo.set_group(args.group, args.version)
        elif args.cmd == "stop":
            repo.stop(args.group, args.reason)
        elif args.cmd == "watch":
            print(watch(repo, args.dsn, args.group, args.threshold, args.min_devices, args.interval, args.timeout))
        elif args.cmd == "timestamp":
            repo.timestamp(timedelta(hours=args.hours))
        elif args.cmd == "rotate":
            repo.rotate(args.role)
        elif args.cmd == "status":
            print(json.dumps({"releases": repo.releases(), "rollout": repo.rollout_doc()}, indent=2))
    except PublishError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
