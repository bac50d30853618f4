"""Server settings: environment variables with the ``EVOLVE_`` prefix, or arguments of ``evolve serve``."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from evolve.errors import ConfigError, format_errors

__all__ = ["ServerSettings", "is_loopback", "load_settings"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or 'localhost' (a name that resolves elsewhere is not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServerSettings(BaseSettings):
    """How ``evolve serve`` runs. Every field reads ``EVOLVE_<NAME>`` from the environment."""

    model_config = SettingsConfigDict(env_prefix="EVOLVE_", extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", min_length=1, description="bind address; anything but loopback needs api_token")
    port: int = Field(default=8000, ge=0, le=65535)
    db: str = Field(default="evolve.db", min_length=1, description="SQLite file path or SQLAlchemy URL of the store")
    api_token: SecretStr | None = Field(
        default=None, description="bearer token: required for writes, and for reads too when bound beyond loopback"
    )
    workdir: Path | None = Field(default=None, description="where campaigns' problem files are written (default: a temporary folder)")
    max_evaluations: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=1024,
                                 description="evaluations at once, across all campaigns")
    max_body_bytes: int = Field(default=2 << 20, ge=1024, le=256 << 20, description="largest request body accepted")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed to call the API from a browser (none by default)")
    sandbox: str = Field(default="auto", pattern=r"^(auto|bwrap|docker|process)$",
                         description="sandbox backend of every evaluation on this server; clients cannot choose")
    sandbox_evaluators: Literal["submitted", "all"] = Field(
        default="submitted", description="whose evaluator.py runs in a sandbox of its own: every submitted problem's "
                                         "(built-in ones keep the faster trusted path), or all",
    )
    max_problem_memory_mb: int = Field(default=4096, ge=64, le=65536,
                                       description="the most memory a submitted problem's stage may give its candidate "
                                                   "(its evaluator gets twice that)")
    max_problem_timeout_s: float = Field(default=600.0, gt=0, le=3600, description="the longest stage a submitted problem may have")
    max_problem_processes: int = Field(default=64, ge=1, le=1024, description="the most processes a submitted problem's candidate may run")
    ray_address: str | None = Field(
        default=None, min_length=1, max_length=300,
        description="the Ray cluster (head host:port) campaigns may evaluate on with executor 'ray'; none by default",
    )
    allowed_api_bases: list[str] = Field(
        default_factory=list,
        description="model endpoints (URL prefixes) a campaign may name as api_base; none by default, so a client "
                    "cannot send the server's keys or requests elsewhere",
    )

    @field_validator("api_token")
    @classmethod
    def _strong_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (for example: python -c 'import secrets; print(secrets.token_urlsafe())')")
        return value

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def reads_need_token(self) -> bool:
        """Reads need a token beyond loopback (where a server always has one: see ``check_bind``)."""
        return not self.loopback

    def check_bind(self, *, has_tokens: bool = False) -> None:
        """Raises: ConfigError when the address is reachable from other machines and no token exists
        (neither EVOLVE_API_TOKEN nor one in the store, ``has_tokens``)."""
        if not self.loopback and self.api_token is None and not has_tokens:
            raise ConfigError(
                f"refusing to serve on {self.host} without a token: anyone who can reach it could run code here. "
                "Set EVOLVE_API_TOKEN (16+ characters), or make tokens with 'evolve token create', or bind to 127.0.0.1"
            )


def load_settings(**overrides: object) -> ServerSettings:
    """Settings from the environment, with ``overrides`` (CLI options that were given) on top.

    Raises:
        ConfigError: naming each invalid setting and its variable.
    """
    try:
        return ServerSettings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError("invalid server settings: " + format_errors(exc, name=lambda loc: f"EVOLVE_{loc.upper()}")) from exc
