"""Admitting a call: the one preamble of every model route (Chat Completions, Cursor, Messages).

:func:`admit` runs, in order: authenticate the virtual key (a key created a moment ago is looked up
again, ``authenticate_again``) → the path prefix's attribution fields → read the body → parse it
with the route's parser → split a ``repo/model`` alias off the model → attribution and feature →
the plan (``plan.py``: model lookup, budget verdicts, routing) → a budget pause. Anything the
gateway refuses is answered in the route's format; otherwise the route gets an :class:`Admission`
to build its :class:`~spendgate_proxy.call.model.Call` from.

**Lazy attribution** (the Chat Completions hot path, ``lazy=True``): only budget verdicts and
budgets (repo) and routing rules (repo, feature) read the attribution or the feature before the
upstream call. Without them both are worked out when the span record is built, right after the
request is written (``Admission.record``, the ``sent=`` callback), so off the time to first byte.
Neither can refuse a call, so the order changes no answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spendgate_proxy.attribution.features import classify
from spendgate_proxy.call.plan import Plan, new_record, plan_call, reads_attribution
from spendgate_proxy.errors import ProxyError
from spendgate_proxy.formats.canonical import Message, TextPart, ToolCallPart, ToolResultPart
from spendgate_proxy.http.inbound import UnknownVirtualKey, authenticate, authenticate_again, parse_json, prefix_fields

if TYPE_CHECKING:
    from aiohttp import web

    from spendgate_proxy.attribution.chain import Attribution
    from spendgate_proxy.formats.canonical import ChatRequest
    from spendgate_proxy.http.exchange import Exchange
    from spendgate_proxy.keys import Principal
    from spendgate_proxy.state import ProxyState
    from spendgate_proxy.telemetry.spans import CallRecord

Parser = Callable[[dict[str, Any]], "ChatRequest | None"]
"""The route's parser: the parsed body → its canonical request (None: the body stays as sent, the
hot path); raises ``BadRequest`` naming what is wrong."""
Pause = Callable[..., "web.Response"]
"""A budget pause in the route's form: ``pause(verdict, model=..., stream=...)``."""


_NO_PLAN = Plan(attempts=[])
"""The plan of a call being admitted, until ``plan_call`` made its own."""


def _openai_error(exc: ProxyError) -> web.Response:
    return exc.response()


@dataclass(slots=True)
class Admission:
    """An admitted call: who, what, and the plan; the attribution may still be open (lazy)."""

    request: Exchange
    state: ProxyState
    start_ns: int
    principal: Principal
    prefix: Any
    raw: bytes
    body: dict[str, Any]
    req: ChatRequest | None
    requested: str
    """The model as the client named it (a ``repo/model`` alias included)."""
    model: str
    """The base model: looked up, routed, priced and recorded."""
    alias: str | None
    plan: Plan
    attrib: Attribution | None = None
    feature: str | None = None

    def settle(self) -> tuple[Attribution, str | None]:
        """The call's attribution and feature, worked out on first need (always together)."""
        attrib = self.attrib
        if attrib is None:
            body = self.body
            attrib = self.attrib = self.state.attribution.resolve(
                self.request.headers,
                self.prefix,
                self.principal,
                now_ns=self.start_ns,
                alias_repo=self.alias,
                body=body,
            )
            self.feature = classify(body if self.req is None else feature_body(self.req))
        return attrib, self.feature

    def record(self, *, stream: bool) -> CallRecord:
        """The span record of the admitted call (settling the attribution)."""
        attrib, feature = self.settle()
        return new_record(
            self.request,
            self.state,
            start_ns=self.start_ns,
            principal=self.principal,
            attrib=attrib,
            feature=feature,
            model=self.model,
            plan=self.plan,
            stream=stream,
            body=self.body,
            raw=self.raw,
        )


async def admit(
    request: Exchange,
    parse: Parser,
    *,
    pause: Pause,
    lazy: bool = False,
    refuse: Callable[[ProxyError], web.Response] = _openai_error,
) -> Admission | web.Response:
    """Admit the call ``request`` carries, or the answer refusing it (``refuse`` for errors, ``pause``
    for a budget pause). ``lazy``: leave the attribution for when the span record is built, unless
    the plan reads it."""
    start_ns = time.time_ns()
    state = request.state
    try:
        try:
            principal = authenticate(state.keys, request.headers)
        except UnknownVirtualKey as unknown:  # a key created a moment ago still works
            principal = await authenticate_again(state, unknown)
        prefix = prefix_fields(request.attrs)
        raw = await request.read_body(state.max_body)
        body = parse_json(raw)
        req = parse(body)
        requested: str = body["model"] if req is None else req.model
        # "acme-api/gpt-4.1" is model gpt-4.1 charged to repo acme-api: the base model is what gets
        # looked up, routed, priced and recorded; the upstream never sees the alias.
        model, alias = state.attribution.split_model(requested)
        admission = Admission(
            request, state, start_ns, principal, prefix, raw, body, req, requested, model, alias, _NO_PLAN
        )
        if not lazy or reads_attribution(state):
            admission.settle()
        # Model lookup, budget verdicts and routing: the same plan every route uses (plan.py).
        admission.plan = plan_call(
            state, principal, admission.attrib, model, feature=admission.feature, prompt_tokens=len(raw) // 4
        )
    except ProxyError as exc:
        return refuse(exc)
    if admission.plan.pause is not None:
        # Refused before any provider is called; calls already in flight finish normally.
        stream = body.get("stream") is True if req is None else req.stream
        return pause(admission.plan.pause, model=requested, stream=stream)
    return admission


def feature_body(req: ChatRequest) -> dict[str, Any]:
    """A small Chat Completions-shaped stand-in for ``features.classify``: the system prompt, the
    first message and everything from the last user turn on (all the classifier reads)."""
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": "\n".join(p.text for p in req.system)})
    last_user = max((i for i, m in enumerate(req.messages) if _is_user_turn(m)), default=len(req.messages))
    picked = req.messages[:1] + req.messages[max(1, last_user) :]
    for m in picked:
        text = " ".join(p.text for p in m.parts if isinstance(p, TextPart))
        if m.parts and all(isinstance(p, ToolResultPart) for p in m.parts):
            messages.append({"role": "tool", "content": text})
        elif m.role == "assistant" and any(isinstance(p, ToolCallPart) for p in m.parts):
            messages.append({"role": "assistant", "content": text, "tool_calls": [{}]})
        else:
            messages.append({"role": m.role, "content": text})
    return {"messages": messages, "tools": len(req.tools)}


def _is_user_turn(m: Message) -> bool:
    return m.role == "user" and not all(isinstance(p, ToolResultPart) for p in m.parts)


__all__ = ["Admission", "Parser", "admit", "feature_body"]
