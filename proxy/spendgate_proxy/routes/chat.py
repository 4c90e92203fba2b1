"""The Chat Completions route: the hot path, written as one straight function on purpose.

Every step (auth, parse, map, forward, tap, record) is visible in order. Request flow: virtual key
-> principal; attribution overlays; model -> provider and upstream model; body rewritten only when
needed (model name, ``stream_options.include_usage``); upstream bytes streamed straight to the
client through ``StreamTap``; one ``CallRecord`` handed to the span worker whether the call ends
normally, fails, or the client leaves. Calls that need another provider format go through the
canonical model (``call/serve.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web

from spendgate_proxy.attribution.features import classify
from spendgate_proxy.call import estimate
from spendgate_proxy.call.budget_reply import pause_response
from spendgate_proxy.call.model import Call
from spendgate_proxy.call.openai_tap import StreamTap, Usage, usage_from_openai
from spendgate_proxy.call.plan import Plan, new_record, plan_call, reads_attribution
from spendgate_proxy.call.routing import RETRYABLE_STATUSES
from spendgate_proxy.call.serve import serve
from spendgate_proxy.errors import (
    BadRequest,
    ProxyError,
    error_response,
    sse_error_event,
)
from spendgate_proxy.formats import openai_chat
from spendgate_proxy.http.exchange import Exchange
from spendgate_proxy.http.inbound import UnknownVirtualKey, authenticate, authenticate_again, parse_json, prefix_fields
from spendgate_proxy.providers.http1 import Http1Response
from spendgate_proxy.state import ProxyState
from spendgate_proxy.telemetry.redact import redact
from spendgate_proxy.telemetry.spans import CallRecord

if TYPE_CHECKING:
    from spendgate_proxy.attribution.chain import Attribution
    from spendgate_proxy.keys import Principal

_PASS_HEADERS = ("retry-after", "x-request-id", "openai-processing-ms")
_STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell nginx-style fronts not to buffer the stream
    "Access-Control-Allow-Origin": "*",
}


def _pass_headers(upstream_headers: Any, content_type: str | None) -> dict[str, str]:
    out = {"Access-Control-Allow-Origin": "*"}
    if content_type:
        out["Content-Type"] = content_type
    for name in _PASS_HEADERS:
        value = upstream_headers.get(name)
        if value is not None:
            out[name] = value
    return out


def _note_json_response(rec: CallRecord, data: bytes) -> None:
    """Usage, id and finish reasons from a non-streamed completion."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    if not isinstance(obj, dict):
        return
    if isinstance(obj.get("usage"), dict):
        rec.usage = usage_from_openai(obj["usage"])
    rec.response_id = obj.get("id")
    rec.response_model = obj.get("model")
    rec.finish_reasons = tuple(
        c["finish_reason"] for c in obj.get("choices") or () if isinstance(c, dict) and c.get("finish_reason")
    )
    if rec.output_text is not None:
        rec.output_text = redact(data.decode(errors="replace"))


def _error_detail(data: bytes) -> str | None:
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
        err = orjson.loads(data).get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or "")[:500]
    return None


