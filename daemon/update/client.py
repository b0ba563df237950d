"""Fetch and verify: python-tuf's ngclient against the operator's repository.

Everything the device takes from the repository passes TUF's checks: the metadata's signatures
by the keys the trusted root names, its versions never going back (rollback), its expiry (a
frozen mirror), each file's length and hash. The trusted metadata stays in the state directory
between checks, so those checks hold across restarts. Whatever fails becomes an ``UpdateRefused``
with a short reason (``tampered``, ``rollback``, ``expired``, ``bad_signature``, ...) that the
runtime logs, counts and publishes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

ROLLOUT = "rollout.json"
RELEASE = "release.json"
DEFAULT_GROUP = "default"


class UpdateRefused(Exception):
    """A check or download refused: ``reason`` is a short code, the message says what."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class MissingDependency(RuntimeError):
    """updates.enabled with python-tuf not installed."""


def _tuf():
    try:
        from tuf import ngclient
        from tuf.api import exceptions
    except ImportError as exc:
        raise MissingDependency(
            f"updates.enabled needs python-tuf ({exc}): install the updates extra "
            "(pip install 'emotiond[updates]') or set updates.enabled: false") from None
    return ngclient, exceptions


def refused_from(exc: Exception) -> UpdateRefused:
    """TUF's and the network's exceptions as a reason code and a message."""
    _, ex = _tuf()
    kinds = [
        (ex.LengthOrHashMismatchError, "tampered"),
        (ex.ExpiredMetadataError, "expired"),
        (ex.BadVersionNumberError, "rollback"),
        (ex.UnsignedMetadataError, "bad_signature"),
        (ex.DownloadError, "unreachable"),
        (ex.RepositoryError, "invalid_metadata"),
    ]
    for kind, reason in kinds:
        if isinstance(exc, kind):
            return UpdateRefused(reason, f"{type(exc).__name__}: {exc}")
    return UpdateRefused("unreachable", f"{type(exc).__name__}: {exc}")


@dataclass
class Wanted:
    """What the signed rollout says this device's group should run."""

    version: int
    downgrade: bool = False
    reason: str = ""


class Client:
    """One device's view of the repository; ``folder`` holds its trusted metadata."""

    def __init__(self, url: str, root: Path, folder: Path, timeout_s: float = 30.0) -> None:
        ngclient, _ = _tuf()
        self.url = url.rstrip("/")
        self.root = Path(root)
        self.folder = Path(folder)
        self.metadata_dir = self.folder / "tuf"
        self.bytes_fetched = 0
        client = self

        class CountingFetcher(ngclient.Urllib3Fetcher):
            def _fetch(self, url: str):
                for chunk in super()._fetch(url):
                    client.bytes_fetched += len(chunk)
                    yield chunk

        self._fetcher = CountingFetcher(socket_timeout=max(1, int(timeout_s)))
        self._updater = None

    def _trust(self) -> None:
        """The first trusted root: the shipped root.json, copied into the state directory once
        (after that ngclient keeps the newest verified root there)."""
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        trusted = self.metadata_dir / "root.json"
        if not trusted.is_file():
            if not self.root.is_file():
                raise UpdateRefused("no_root", f"updates.root: file not found: {self.root}")
            tmp = trusted.with_name(".root.json.tmp")
            shutil.copyfile(self.root, tmp)
            tmp.replace(trusted)

    def refresh(self, target_dir: Path) -> None:
        """Fetch and verify the top-level metadata (root, timestamp, snapshot, targets)."""
        ngclient, ex = _tuf()
        self._trust()
        target_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._updater = ngclient.Updater(str(self.metadata_dir), f"{self.url}/metadata/", str(target_dir),
                                             f"{self.url}/targets/", fetcher=self._fetcher, bootstrap=None)
            self._updater.refresh()
        except UpdateRefused:
            raise
        except Exception as exc:  # noqa: BLE001 - TUF's errors and the network's, all refused
            raise refused_from(exc) from None

    def fetch(self, name: str, dest: Path) -> Path:
        """One target, verified, at ``dest``. ``refresh`` first."""
        try:
            info = self._updater.get_targetinfo(name)
            if info is None:
                raise UpdateRefused("missing_target", f"the repository has no target {name!r}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            cached = self._updater.find_cached_target(info, str(dest))  # verified against its hash
            if cached is not None:
                return Path(cached)
            return Path(self._updater.download_target(info, str(dest)))
        except UpdateRefused:
            raise
        except Exception as exc:  # noqa: BLE001
            raise refused_from(exc) from None

    def wanted(self, group: str, scratch: Path) -> Wanted | None:
        """The release this device's group should run, or None when the rollout names none."""
        self.refresh(scratch)
        if self._updater.get_targetinfo(ROLLOUT) is None:
            return None
        path = self.fetch(ROLLOUT, scratch / ROLLOUT)
        try:
            doc = json.loads(path.read_text())
            groups = doc["groups"]
            entry = groups.get(group) or groups.get(DEFAULT_GROUP)
            if entry is None:
                return None
            return Wanted(int(entry["version"]), bool(entry.get("downgrade")), str(entry.get("reason", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise UpdateRefused("invalid_rollout", f"{ROLLOUT}: not a rollout ({type(exc).__name__}: {exc})") from None

    def download_release(self, version: int, dest: Path) -> dict:
        """The release's description and every file it names, verified, into ``dest``."""
        base = f"releases/{version}"
        path = self.fetch(f"{base}/{RELEASE}", dest / RELEASE)
        try:
            release = json.loads(path.read_text())
            files = release["files"]
            if int(release["version"]) != version:
                raise ValueError(f"release.json says version {release['version']}, the rollout {version}")
        except (ValueError, KeyError, TypeError) as exc:
            raise UpdateRefused("invalid_release", f"{base}/{RELEASE}: {exc}") from None
        for kind, spec in files.items():
            name = str(spec["name"])
            if "/" in name or name.startswith("."):
                raise UpdateRefused("invalid_release", f"{base}/{RELEASE}: {kind} file name {name!r}")
            self.fetch(f"{base}/{name}", dest / name)
        return release
