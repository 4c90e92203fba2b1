"""HTTP routes that list, create and revoke virtual keys, mounted on the query API (docs/keys.md).

    GET  /api/keys?user=&team=             keys the caller may see (admin: all; lead: their teams; developer: own)
    POST /api/keys                         create one; the key is in the answer once, with Cursor setup steps
    POST /api/keys/{key_id}/revoke         revoke (admin: any key; developer, lead: their own)

Who may do what is ``KeyService``'s ``*_for`` methods, shared with the dashboard's keys page; finance
has no access to keys. The caller is the ``Identity`` the auth middleware put on the request (in
open mode, the local admin). As on the budgets routes, the actor the audit log records is a
signed-in person's email; with the admin token or in open mode it may be named with
``X-Spendgate-Actor``.

Answers are JSON: 400 ``{"error", "field"}`` for a bad field, 403 when the role or slice does not
allow it, 404 for an unknown key, 503 when the collector has no ``keys_file``. A create answers 201
with ``Cache-Control: no-store`` so no cache keeps the key. Calls run on the API's thread pool.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from ..auth.errors import AuthError
from ..auth.identity import Identity, Role, allow, identity_of
from ..errors import StoreUnavailable
from ..http.blocking import run_blocking
from ..http.body import ACTOR_HEADER, MAX_ACTOR, audit_actor, read_json_object
from .file import KeyFileError
from .service import InvalidKeyRequest, KeyNotFound, KeyService, KeysNotConfigured, KeyView

MAX_BODY_BYTES = 64 * 1024
MAX_EXPIRY_DAYS = 3650
CURSOR_PATH = "/cursor/v1"

_LIST_PARAMS = frozenset({"user", "team"})
_CREATE_FIELDS = frozenset({"user", "team", "cost_center", "repo", "models", "expires_at", "expires_in_days"})

Handler = Callable[["KeysApi", web.Request], Awaitable[web.Response]]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


def _errors(handler: Handler) -> Handler:
    """The service's refusals as the JSON answers the module docstring lists."""

    @functools.wraps(handler)
    async def wrapper(self: KeysApi, request: web.Request) -> web.Response:
        try:
            return await handler(self, request)
        except InvalidKeyRequest as exc:
            return _json({"error": exc.reason, "field": exc.field}, status=400)
        except AuthError as exc:
            return _json({"error": exc.message}, status=exc.status)
        except KeyNotFound as exc:
            return _json({"error": exc.message}, status=404)
        except KeysNotConfigured as exc:
            return _json({"error": exc.message}, status=503)
        except KeyFileError as exc:
            return _json({"error": f"the keys file cannot be used: {exc}"}, status=500)
        except StoreUnavailable as exc:
            return _json({"error": str(exc)}, status=503, headers={"Retry-After": "1"})

    return wrapper


def _actor(request: web.Request, identity: Identity) -> str:
    """Who the audit log records (the same rule as the budgets routes)."""
    return audit_actor(identity, lambda: request.headers.get(ACTOR_HEADER, "").strip()[:MAX_ACTOR] or identity.actor)


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json_object(request, MAX_BODY_BYTES, InvalidKeyRequest)
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        raise InvalidKeyRequest(unknown[0], f"unknown field; allowed: {', '.join(sorted(_CREATE_FIELDS))}")
    return body


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or isinstance(value, str):
        return value
    raise InvalidKeyRequest(name, "must be a string")


