"""Admitting a call on the translating routes: budget verdict and headers, routing plan, the span record.

The Chat Completions hot path in ``routes/chat.py`` does the same steps inline; ``/v1/messages`` and the
Cursor route share them from here so that budgets (pause, route) and the routing policy
(rules, weighted targets, fallbacks) behave the same whichever door a call came through.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from spendgate_proxy.errors import ModelNotAllowed, ModelNotFound, ProxyError
from spendgate_proxy.http.inbound import trace_ids
from spendgate_proxy.telemetry.redact import redact
from spendgate_proxy.telemetry.spans import CallRecord, invocation_params

if TYPE_CHECKING:
    from spendgate_proxy.attribution.chain import Attribution
    from spendgate_proxy.config import ModelRoute
    from spendgate_proxy.keys import Principal
    from spendgate_proxy.providers import Provider
    from spendgate_proxy.state import ProxyState


class ControlUnavailable(ProxyError):
    """Fail-closed proxy without control state yet."""

    status = 503
    type = "api_error"


@dataclass(slots=True)
class Plan:
    """Where a call goes: targets in order, the rule that chose them, and any verdict applied."""

    attempts: list[tuple[ModelRoute, Provider]]
    rule: str | None = None
    verdict: str | None = None
    pause: Any = None
    """The pausing verdict, when the call must be refused (the route answers in its own format)."""
    budget_headers: Mapping[str, str] | None = None
    """``x-spendgate-budget*`` headers of the tightest budget the call is within, for a successful reply."""


def lookup_model(state: ProxyState, principal: Principal, model: str) -> tuple[ModelRoute, Provider]:
    """The configured route for ``model``; raises ``ModelNotFound`` / ``ModelNotAllowed``."""
    found = state.routes.get(model)
    if found is None:
        raise ModelNotFound(
            f"The model '{model}' does not exist on this gateway; GET /v1/models lists the configured ones.",
            code="model_not_found",
            param="model",
        )
    if not principal.allows(model):
        raise ModelNotAllowed(
            f"Virtual key {principal.key_id} may not use model '{model}'.", code="model_not_allowed", param="model"
        )
    return found


def reads_attribution(state: ProxyState) -> bool:
    """Whether ``plan_call`` reads a call's attribution and feature right now: budget verdicts and
    budgets match on the repo, routing rules on the repo and the feature. When it does not, the
    hot path works both out after the upstream request is written, while the upstream computes."""
    control = state.control
    return state.routing is not None or (control is not None and control.by_repo)


def plan_call(
    state: ProxyState,
    principal: Principal,
    attrib: Attribution | None,
    model: str,
    *,
    feature: str | None,
    prompt_tokens: int,
) -> Plan:
    """The call's plan; raises ``ModelNotFound`` / ``ModelNotAllowed`` / ``ControlUnavailable``.

    ``attrib`` may be None only when ``reads_attribution(state)`` is False (and nothing is awaited
    in between: the control state changes only in the event loop).
    """
    found = lookup_model(state, principal, model)
    name, verdict_applied, budget_headers = model, None, None
    control = state.control
    if control is not None:
        if control.should_refuse:
            raise ControlUnavailable(
                "The gateway has not received its key and budget state from the collector yet; retry shortly.",
                code="control_state_unavailable",
            )
        repo = attrib.repo if attrib is not None else None  # None: no verdict or budget to match
        verdict = control.verdict_for(principal, repo, model)
        if verdict is not None:
            if verdict.action == "pause":
                return Plan([found], pause=verdict)
            if verdict.route_to in state.routes:  # a route to a model this proxy does not serve is ignored
                name, verdict_applied = verdict.route_to, "route"
        budget = control.budget_for(principal, repo, model)
        if budget is not None:
            budget_headers = budget.headers
    policy = state.routing
    if policy is None:
        return Plan([state.routes[name]], verdict=verdict_applied, budget_headers=budget_headers)
    rule, names = policy.plan(
        name,
        feature=feature,
        user=principal.user,
        team=principal.team,
        cost_center=principal.cost_center,
        repo=attrib.repo,
        prompt_tokens=prompt_tokens,
    )
    return Plan([state.routes[n] for n in names], rule=rule, verdict=verdict_applied, budget_headers=budget_headers)


class Inbound(Protocol):
    """What a span record reads of the request: an aiohttp ``web.Request`` or an exchange (exchange.py)."""

    headers: Any
    path: str


def new_record(
    request: Inbound,
    state: ProxyState,
    *,
    start_ns: int,
    principal: Principal,
    attrib: Attribution,
    feature: str | None,
    model: str,
    plan: Plan,
    stream: bool,
    body: dict[str, Any],
    raw: bytes,
) -> CallRecord:
    """The span record of an admitted call, as the hot path fills it."""
    route, provider = plan.attempts[0]
    trace_id, parent_id = trace_ids(request.headers)
    rec = CallRecord(
        start_ns=start_ns or time.time_ns(),
        route=request.path,
        trace_id=trace_id,
        span_id=random.getrandbits(64),
        parent_span_id=parent_id,
        principal=principal,
        attribution=attrib,
        feature=feature,
        requested_model=model,
        served_model=route.target,
        provider_id=provider.name,
        provider_system=provider.system,
        server_address=provider.host,
        server_port=provider.port,
        stream=stream,
        params=invocation_params(body),
        verdict=plan.verdict,
        routing_rule=plan.rule,
    )
    if state.capture:
        rec.input_text = redact(raw.decode(errors="replace"))
        rec.output_text = ""
    return rec
