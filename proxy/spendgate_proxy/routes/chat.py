"""The Chat Completions route: the hot path.

Request flow: virtual key -> principal; attribution overlays; model -> provider and upstream model;
body rewritten only when needed (model name, ``stream_options.include_usage``); then the call
engine (``call/serve.py``): upstream bytes streamed straight to the client through ``OpenAITap``,
one ``CallRecord`` handed to the span worker whether the call ends normally, fails, or the client
leaves. Calls that need another provider format go through the canonical model.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from spendgate_proxy.attribution.features import classify
from spendgate_proxy.call.budget_reply import pause_response
from spendgate_proxy.call.model import Call
from spendgate_proxy.call.plan import new_record, plan_call, reads_attribution
from spendgate_proxy.call.serve import serve
from spendgate_proxy.errors import (
    BadRequest,
    ProxyError,
)
from spendgate_proxy.formats import openai_chat
from spendgate_proxy.http.exchange import Exchange
from spendgate_proxy.http.inbound import UnknownVirtualKey, authenticate, authenticate_again, parse_json, prefix_fields
from spendgate_proxy.telemetry.spans import CallRecord

if TYPE_CHECKING:
    from spendgate_proxy.attribution.chain import Attribution


async def chat_core(request: Exchange) -> Any:
    """``POST /v1/chat/completions``: authenticate, map, forward, stream back, record one span.

    Written once for both servers (exchange.py, ``MODEL_ROUTES``). Returns a ``web.Response`` to
    send, or the stream it has already written to the end.
    """
    start_ns = time.time_ns()
    state = request.state
    headers = request.headers
    try:
        try:
            principal = authenticate(state.keys, headers)
        except UnknownVirtualKey as unknown:  # a key created a moment ago still works
            principal = await authenticate_again(state, unknown)
        prefix = prefix_fields(request.attrs)
        raw = await request.read_body(state.max_body)
        body = parse_json(raw)
        requested = body.get("model")
        if not isinstance(requested, str) or not requested:
            raise BadRequest(
                "Missing required parameter: 'model' (a string naming a model; GET /v1/models lists them).",
                code="missing_required_parameter",
                param="model",
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest(
                "Missing required parameter: 'messages' (a non-empty array).",
                code="missing_required_parameter",
                param="messages",
            )
        # "acme-api/gpt-4.1" is model gpt-4.1 charged to repo acme-api: the base model is what gets
        # looked up, routed, priced and recorded; the upstream never sees the alias.
        model, alias = state.attribution.split_model(requested)
        # Only budget verdicts and budgets (repo) and routing rules (repo, feature) read the
        # attribution or the feature before the upstream call; without them both are worked out
        # while the upstream computes (``admit`` below), off the time to first byte. Neither can
        # refuse a call, so the order changes no answer.
        attrib: Attribution | None = None
        feature: str | None = None

        def settle() -> tuple[Attribution, str | None]:
            """The call's attribution and feature, worked out on first need (always together)."""
            nonlocal attrib, feature
            if attrib is None:
                attrib = state.attribution.resolve(
                    headers, prefix, principal, now_ns=start_ns, alias_repo=alias, body=body
                )
                feature = classify(body)
            return attrib, feature

        if reads_attribution(state):
            settle()
        # Model lookup, budget verdicts and routing: the same plan every route uses (call/plan.py).
        plan = plan_call(state, principal, attrib, model, feature=feature, prompt_tokens=len(raw) // 4)
    except ProxyError as exc:
        return exc.response()

    stream = body.get("stream") is True
    if plan.pause is not None:
        # Refused before any provider is called; calls already in flight finish normally.
        return pause_response(plan.pause, form=state.pause_form, model=requested, stream=stream)
    stream_options = body.get("stream_options")
    wants_usage = stream and isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    changed = False
    if stream and not wants_usage:
        # Always ask for usage: it is the only exact record of what the provider bills.
        extra = stream_options if isinstance(stream_options, dict) else {}
        body["stream_options"] = {**extra, "include_usage": True}
        changed = True
    attempts = plan.attempts
    if state.translating and any(u.format != "openai" for _, u in attempts):
        # Another provider format somewhere in the chain: every attempt goes through the canonical
        # model (an OpenAI target in it too), so the body is parsed now.
        attrib_now, feature_now = settle()
        req = openai_chat.parse_request(body)
        rec = new_record(
            request,
            state,
            start_ns=start_ns,
            principal=principal,
            attrib=attrib_now,
            feature=feature_now,
            model=model,
            plan=plan,
            stream=req.stream,
            body=body,
            raw=raw,
        )
        call = Call("openai", req, body, attempts, rec, wants_usage=req.stream and wants_usage)
        return await serve(request, state, call)

    def make_record() -> CallRecord:
        """The span record (with the attribution and feature when nothing needed them earlier):
        built right after the request is written, or when the call ends before that."""
        attrib_now, feature_now = settle()
        return new_record(
            request,
            state,
            start_ns=start_ns,
            principal=principal,
            attrib=attrib_now,
            feature=feature_now,
            model=model,
            plan=plan,
            stream=stream,
            body=body,
            raw=raw,
        )

    call = Call(
        "openai",
        None,
        body,
        attempts,
        None,
        wants_usage=wants_usage,
        budget_headers=plan.budget_headers,
        raw=raw,
        changed=changed,
        make_record=make_record,
    )
    return await serve(request, state, call)