def _models(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("models")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise InvalidKeyRequest("models", "must be a list of model names")
    return tuple(value)


def _expiry(body: dict[str, Any], now: datetime) -> datetime | None:
    at, days = body.get("expires_at"), body.get("expires_in_days")
    if at is not None and days is not None:
        raise InvalidKeyRequest("expires_at", "give expires_at or expires_in_days, not both")
    if days is not None:
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_EXPIRY_DAYS:
            raise InvalidKeyRequest("expires_in_days", f"must be a whole number of days from 1 to {MAX_EXPIRY_DAYS}")
        return now + timedelta(days=days)
    if at is None:
        return None
    if not isinstance(at, str):
        raise InvalidKeyRequest("expires_at", "must be an ISO 8601 time such as 2026-12-31T00:00:00Z")
    try:
        parsed = datetime.fromisoformat(at)
    except ValueError:
        raise InvalidKeyRequest("expires_at", f"not an ISO 8601 time: {at!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cursor_setup(secret: str, view: KeyView, proxy_public_url: str | None) -> dict[str, Any]:
    """Copy-paste steps that point Cursor at the gateway with this key (docs/cursor.md)."""
    base_url = f"{proxy_public_url}{CURSOR_PATH}" if proxy_public_url else None
    placeholder = f"https://<your gateway>{CURSOR_PATH}"
    shown_url = base_url or f"{placeholder} (ask your platform team for the gateway's address)"
    steps = [
        "Open Cursor Settings → Models → API Keys.",
        "OpenAI API Key: paste the key above (it is shown only once; store it in your password manager).",
        f"Override OpenAI Base URL: {shown_url}",
        "Press Verify: Cursor calls GET /models with the key and should answer with the model list.",
        "+ Add Custom Model with the exact name of each model you use, and enable it.",
    ]
    if view.models:
        steps.append(f"This key may call only: {', '.join(view.models)}.")
    return {
        "base_url": base_url,
        "api_key": secret,
        "cursor_steps": steps,
        "verify": f'curl -H "Authorization: Bearer {secret}" {base_url or placeholder}/models',
    }


class KeysApi:
    """The key routes over one ``KeyService``; ``executor`` runs its (file and SQLite) calls."""

    def __init__(
        self,
        service: KeyService,
        executor: Executor | None = None,
        *,
        proxy_public_url: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._service = service
        self._executor = executor
        self._proxy_public_url = proxy_public_url
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/keys", self.list_keys)
        app.router.add_post("/api/keys", self.create_key)
        app.router.add_post("/api/keys/{key_id}/revoke", self.revoke_key)

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_blocking(self._executor, fn, *args, **kwargs)

    @allow(Role.ADMIN, Role.LEAD, Role.DEVELOPER)
    @_errors
    async def list_keys(self, request: web.Request) -> web.Response:
        for name in request.query:
            if name not in _LIST_PARAMS:
                raise InvalidKeyRequest(name, f"unknown parameter; allowed: {', '.join(sorted(_LIST_PARAMS))}")
        identity = identity_of(request)
        views = await self._run(
            self._service.list_for,
            identity,
            user=request.query.get("user") or None,
            team=request.query.get("team") or None,
        )
        now = self._clock()
        return _json({"keys": [v.to_dict(now) for v in views]})

    @allow(Role.ADMIN, Role.LEAD, Role.DEVELOPER)
    @_errors
    async def create_key(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        body = await _body(request)
        view, secret = await self._run(
            self._service.create_for,
            identity,
            actor=_actor(request, identity),
            user=_optional_str(body, "user"),
            team=_optional_str(body, "team"),
            cost_center=_optional_str(body, "cost_center"),
            repo=_optional_str(body, "repo"),
            models=_models(body),
            expires_at=_expiry(body, self._clock()),
        )
        answer = {
            "key": view.to_dict(self._clock()),
            "secret": secret,
            "shown_once": True,
            "setup": cursor_setup(secret, view, self._proxy_public_url),
        }
        return _json(answer, status=201, headers={"Cache-Control": "no-store"})

    @allow(Role.ADMIN, Role.LEAD, Role.DEVELOPER)
    @_errors
    async def revoke_key(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        view = await self._run(
            self._service.revoke_for, identity, request.match_info["key_id"], actor=_actor(request, identity)
        )
        return _json({"key": view.to_dict(self._clock())})
