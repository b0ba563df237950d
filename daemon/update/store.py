"""The installed releases and which one is good: ``<state>/updates``, safe against a power cut.

Layout::

    tuf/                 trusted metadata (client.py)
    download/<v>/        a download in progress (deleted at start: a half download is nothing)
    releases/<v>/        installed releases, each complete (a folder renamed into place at once)
    state.json           {"current", "previous", "trying", "attempts", "failed"}

``state.json`` is replaced atomically (write, fsync, rename, fsync the folder), and it is the only
thing that says which release runs: a power cut before the rename leaves the old state, after it
the new one. The daemon always starts on ``current`` (the last committed release, or none: the
config file as it is); a release still ``trying`` at start had its health window cut short and
is tried again at the next check, until ``max_attempts``, then it is failed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EMPTY: dict[str, Any] = {"current": None, "previous": None, "trying": None, "attempts": {}, "failed": {}}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


class Store:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.releases = self.folder / "releases"
        self.downloads = self.folder / "download"
        self.path = self.folder / "state.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state = self._load()

    def _load(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text())
            return {**EMPTY, **doc} if isinstance(doc, dict) else dict(EMPTY)
        except FileNotFoundError:
            return json.loads(json.dumps(EMPTY))
        except ValueError as exc:  # cannot happen with the atomic rename; a hand-edited file
            log.error("updates: %s is not JSON (%s): starting on the config file as it is", self.path, exc)
            return json.loads(json.dumps(EMPTY))

    def _save(self) -> None:
        tmp = self.path.with_name(".state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.folder)

    # -- what runs ---------------------------------------------------------------------------
    @property
    def current(self) -> int | None:
        return self.state["current"]

    @property
    def trying(self) -> int | None:
        return self.state["trying"]

    def failed(self, version: int) -> str | None:
        return self.state["failed"].get(str(version))

    def attempts(self, version: int) -> int:
        return int(self.state["attempts"].get(str(version), 0))

    def at_start(self, max_attempts: int) -> str | None:
        """Settle a health window that a power cut or a crash interrupted: the daemon starts on
        ``current``; the interrupted release is failed after ``max_attempts``. Returns what
        happened, for the log, or None."""
        for d in self.downloads.glob("*"):
            shutil.rmtree(d, ignore_errors=True)
        v = self.trying
        if v is None:
            return None
        self.state["trying"] = None
        if self.attempts(v) >= max_attempts:
            reason = f"health window interrupted {self.attempts(v)} times (power cut or crash)"
            self.fail(v, reason)
            return f"release {v} failed: {reason}; running release {self.current}"
        self._save()
        return f"release {v}: health window interrupted; running release {self.current}, {v} is tried again"

    # -- install, try, commit, roll back ------------------------------------------------------
    def download_dir(self, version: int) -> Path:
        d = self.downloads / str(version)
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def install(self, version: int, downloaded: Path) -> Path:
        """Move a complete download into ``releases/<v>`` (one rename, after an fsync)."""
        _fsync_tree(downloaded)
        dest = self.releases / str(version)
        self.releases.mkdir(parents=True, exist_ok=True)
        if dest.exists():  # an earlier, interrupted attempt of the same release
            shutil.rmtree(dest)
        os.rename(downloaded, dest)
        _fsync_dir(self.releases)
        return dest

    def begin(self, version: int) -> None:
        self.state["trying"] = version
        self.state["attempts"][str(version)] = self.attempts(version) + 1
        self._save()

    def commit(self, version: int) -> None:
        if self.state["current"] != version:
            self.state["previous"] = self.state["current"]
        self.state["current"] = version
        self.state["trying"] = None
        self.state["failed"].pop(str(version), None)
        self._save()
        keep = {str(self.state["current"]), str(self.state["previous"])}
        for d in self.releases.glob("*"):
            if d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)

    def fail(self, version: int, reason: str) -> None:
        self.state["failed"][str(version)] = reason
        if self.state["trying"] == version:
            self.state["trying"] = None
        self._save()
        if version not in (self.state["current"], self.state["previous"]):
            shutil.rmtree(self.releases / str(version), ignore_errors=True)

    # -- what a release changes --------------------------------------------------------------
    def release(self, version: int) -> dict:
        return json.loads((self.releases / str(version) / "release.json").read_text())

    def overlay(self, version: int | None) -> dict:
        """The config keys an installed release sets over the config file (none for None)."""
        return {} if version is None else self.overlay_of(self.releases / str(version))

    @staticmethod
    def overlay_of(folder: Path) -> dict:
        """The config keys of the release in ``folder``: its model (as named, no precision
        swap) and its config fragment."""
        import yaml

        files = json.loads((folder / "release.json").read_text())["files"]
        out: dict = {}
        if "config" in files:
            out = yaml.safe_load((folder / files["config"]["name"]).read_text()) or {}
            if not isinstance(out, dict):
                out = {"(fragment)": out}  # refused by the config's validation as an unknown key
        if "model" in files:
            out = {**out, "classifier": {**(out.get("classifier") or {}), "model": str(folder / files["model"]["name"]),
                                         "precision": "file"}}
        return out
