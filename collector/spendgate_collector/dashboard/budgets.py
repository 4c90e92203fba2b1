"""The budgets page ``/budgets``: where each budget stands, what is in force, and who changed what.

Per budget the viewer may see (``auth.scope.can_see_budget``): a status bar with its thresholds marked,
the state, the verdicts in force, active overrides with who granted them and why. Below, the
transition history and the changes, from the audit table. An admin (or a lead, for their teams'
budgets) gets two forms: set a budget, add an override. They post here with the session's CSRF token
(checked by the auth middleware), and the handlers call the same engine methods as the budgets
API, with the signed-in person as the actor, after the same ``can_manage_budget`` check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..auth.csrf import csrf_token
from ..auth.identity import ALL_ROLES, Identity, Role, allow, identity_of
from ..auth.scope import can_manage_budget
from ..budgets import BudgetError, BudgetNotFound, parse_budget
from ..budgets.model import ACTIONS, PERIODS
from .access import budget_rights
from .context import DashboardContext
from .forms import field, posted_form

HISTORY_LIMIT = 200
"""Audit lines read for the history (newest first); the budgets API pages further back."""
_CHANGES = ("budget.created", "budget.updated", "override.")
LEAD_ONLY = "a lead sets budgets for one of their own teams only (choose the team)"
_SCOPE_INPUTS = ("developer", "team", "cost_center", "repo", "model")


def _scope_from_form(form: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name in _SCOPE_INPUTS if (value := field(form, name))}


def _budget_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """The budgets API's JSON body from the set-a-budget form (the engine validates every field)."""
    data: dict[str, Any] = {
        "id": form.get("id", "").strip(),
        "scope": _scope_from_form(form),
        "period": form.get("period") or "month",
        "limit_usd": field(form, "limit_usd"),
    }
    for name in ("name", "owner", "timezone"):
        if value := field(form, name):
            data[name] = value
    if data["limit_usd"] is None:
        del data["limit_usd"]  # the engine names the missing field
    return data


def _override_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {"action": form.get("action", ""), "reason": form.get("reason", "")}
    for name in ("limit_usd", "for"):
        if value := field(form, name):
            data[name] = value
    return data


class BudgetsPage:
    """``GET /budgets``, ``POST /budgets`` (set one), ``POST /budgets/{id}/overrides`` (add one)."""

    def __init__(self, ctx: DashboardContext) -> None:
        self._ctx = ctx

    @allow(*ALL_ROLES)
    async def get(self, request: web.Request) -> web.Response:
        return await self._page(request, identity_of(request))

    @allow(Role.ADMIN, Role.LEAD)
    async def set_budget(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        form = await posted_form(request)
        engine = self._ctx.budgets
        if engine is None:
            return await self._page(request, identity, error="budgets are not enabled on this collector", status=404)
        data = _budget_from_form(form)
        try:
            wanted = parse_budget(data, default_timezone=engine.default_timezone)
            if not can_manage_budget(identity, wanted.scope_dict):
                return await self._page(request, identity, error=LEAD_ONLY, status=403, form=form)
            try:
                existing = await self._ctx.run(engine.get, wanted.id)
            except BudgetNotFound:
                existing = None
            if existing is not None and not can_manage_budget(identity, existing.scope_dict):
                return await self._page(request, identity, error=f"you may not change budget {wanted.id}", status=403)
            budget, _ = await self._ctx.run(engine.put_budget, data, actor=identity.actor)
        except BudgetError as exc:
            return await self._page(request, identity, error=f"{exc.field}: {exc.message}", status=400, form=form)
        raise web.HTTPSeeOther(f"/budgets?saved={budget.id}")

    @allow(Role.ADMIN, Role.LEAD)
    async def add_override(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        form = await posted_form(request)
        engine = self._ctx.budgets
        budget_id = request.match_info["id"]
        try:
            if engine is None:
                raise BudgetNotFound(f"no budget {budget_id!r}")
            budget = await self._ctx.run(engine.get, budget_id)
            if not can_manage_budget(identity, budget.scope_dict):
                return await self._page(request, identity, error=f"you may not override budget {budget_id}", status=403)
            await self._ctx.run(engine.add_override, budget_id, _override_from_form(form), actor=identity.actor)
        except BudgetNotFound as exc:
            return await self._page(request, identity, error=str(exc), status=404)
        except BudgetError as exc:
            return await self._page(request, identity, error=f"override {exc.field}: {exc.message}", status=400)
        raise web.HTTPSeeOther(f"/budgets?overridden={budget_id}")

    async def _page(
        self,
        request: web.Request,
        identity: Identity,
        *,
        error: str | None = None,
        status: int = 200,
        form: Mapping[str, str] | None = None,
    ) -> web.Response:
        engine = self._ctx.budgets
        statuses: list[dict[str, Any]] = []
        audit: list[dict[str, Any]] = []
        seen: set[str] = set()
        managed: set[str] = set()
        if engine is not None:
            statuses = await self._ctx.run(engine.status)
            seen, managed = budget_rights(identity, await self._ctx.run(engine.budgets))
        if self._ctx.audit is not None:
            audit = await self._ctx.run(self._ctx.audit.read, limit=HISTORY_LIMIT)
        visible = [s for s in statuses if s["id"] in seen]
        focus = request.query.get("budget")
        if focus:
            visible = [s for s in visible if s["id"] == focus]
        ids = {s["id"] for s in visible}
        for s in visible:
            s["manage"] = s["id"] in managed
        history = [a for a in audit if a["budget_id"] in ids and a["action"] == "budget.transition"]
        changes = [a for a in audit if a["budget_id"] in ids and a["action"].startswith(_CHANGES)]
        return self._ctx.renderer.page(
            "budgets.html",
            identity=identity,
            active="/budgets",
            csrf=csrf_token(request),
            status=status,
            enabled=engine is not None,
            budgets=visible,
            focus=focus,
            history=history,
            changes=changes,
            error=error,
            saved=request.query.get("saved"),
            overridden=request.query.get("overridden"),
            can_set=identity.role in (Role.ADMIN, Role.LEAD),
            lead_teams=identity.teams if identity.role is Role.LEAD else (),
            periods=PERIODS,
            actions=ACTIONS,
            form=form or {},
        )
