"""``AuthGate``: the auth section of the config turned into the API's middleware and ``/auth/*`` routes.

    gate = AuthGate.build(config.auth, config.db)   # reads the secrets; ConfigError names the bad field
    api.middlewares.append(gate.middleware)
    api.extra_routes.append(gate.add_routes)
    ...
    await gate.close()

Sessions live in table ``auth_sessions`` of the collector's own database (``mode: oidc`` only).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..errors import ConfigError
from .config import AuthConfig, read_admin_token, read_secret
from .oidc import OidcClient
from .policy import Policy
from .routes import AuthRoutes
from .sessions import SessionStore

logger = logging.getLogger(__name__)


class AuthGate:
    """The policy middleware, the sign-in routes and what they share (sessions, the OIDC client)."""

    def __init__(
        self,
        cfg: AuthConfig,
        policy: Policy,
        routes: AuthRoutes,
        *,
        oidc: OidcClient | None,
        sessions: SessionStore | None,
    ) -> None:
        self.cfg = cfg
        self.policy = policy
        self.routes = routes
        self.oidc = oidc
        self.sessions = sessions

    @classmethod
    def build(cls, cfg: AuthConfig, db: Path, environ: Mapping[str, str] | None = None) -> AuthGate:
        """Read the secrets from the environment and open the session table."""
        admin_token = read_admin_token(cfg, environ)
        oidc: OidcClient | None = None
        sessions: SessionStore | None = None
        if cfg.mode == "oidc":
            try:
                sessions = SessionStore(db)
            except Exception as exc:
                raise ConfigError(f"db: cannot open the session table in {db}: {exc}") from exc
            oidc = OidcClient(cfg.oidc, read_secret(cfg.oidc.client_secret_env, environ))
        policy = Policy(mode=cfg.mode, admin_token=admin_token, sessions=sessions, public_url=cfg.oidc.public_url)
        logger.info(
            "auth: mode=%s, admin token %s", cfg.mode, "set" if admin_token else f"not set (${cfg.admin_token_env})"
        )
        return cls(cfg, policy, AuthRoutes(cfg, oidc, sessions), oidc=oidc, sessions=sessions)

    @property
    def middleware(self) -> Middleware:
        return self.policy.middleware

    def add_routes(self, app: web.Application) -> None:
        self.routes.add_routes(app)

    async def close(self) -> None:
        if self.oidc is not None:
            await self.oidc.close()
        if self.sessions is not None:
            self.sessions.close()
