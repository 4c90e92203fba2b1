"""The keys page ``/keys``: virtual keys with their last use; issue one, revoke one.

A developer sees and creates only their own keys (bound to their sign-in's email and team), a lead
their teams' and their own, an admin every key and for anyone; finance has no keys page at all.
Who may do what is ``KeyService``'s ``*_for`` methods, the same ones the keys API calls. A new key
is in the answer to the create form once, with copy-paste steps for Cursor's settings (Override
OpenAI Base URL + API key), and is kept nowhere: the page is ``no-store``, not a redirect target.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from ..auth.csrf import csrf_token
from ..auth.errors import Forbidden
from ..auth.identity import Identity, Role, allow, identity_of
from ..keys.api import cursor_setup
from ..keys.service import KeyNotFound, KeyServiceError
from .context import DashboardContext
from .forms import field, posted_form

KEY_ROLES = (Role.ADMIN, Role.LEAD, Role.DEVELOPER)


def _expiry(form: Mapping[str, str], now: datetime) -> datetime | None:
    days = form.get("expires_in_days", "").strip()
    if not days:
        return None
    if not days.isdigit() or not 1 <= int(days) <= 3650:
        raise ValueError("expires in days: a whole number from 1 to 3650")
    return now + timedelta(days=int(days))


class KeysPage:
    """``GET /keys``, ``POST /keys`` (issue), ``POST /keys/{key_id}/revoke``."""

    def __init__(self, ctx: DashboardContext) -> None:
        self._ctx = ctx

    @allow(*KEY_ROLES)
    async def get(self, request: web.Request) -> web.Response:
        return await self._page(request, identity_of(request), revoked=request.query.get("revoked"))

    @allow(*KEY_ROLES)
    async def create(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        form = await posted_form(request)
        service = self._ctx.keys
        if service is None:
            return await self._page(request, identity, error="this collector has no keys_file", status=503)
        try:
            models = tuple(m.strip() for m in form.get("models", "").split(",") if m.strip())
            admin_fields: dict[str, Any] = {}
            if identity.role is Role.ADMIN:
                admin_fields = {k: field(form, k) for k in ("user", "team", "cost_center")}
            view, secret = await self._ctx.run(
                service.create_for,
                identity,
                actor=identity.actor,
                repo=field(form, "repo"),
                models=models,
                expires_at=_expiry(form, datetime.now(UTC)),
                **admin_fields,
            )
        except (KeyServiceError, ValueError) as exc:
            return await self._page(request, identity, error=str(exc), status=400)
        except Forbidden as exc:
            return await self._page(request, identity, error=str(exc), status=403)
        setup = cursor_setup(secret, view, self._ctx.proxy_public_url)
        return await self._page(request, identity, created=view, setup=setup, status=201)

    @allow(*KEY_ROLES)
    async def revoke(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        key_id = request.match_info["key_id"]
        try:
            if self._ctx.keys is None:
                raise KeyNotFound(key_id)
            await self._ctx.run(self._ctx.keys.revoke_for, identity, key_id, actor=identity.actor)
        except KeyServiceError as exc:
            return await self._page(request, identity, error=str(exc), status=404)
        except Forbidden as exc:
            return await self._page(request, identity, error=str(exc), status=403)
        raise web.HTTPSeeOther(f"/keys?revoked={key_id}")

    async def _page(
        self,
        request: web.Request,
        identity: Identity,
        *,
        status: int = 200,
        error: str | None = None,
        created: Any = None,
        setup: dict[str, Any] | None = None,
        revoked: str | None = None,
    ) -> web.Response:
        service = self._ctx.keys
        keys: list[Any] = []
        if service is not None:
            try:
                keys = await self._ctx.run(service.list_for, identity)
            except (KeyServiceError, Forbidden) as exc:
                error = error or str(exc)
        now = datetime.now(UTC)
        return self._ctx.renderer.page(
            "keys.html",
            identity=identity,
            active="/keys",
            csrf=csrf_token(request),
            status=status,
            enabled=service is not None,
            keys=[(k, k.state(now)) for k in keys],
            error=error,
            created=created,
            setup=setup,
            revoked=revoked,
            is_admin=identity.role is Role.ADMIN,
        )
