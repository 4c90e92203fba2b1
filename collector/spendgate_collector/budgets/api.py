"""HTTP routes that manage budgets and overrides and show their state, mounted on the query API.

    GET    /api/budgets                          every budget's definition
    POST   /api/budgets                          create or replace one (id in the body)
    GET    /api/budgets/status                   per budget: period, spend, limit, effective limit, state, verdicts
    GET    /api/budgets/{id}                     one budget, with its status
    PUT    /api/budgets/{id}                     create or replace (201 when created)
    DELETE /api/budgets/{id}                     delete (its verdicts are lifted)
    POST   /api/budgets/{id}/overrides           lift or raise until a time, with a reason
    DELETE /api/budgets/{id}/overrides/{oid}     end an override early
    GET    /api/audit?budget=&action=&limit=&before=   audit lines, newest first

Access (docs/auth.md): admin changes everything; a lead changes budgets (and their overrides)
scoped to one of their teams; finance reads every budget; a developer reads the budgets that apply
to them. A budget the caller may not see answers 404, as if it did not exist.

Who did it (the *actor*) is the signed-in person's email. With the admin token or in open mode
(no sign-in) the operator names themselves with the ``X-Spendgate-Actor`` header or an ``actor``
field of the body (default ``api``); with the token the actor is recorded as ``NAME (admin token)``.
Invalid input answers 400 ``{"error": ..., "field": "thresholds.1.to"}``; an unknown budget or
override 404. Every call runs on the API's thread pool, never on the event loop.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from ..audit import AuditLog
from ..auth import ALL_ROLES, Forbidden, Identity, Role, allow, can_see_budget, require_manage_budget
from ..auth.identity import identity_of
from ..http.blocking import run_blocking
from ..http.body import ACTOR_HEADER, MAX_ACTOR, audit_actor, read_json_object
from .engine import BudgetEngine
from .model import Budget, BudgetError, BudgetNotFound, parse_budget

DEFAULT_ACTOR = "api"
MAX_BODY_BYTES = 256 * 1024
MAX_AUDIT_LIMIT = 1000

Handler = Callable[["BudgetsApi", web.Request], Awaitable[web.Response]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _errors(handler: Handler) -> Handler:
    """Budget errors → 400 naming the field, unknown ids → 404."""

    @functools.wraps(handler)
    async def wrapper(self: BudgetsApi, request: web.Request) -> web.Response:
        try:
            return await handler(self, request)
        except BudgetError as exc:
            return _json({"error": exc.message, "field": exc.field}, status=400)
        except BudgetNotFound as exc:
            return _json({"error": str(exc)}, status=404)

    return wrapper


async def _body(request: web.Request) -> dict[str, Any]:
    return await read_json_object(request, MAX_BODY_BYTES, BudgetError)


def _actor(request: web.Request, body: dict[str, Any]) -> str:
    def claimed() -> str:
        actor = request.headers.get(ACTOR_HEADER) or body.get("actor") or DEFAULT_ACTOR
        if not isinstance(actor, str) or not actor.strip():
            raise BudgetError("actor", "must be a non-empty string")
        if len(actor) > MAX_ACTOR:
            raise BudgetError("actor", f"must be at most {MAX_ACTOR} characters")
        return actor.strip()

    return audit_actor(identity_of(request), claimed)


class BudgetsApi:
    """The budget routes over one ``BudgetEngine``; ``executor`` runs the engine's (SQLite) calls."""

    def __init__(self, engine: BudgetEngine, audit: AuditLog, executor: Executor | None = None) -> None:
        self._engine = engine
        self._audit = audit
        self._executor = executor

    def add_routes(self, app: web.Application) -> None:
        # /status before /{id}: routes match in the order they are added.
        app.router.add_get("/api/budgets", self.list_budgets)
        app.router.add_post("/api/budgets", self.post_budget)
        app.router.add_get("/api/budgets/status", self.status)
        app.router.add_get("/api/budgets/{id}", self.get_budget)
        app.router.add_put("/api/budgets/{id}", self.put_budget)
        app.router.add_delete("/api/budgets/{id}", self.delete_budget)
        app.router.add_post("/api/budgets/{id}/overrides", self.add_override)
        app.router.add_delete("/api/budgets/{id}/overrides/{oid}", self.remove_override)
        app.router.add_get("/api/audit", self.audit)

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_blocking(self._executor, fn, *args, **kwargs)

    async def _visible(self, identity: Identity, budget_id: str) -> Budget:
        """The budget if ``identity`` may see it; else ``BudgetNotFound``, so ids do not leak."""
        budget: Budget = await self._run(self._engine.get, budget_id)
        if not can_see_budget(identity, budget.scope_dict):
            raise BudgetNotFound(f"no budget {budget_id!r}")
        return budget

    async def _manageable(self, identity: Identity, budget_id: str) -> Budget:
        budget = await self._visible(identity, budget_id)
        require_manage_budget(identity, budget.id, budget.scope_dict)
        return budget

    @allow(*ALL_ROLES)
    @_errors
    async def list_budgets(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        budgets = await self._run(self._engine.budgets)
        return _json({"budgets": [b.to_dict() for b in budgets if can_see_budget(identity, b.scope_dict)]})

    @allow(*ALL_ROLES)
    @_errors
    async def get_budget(self, request: web.Request) -> web.Response:
        bid = request.match_info["id"]
        budget = await self._visible(identity_of(request), bid)
        (status,) = await self._run(self._engine.status, bid)
        return _json({**budget.to_dict(), "status": status})

    async def _put(self, request: web.Request, budget_id: str | None) -> web.Response:
        body = await _body(request)
        actor = _actor(request, body)
        identity = identity_of(request)
        if identity.role is not Role.ADMIN:
            # Both the new definition and the one it replaces must be within the caller's teams.
            new = parse_budget(body, default_timezone=self._engine.default_timezone, budget_id=budget_id)
            require_manage_budget(identity, new.id, new.scope_dict)
            try:
                await self._manageable(identity, new.id)
            except BudgetNotFound:
                existing = {b.id for b in await self._run(self._engine.budgets)}
                if new.id in existing:
                    raise Forbidden(f"budget {new.id!r} is not scoped to one of your teams") from None
        budget, created = await self._run(self._engine.put_budget, body, actor=actor, budget_id=budget_id)
        (status,) = await self._run(self._engine.status, budget.id)
        return _json({"budget": budget.to_dict(), "created": created, "status": status}, status=201 if created else 200)

    @allow(Role.ADMIN, Role.LEAD)
    @_errors
    async def put_budget(self, request: web.Request) -> web.Response:
        return await self._put(request, request.match_info["id"])

    @allow(Role.ADMIN, Role.LEAD)
    @_errors
    async def post_budget(self, request: web.Request) -> web.Response:
        return await self._put(request, None)

    @allow(Role.ADMIN, Role.LEAD)
    @_errors
    async def delete_budget(self, request: web.Request) -> web.Response:
        bid = request.match_info["id"]
        actor = _actor(request, {})
        await self._manageable(identity_of(request), bid)
        await self._run(self._engine.delete_budget, bid, actor=actor)
        return _json({"deleted": bid})

    @allow(Role.ADMIN, Role.LEAD)
    @_errors
    async def add_override(self, request: web.Request) -> web.Response:
        bid = request.match_info["id"]
        body = await _body(request)
        actor = _actor(request, body)
        await self._manageable(identity_of(request), bid)
        override = await self._run(self._engine.add_override, bid, body, actor=actor)
        (status,) = await self._run(self._engine.status, bid)
        return _json({"override": override.to_dict(), "status": status}, status=201)

    @allow(Role.ADMIN, Role.LEAD)
    @_errors
    async def remove_override(self, request: web.Request) -> web.Response:
        bid, oid = request.match_info["id"], request.match_info["oid"]
        actor = _actor(request, {})
        await self._manageable(identity_of(request), bid)
        override = await self._run(self._engine.remove_override, bid, oid, actor=actor)
        (status,) = await self._run(self._engine.status, bid)
        return _json({"removed": override.to_dict(), "status": status})

    @allow(*ALL_ROLES)
    @_errors
    async def status(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        rows = await self._run(self._engine.status)
        if identity.role not in (Role.ADMIN, Role.FINANCE):
            visible = {b.id for b in await self._run(self._engine.budgets) if can_see_budget(identity, b.scope_dict)}
            rows = [row for row in rows if row.get("id") in visible]
        return _json({"at": datetime.now(UTC).isoformat(timespec="seconds"), "budgets": rows})

    @allow(Role.ADMIN, Role.FINANCE, Role.LEAD)
    @_errors
    async def audit(self, request: web.Request) -> web.Response:
        allowed = {"budget", "action", "limit", "before"}
        for name in request.query:
            if name not in allowed:
                raise BudgetError(name, f"unknown parameter; allowed: {', '.join(sorted(allowed))}")
        identity = identity_of(request)
        if identity.role is Role.LEAD:
            # The audit table also records key changes and other teams' budgets: a lead reads the
            # history of one budget they can see at a time.
            if not request.query.get("budget"):
                raise Forbidden("leads read the audit log one budget at a time: pass budget=<id>")
            await self._visible(identity, request.query["budget"])
        limit = _int_param(request, "limit", 100, 1, MAX_AUDIT_LIMIT)
        before = _int_param(request, "before", None, 1, 2**62)
        entries = await self._run(
            self._audit.read,
            budget_id=request.query.get("budget") or None,
            action=request.query.get("action") or None,
            limit=limit,
            before_id=before,
        )
        return _json({"entries": entries})


def _int_param(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BudgetError(name, f"must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise BudgetError(name, f"must be between {low} and {high}")
    return value
