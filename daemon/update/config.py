"""The ``updates:`` section: where the signed repository is, this device's group, the health window."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from ..configbase import Section


class UpdatesConfig(Section):
    enabled: bool = Field(False, title="check a signed (TUF) repository for new models and config fragments "
                                       "(needs the updates extra: python-tuf)")
    url: str | None = Field(None, title="the repository's base URL (metadata/ and targets/ below it), e.g. "
                                        "http://updates.example/fleet")
    root: Path | None = Field(None, title="the repository's root.json as shipped to the device: the first trusted "
                                          "metadata; later roots (key rotations) are verified against it")
    group: str = Field("default", min_length=1, title="rollout group of this device (e.g. canary); a group the "
                                                      "rollout does not name follows the default group")
    interval_s: float = Field(3600.0, gt=0, title="seconds between checks (also on the MQTT command cmd/update)")
    first_check_s: float = Field(10.0, ge=0, title="seconds after start before the first check")
    state_dir: Path | None = Field(None, title="trusted metadata, downloads and installed releases (default: "
                                               "<outbox.state_dir>/updates)")
    timeout_s: float = Field(30.0, gt=0, title="network timeout of one request to the repository")
    health_window_s: float = Field(30.0, gt=0, title="seconds a new release runs before it is committed")
    min_frames: int = Field(10, ge=0, title="frames the pipeline must process during the health window")
    min_fps_share: float = Field(0.5, ge=0, title="frames/s during the window must reach this share of the "
                                                  "frames/s before the switch (0: no check)")
    require_faces: bool = Field(True, title="when faces were classified before the switch, some must be "
                                            "classified during the window")
    max_attempts: int = Field(2, ge=1, title="a release whose health window is cut short this often (a power "
                                             "cut, a crash) is given up as failed")

    @model_validator(mode="after")
    def _where_from(self) -> UpdatesConfig:
        if self.enabled and (not self.url or self.root is None):
            raise ValueError("updates.enabled: set updates.url (the repository) and updates.root (its root.json)")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"updates.url: expected an http:// or https:// URL, got {self.url!r}")
        return self
