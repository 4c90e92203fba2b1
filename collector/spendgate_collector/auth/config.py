"""The ``auth:`` section of the collector config: who may use the API and dashboard, and how they sign in.

``mode: open`` (the default) signs nobody in: every request is an ``admin``, which is only allowed
while the API listens on loopback (the collector config refuses to start otherwise, naming
``auth.mode``). ``mode: oidc`` signs people in with OpenID Connect and maps their groups to roles.
Secrets are never in the config: ``admin_token_env`` and ``oidc.client_secret_env`` name the
environment variables they are read from at start. From the environment the whole section is
``SPENDGATE_COLLECTOR_AUTH`` as JSON. See docs/auth.md.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..api_client import ADMIN_TOKEN_ENV
from ..config_section import section_from_json
from ..errors import ConfigError
from .identity import Role

DEFAULT_ADMIN_TOKEN_ENV = ADMIN_TOKEN_ENV  # the variable the command-line tools send the token from
DEFAULT_CLIENT_SECRET_ENV = "SPENDGATE_OIDC_CLIENT_SECRET"
# A working day: long enough not to interrupt anyone, short enough that a removed group membership
# stops counting by the next morning.
DEFAULT_SESSION_TTL_S = 8 * 3600
MIN_ADMIN_TOKEN_CHARS = 16


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (``127.0.0.0/8``, ``::1``)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _https_or_loopback(value: str, field: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{field} must be an http(s) URL, got {value!r}")
    # Plain http would let anyone on the path read the tokens; loopback is allowed for tests and demos.
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(f"{field} must use https (plain http only on loopback), got {value!r}")
    return value.rstrip("/")


class RoleMap(BaseModel):
    """Which values of the roles claim (groups) give which role; the first match in
    admin → finance → lead order wins, anyone else gets ``default_role``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    admin: list[str] = Field(default_factory=list)
    finance: list[str] = Field(default_factory=list)
    lead: list[str] = Field(default_factory=list)


class OidcConfig(BaseModel):
    """The identity provider and this collector's registration with it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str | None = None
    """Issuer URL; ``<issuer>/.well-known/openid-configuration`` is the discovery document."""
    client_id: str | None = None
    client_secret_env: str = DEFAULT_CLIENT_SECRET_ENV
    """Environment variable with the client secret; unset = a public client (PKCE only)."""
    public_url: str | None = None
    """How browsers reach the collector (e.g. ``https://spend.acme.com``); the redirect URI is
    ``<public_url>/auth/callback``. An https URL makes the session cookie ``Secure``."""
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    roles_claim: str = "groups"
    """ID token claim (a list of strings, or one string) matched against ``role_map``."""
    role_map: RoleMap = Field(default_factory=RoleMap)
    teams_claim: str | None = "teams"
    """ID token claim listing the person's teams (a lead sees these); ``null`` = no teams."""
    default_role: Role | None = Role.DEVELOPER
    """Role of a person in none of ``role_map``'s groups; ``null`` refuses them sign-in."""
    session_ttl_s: int = Field(DEFAULT_SESSION_TTL_S, ge=60, le=30 * 86_400)
    """Seconds a session lasts before signing in again."""
    clock_skew_s: int = Field(60, ge=0, le=600)
    """Leeway on the ID token's ``exp`` / ``iat`` for clocks that disagree a little."""

    @field_validator("issuer", "public_url")
    @classmethod
    def _url(cls, value: str | None, info: Any) -> str | None:
        return None if value is None else _https_or_loopback(value, info.field_name)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("must include 'openid'")
        return value


class AuthConfig(BaseModel):
    """``auth:`` — see the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["open", "oidc"] = "open"
    admin_token_env: str | None = DEFAULT_ADMIN_TOKEN_ENV
    """Environment variable holding the local admin token (a Bearer token with the admin role, for
    bootstrap and the CLIs); unset variable or ``null`` = no admin token."""
    oidc: OidcConfig = Field(default_factory=OidcConfig)

    @model_validator(mode="before")
    @classmethod
    def _from_json(cls, value: Any) -> Any:
        return section_from_json(value)

    @model_validator(mode="after")
    def _oidc_complete(self) -> AuthConfig:
        if self.mode == "oidc":
            missing = [name for name in ("issuer", "client_id", "public_url") if not getattr(self.oidc, name)]
            if missing:
                raise ValueError(f"auth.oidc.{missing[0]} is required when auth.mode is 'oidc'")
        return self

    def check_listen_address(self, api_host: str | None) -> None:
        """Raise ``ValueError`` naming ``auth.mode`` when open mode would face a network."""
        if self.mode == "open" and api_host is not None and not is_loopback_host(api_host):
            raise ValueError(
                f"auth.mode is 'open' (no sign-in, everyone is admin), which is only allowed while the API "
                f"listens on loopback; the API listens on {api_host}: set auth.mode to 'oidc' or api to 127.0.0.1"
            )


def read_secret(name: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of environment variable ``name`` (stripped), or ``None`` when unset or empty."""
    if not name:
        return None
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return value or None


def read_admin_token(cfg: AuthConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The admin token from ``cfg.admin_token_env``; raise ``ConfigError`` when it is too short to be safe."""
    token = read_secret(cfg.admin_token_env, environ)
    if token is not None and len(token) < MIN_ADMIN_TOKEN_CHARS:
        raise ConfigError(
            f"auth.admin_token_env: ${cfg.admin_token_env} is shorter than {MIN_ADMIN_TOKEN_CHARS} characters;"
            " use a long random value (e.g. `openssl rand -hex 32`)"
        )
    return token
