"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: the Anthropic-compatible door.

Anthropic SDK clients and tools (Claude Code and the like) point their base URL at the gateway and
authenticate with their virtual key as ``x-api-key`` (or ``Authorization: Bearer``). Errors and
budget pauses answer in Anthropic's shapes (``{"type": "error", "error": {type, message}}``).

An Anthropic upstream gets the body as sent (model renamed only; ``cache_control``, ``thinking``
and unknown fields untouched) and its bytes come back untouched; an OpenAI-compatible upstream is
reached through the canonical model (``call/serve.py``).

``count_tokens`` is forwarded to Anthropic upstreams. Other providers have no such endpoint, so the
gateway estimates (``formats.estimate.estimate_input_tokens``: tiktoken when cached, else four
characters a token) and says so in the ``x-spendgate-estimate: true`` header.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson
from aiohttp import web

from spendgate_proxy.call.admit import Admission, admit
from spendgate_proxy.call.attempts import error_reply
from spendgate_proxy.call.budget_reply import pause_response, pause_text
from spendgate_proxy.call.model import Call
from spendgate_proxy.call.plan import lookup_model
from spendgate_proxy.call.serve import serve
from spendgate_proxy.errors import BadRequest, ProxyError
from spendgate_proxy.formats import anthropic as anthropic_messages
from spendgate_proxy.formats.anthropic import AnthropicFormatError
from spendgate_proxy.formats.canonical import ChatRequest, ChatResponse, TextPart, Usage, response_events
from spendgate_proxy.formats.estimate import estimate_input_tokens
from spendgate_proxy.http.exchange import Exchange
from spendgate_proxy.http.inbound import (
    UnknownVirtualKey,
    authenticate,
    authenticate_again,
    path_prefix,
    read_json,
)
from spendgate_proxy.state import STATE

_FORWARD = ("anthropic-beta",)
"""Client headers an Anthropic upstream should see (opt-in features such as interleaved thinking)."""


def _error(exc: ProxyError) -> web.Response:
    return error_reply("anthropic", exc.status, exc.message, exc.type, code=exc.code, param=exc.param)


def _forward_headers(headers: Any) -> dict[str, str] | None:
    out = {name: headers[name] for name in _FORWARD if name in headers}
    return out or None


def _parse(body: dict[str, Any], *, count: bool = False) -> ChatRequest:
    try:
        if count:
            return anthropic_messages.parse_count_tokens_request(body)
        return anthropic_messages.parse_request(body)
    except AnthropicFormatError as exc:
        raise BadRequest(str(exc), param=exc.param) from None


async def messages_core(request: Exchange) -> Any:
    """``POST /v1/messages``: admit, then the call engine (pass through or translate, record one
    span); for either server (exchange.py, ``app.MODEL_ROUTES``)."""
    state = request.state
    # A "repo/model" alias: the base model is admitted and recorded; the upstream gets its own
    # model name (call/attempts.py), and the client's reply echoes what it sent.
    admitted = await admit(request, _parse, pause=partial(pause_messages, form=state.pause_form), refuse=_error)
    if not isinstance(admitted, Admission):
        return admitted
    req = admitted.req
    assert req is not None
    call = Call(
        "anthropic",
        req,
        admitted.body,
        admitted.plan.attempts,
        admitted.record(stream=req.stream),
        forward_headers=_forward_headers(request.headers),
        budget_headers=admitted.plan.budget_headers,
    )
    return await serve(request, state, call)


async def count_tokens(request: web.Request) -> web.Response:
    """``POST /v1/messages/count_tokens``: the provider's count, or an estimate where it has none."""
    state = request.app[STATE]
    try:
        try:
            principal = authenticate(state.keys, request.headers)
        except UnknownVirtualKey as unknown:  # a key created a moment ago still works
            principal = await authenticate_again(state, unknown)
        path_prefix(request)  # a malformed prefix is still a 400
        _, body = await read_json(request, state.max_body)
        req = _parse(body, count=True)
        # Counting tokens is free: no budget verdict or routing rule applies, only the key's models
        # (of the base model, when the name is a "repo/model" alias).
        route, provider = lookup_model(state, principal, state.attribution.split_model(req.model)[0])
    except ProxyError as exc:
        return _error(exc)
    cors = {"Access-Control-Allow-Origin": "*"}
    if provider.format == "anthropic":
        payload = orjson.dumps({**body, "model": route.target})
        try:
            reply = await provider.send_raw(
                payload, model=route.target, endpoint="count_tokens", headers=_forward_headers(request.headers)
            )
        except (TimeoutError, OSError) as exc:
            return error_reply(
                "anthropic",
                502,
                f"Upstream provider '{provider.name}' is unreachable ({type(exc).__name__}).",
                "api_error",
                code="upstream_unreachable",
            )
        try:
            data = await reply.read()
        finally:
            reply.release()
        return web.Response(status=reply.status, body=data, content_type="application/json", headers=cors)
    estimate = estimate_input_tokens(req)
    return web.Response(
        body=orjson.dumps(anthropic_messages.count_tokens_response(estimate)),
        content_type="application/json",
        headers={**cors, "x-spendgate-estimate": "true"},
    )


def pause_messages(verdict: Any, *, form: str, model: str, stream: bool) -> web.Response:
    """A budget pause in Anthropic's shapes: a ``billing_error`` 402, or an assistant message."""
    refusal = pause_response(verdict, form="error", model=model, stream=False)
    headers = {k: v for k, v in refusal.headers.items() if k.lower() != "content-type"}
    if form != "message":
        status, body = anthropic_messages.error_from_openai(refusal.status, orjson.loads(refusal.body))  # type: ignore[arg-type]
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)
    answer = ChatResponse(
        id=f"msg_spendgate_{verdict.budget_id}",
        model=model,
        content=(TextPart(pause_text(verdict)),),
        finish_reason="stop",
        usage=Usage(),
    )
    if not stream:
        body = orjson.dumps(anthropic_messages.render_response(answer))
        return web.Response(body=body, content_type="application/json", headers=headers)
    sse = anthropic_messages.AnthropicSSEWriter().write_all(response_events(answer))
    return web.Response(body=sse, headers={**headers, "Content-Type": "text/event-stream"})