def _estimate_usage(rec: CallRecord, body: dict[str, Any], tap: StreamTap | None) -> None:
    """Fill in what the provider will bill when it never said: prompt from the body, completion
    from the streamed text."""
    completion = 0
    if tap is not None:
        text, scale = tap.streamed_text()
        completion = math.ceil(estimate.count_tokens(text) * scale)
    rec.usage = Usage(prompt_tokens=estimate.prompt_tokens(body), completion_tokens=completion)
    rec.usage_estimated = True


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
    budget_headers = plan.budget_headers
    stream_options = body.get("stream_options")
    wants_usage = stream and isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    changed = False
    if stream and not wants_usage:
        # Always ask for usage: it is the only exact record of what the provider bills.
        extra = stream_options if isinstance(stream_options, dict) else {}
        body["stream_options"] = {**extra, "include_usage": True}
        changed = True
    attempts = plan.attempts
    route, upstream = attempts[0]
    if state.translating and any(u.format != "openai" for _, u in attempts):
        # Another provider format somewhere in the chain: through the canonical model (call/serve.py).
        attrib_now, feature_now = settle()
        return await _serve_translated(
            request, state, start_ns, principal, attrib_now, feature_now, raw, body, model, plan, wants_usage
        )
    target = route.target
    if target != requested:
        body["model"] = target
        changed = True
    payload = orjson.dumps(body) if changed else raw

    rec: CallRecord | None = None

    def admit() -> CallRecord:
        """The span record (with the attribution and feature when nothing needed them earlier),
        built once: right after the request is written, or when the call ends before that."""
        nonlocal rec
        if rec is None:
            attrib_now, feature_now = settle()
            rec = new_record(
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
        return rec

    tap: StreamTap | None = None
    resp: Http1Response | None = None
    try:
        last = len(attempts) - 1
        for i, (route, upstream) in enumerate(attempts):
            if i:  # a fallback: the body names the fallback's upstream model
                rec = admit()
                body["model"] = route.target
                payload = orjson.dumps(body)
                rec.served_model, rec.provider_id = route.target, upstream.name
                rec.server_address, rec.server_port = upstream.host, upstream.port
            try:
                resp = await upstream.session.post(upstream.chat_url, data=payload, sent=admit)
            except TimeoutError:
                rec = admit()
                rec.status_code, rec.error_type = 504, "timeout"
                rec.error_message = f"provider {upstream.name} did not answer in time"
                if i < last:
                    rec.note_attempt(route.name, upstream.name, "timeout")
                    continue
                return error_response(
                    504, f"Upstream provider '{upstream.name}' timed out.", "api_error", code="upstream_timeout"
                )
            except aiohttp.ClientError as exc:
                rec = admit()
                rec.status_code, rec.error_type = 502, "upstream_unreachable"
                rec.error_message = f"{type(exc).__name__} reaching provider {upstream.name}"
                if i < last:
                    rec.note_attempt(route.name, upstream.name, "upstream_unreachable")
                    continue
                return error_response(
                    502,
                    f"Upstream provider '{upstream.name}' is unreachable ({type(exc).__name__}).",
                    "api_error",
                    code="upstream_unreachable",
                )
            rec = admit()  # built while the upstream computed: this only hands it over
            if i < last and resp.status in RETRYABLE_STATUSES:
                # Nothing has reached the client yet, so the next target can still take the call.
                policy = state.routing
                waited = policy.cool_down(route.name, resp.headers.get("retry-after")) if policy else 0.0
                rec.note_attempt(route.name, upstream.name, str(resp.status), resp.status, waited)
                resp.release()
                resp = None
                continue
            if i:
                rec.error_type = rec.error_message = None
                rec.note_attempt(route.name, upstream.name, None, resp.status)
            break
        assert resp is not None

        content_type = resp.headers.get("Content-Type", "")
        if resp.status != 200 or not stream or not content_type.startswith("text/event-stream"):
            data = await resp.read()
            rec.ttft_ns = time.time_ns()
            rec.status_code = resp.status
            out_headers = _pass_headers(resp.headers, content_type or None)
            if resp.status == 200:
                _note_json_response(rec, data)
                if budget_headers:
                    out_headers.update(budget_headers)
            else:
                rec.error_type = str(resp.status)
                rec.error_message = _error_detail(data)
            return web.Response(status=resp.status, body=data, headers=out_headers)

        out_headers = dict(_STREAM_HEADERS)
        for name in _PASS_HEADERS:
            value = resp.headers.get(name)
            if value is not None:
                out_headers[name] = value
        if budget_headers:
            out_headers.update(budget_headers)
        # Head and first chunk in one write when that chunk is already here (sse_response.py).
        out = request.stream(out_headers, head_with_first_chunk=resp.buffered)
        await out.prepare(request.request)
        rec.status_code = 200
        tap = StreamTap(strip_usage=not wants_usage)
        feed = tap.feed
        write = out.write
        final = b""
        try:
            async for chunk in resp.content.iter_any():
                if rec.ttft_ns is None:
                    rec.ttft_ns = time.time_ns()
                data = feed(chunk)
                if resp.at_eof:
                    final = data  # the upstream body ended with this read: send it with the end marker
                elif data:
                    await write(data)
                else:
                    out.send_head()  # nothing to forward yet: the head must not wait for it
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
            # The provider broke off mid-stream: headers are gone, so end with an error event.
            rec.error_type = "upstream_stream_error"
            rec.error_message = f"{type(exc).__name__} from provider {upstream.name} mid-stream"
            await write(
                sse_error_event(
                    f"Upstream provider '{upstream.name}' ended the stream unexpectedly.", code="upstream_stream_error"
                )
            )
        else:
            final += tap.flush()
        await out.write_eof(final)
        return out
    except (ConnectionResetError, asyncio.CancelledError):
        # The client went away (aiohttp cancels the handler, or a write finds the socket closed).
        # Closing `resp` below drops the upstream connection, so the provider stops generating.
        rec = admit()
        rec.disconnected = True
        rec.error_type = "client_disconnected"
        raise
    finally:
        rec = admit()  # cancelled before the request went out: the span still records the call
        if resp is not None:
            resp.close()
        if tap is not None:
            tap.finish()
            if tap.finish_reasons:
                rec.finish_reasons = tuple(tap.finish_reasons)
            rec.response_id = tap.response_id
            rec.response_model = tap.response_model
            rec.usage = tap.usage
            if tap.error is not None and rec.error_type is None:
                rec.error_type = str(tap.error.get("code") or tap.error.get("type") or "stream_error")
                rec.error_message = str(tap.error.get("message") or "")[:500]
            if rec.output_text is not None:
                rec.output_text = redact(tap.streamed_text()[0])
        if rec.usage is None and rec.status_code in (0, 200) and (rec.ttft_ns is not None or rec.disconnected):
            _estimate_usage(rec, body, tap)
        rec.end_ns = time.time_ns()
        if state.worker is not None:
            state.worker.record(rec)


async def _serve_translated(
    request: Exchange,
    state: ProxyState,
    start_ns: int,
    principal: Principal,
    attrib: Attribution,
    feature: str,
    raw: bytes,
    body: dict[str, Any],
    model: str,
    plan: Plan,
    wants_usage: bool,
) -> Any:
    """A Chat Completions call that a non-OpenAI provider may serve: parse, then ``translate.serve``.

    ``body`` may already ask for usage (the hot path adds it); ``wants_usage`` is what the client asked.
    ``model`` is the base model (a ``repo/model`` alias split off); ``body`` still names what the client sent.
    """
    req = openai_chat.parse_request(body)
    rec = new_record(
        request,
        state,
        start_ns=start_ns,
        principal=principal,
        attrib=attrib,
        feature=feature,
        model=model,
        plan=plan,
        stream=req.stream,
        body=body,
        raw=raw,
    )
    call = Call("openai", req, body, plan.attempts, rec, wants_usage=req.stream and wants_usage)
    return await serve(request, state, call)
