"""The ``http:`` section: the optional local endpoint (health, metrics, live preview)."""

from __future__ import annotations

import os

from pydantic import Field, SecretStr

from ..configbase import Section

TOKEN_ENV = "EMOTIOND_HTTP_TOKEN"


class HttpConfig(Section):
    enabled: bool = Field(False, title="serve /healthz, /metrics and the live preview (off: nothing listens)")
    host: str = Field("127.0.0.1", title="address to listen on (127.0.0.1: this machine only)")
    port: int = Field(8080, ge=1, le=65535, title="TCP port")
    token: SecretStr | None = Field(None, title=f"require 'Authorization: Bearer <token>' on every route (better: env {TOKEN_ENV})")
    preview_fps: float = Field(5.0, gt=0, le=30, title="most preview frames encoded per second, over all viewers")
    preview_quality: int = Field(75, ge=10, le=100, title="JPEG quality of preview frames")

    def token_value(self) -> str | None:
        """The token from the config, else from the environment; None: no authentication."""
        if self.token is not None:
            return self.token.get_secret_value() or None
        return os.environ.get(TOKEN_ENV) or None
