"""The proxy's HTTP application: routes, the chat-completions hot path, and lifecycle.

``create_app`` wires settings, the key directory and the span worker into an ``aiohttp.web``
application. The chat route is written as one straight function on purpose: it is the hot path,
and every step (auth, parse, map, forward, tap, record) is visible in order.

Request flow: virtual key -> principal; attribution overlays; model -> provider and upstream
model; body rewritten only when needed (model name, ``stream_options.include_usage``); upstream
bytes streamed straight to the client through ``StreamTap``; one ``CallRecord`` handed to the span
worker whether the call ends normally, fails, or the client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web

from spendgate.proxy import estimate
from spendgate.proxy.admission import Plan, new_record, plan_call, reads_attribution
from spendgate.proxy.budget_reply import pause_response
from spendgate.proxy.config import ProxySettings
from spendgate.proxy.control import start_control
from spendgate.proxy.cursor_route import cursor_core
from spendgate.proxy.errors import (
    CORS_HEADERS,
    BadRequest,
    ProxyError,
    error_response,
    sse_error_event,
)
from spendgate.proxy.exchange import Exchange, on_aiohttp
from spendgate.proxy.features import classify
from spendgate.proxy.formats import openai_chat
from spendgate.proxy.hooks_route import cursor_hook
from spendgate.proxy.inbound import UnknownVirtualKey, authenticate, authenticate_again, parse_json, prefix_fields
from spendgate.proxy.key_refresh import KeyRefresh
from spendgate.proxy.keys import KeyDirectory, KeyFileError
from spendgate.proxy.messages_route import count_tokens, messages_core
from spendgate.proxy.providers.http1 import Http1Response
from spendgate.proxy.redact import redact
from spendgate.proxy.routing import RETRYABLE_STATUSES
from spendgate.proxy.spans import CallRecord, SpanExportWorker
from spendgate.proxy.state import SETTINGS, STATE, ProxyState
from spendgate.proxy.stream import StreamTap, Usage, usage_from_openai
from spendgate.proxy.translate import Call, serve

if TYPE_CHECKING:
    from spendgate.proxy.attribution import Attribution
    from spendgate.proxy.keys import Principal

logger = logging.getLogger("spendgate.proxy")


_PASS_HEADERS = ("retry-after", "x-request-id", "openai-processing-ms")
_STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell nginx-style fronts not to buffer the stream
    "Access-Control-Allow-Origin": "*",
}
KEY_RELOAD_INTERVAL_S = 1.0


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
        # Model lookup, budget verdicts and routing: the same plan every route uses (admission.py).
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
        # Another provider format somewhere in the chain: through the canonical model (translate.py).
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


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the configured models this key may use, in OpenAI's list shape."""
    state = request.app[STATE]
    try:
        try:
            principal = authenticate(state.keys, request.headers)
        except UnknownVirtualKey as unknown:  # a key created a moment ago still works
            principal = await authenticate_again(state, unknown)
    except ProxyError as exc:
        return exc.response()
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": route.provider}
        for name, (route, _) in state.routes.items()
        if principal.allows(name)
    ]
    return web.Response(
        body=orjson.dumps({"object": "list", "data": data}),
        content_type="application/json",
        headers={"Access-Control-Allow-Origin": "*"},
    )


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight for any path (Cursor and browser clients may send one)."""
    return web.Response(status=204, headers=CORS_HEADERS)


async def healthz(request: web.Request) -> web.Response:
    """Liveness plus a few counters; no secrets, no principals."""
    state = request.app[STATE]
    body: dict[str, Any] = {"status": "ok", "keys": len(state.keys), "models": len(state.routes)}
    if state.front_counts is not None:
        body["front"] = dict(state.front_counts)
    if state.control_client is not None:
        body["control"] = state.control_client.stats()
    elif state.control is not None:
        body["control"] = state.control.stats()
    if state.key_refresh is not None:
        body["key_rechecks"] = state.key_refresh.stats()
    if state.worker is not None:
        s = state.worker.stats()
        body["spans"] = {
            "queued": s.queued,
            "exported": s.exported,
            "failed_attempts": s.failed_attempts,
            "dropped": s.dropped,
        }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _not_found(request: web.Request) -> web.Response:
    return error_response(
        404,
        f"Unknown route {request.method} {request.path}; this gateway serves /v1/chat/completions, "
        "/v1/models, /v1/messages and /cursor/v1/... (docs/proxy.md).",
        "invalid_request_error",
        code="unknown_route",
    )


async def _reload_keys(refresh: KeyRefresh) -> None:
    """Follow the key file while it owns the key directory: standalone, or before (or without) a
    collector's key directory. A ``stat`` a second; the file is parsed off the loop when it changed."""
    state_keys = refresh.keys
    while True:
        await asyncio.sleep(KEY_RELOAD_INTERVAL_S)
        try:
            if await refresh.reload_file():
                logger.info("reloaded key directory: %d keys", len(state_keys))
        except KeyFileError as exc:
            logger.error("key directory not reloaded, keeping the previous one: %s", exc)


async def _lifecycle(app: web.Application) -> Any:
    state = app[STATE]
    if state.worker is not None:
        state.worker.start()
    if state.control is None:
        state.control_client = await start_control(state.settings, state.keys, hook_windows=state.hook_windows)
        state.control = state.control_client.state
    client = state.control_client
    state.key_refresh = KeyRefresh(state.keys, sync=client.sync_keys if client and client.endpoint else None)
    # The file holds the keys until a collector's key directory arrives (standalone: always); the
    # follower is one stat a second, and does nothing once the directory is the collector's.
    reloader = asyncio.create_task(_reload_keys(state.key_refresh)) if state.keys.path is not None else None
    yield
    if state.control_client is not None:
        await state.control_client.stop()
    if reloader is not None:
        reloader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reloader
    await state.key_refresh.aclose()
    for upstream in state.upstreams.values():
        await upstream.close()
    if state.worker is not None:
        await asyncio.get_running_loop().run_in_executor(None, state.worker.shutdown)


# The POST routes every model call takes, by path after an optional /t/{attrs} prefix: registered
# on aiohttp's router below, and served first by the front (front.py, server.py) on the hot path.
MODEL_ROUTES: dict[str, Callable[[Exchange], Awaitable[Any]]] = {
    "/v1/chat/completions": chat_core,
    "/chat/completions": chat_core,
    "/cursor/v1/chat/completions": cursor_core,
    "/v1/messages": messages_core,
}


def create_app(
    settings: ProxySettings,
    *,
    keys: KeyDirectory | None = None,
    worker: SpanExportWorker | None = None,
) -> web.Application:
    """The proxy application. ``keys`` defaults to the settings' key file; ``worker`` to none (no spans).

    The caller owns nothing else: the app starts the worker and key reloader on startup and closes
    upstream pools, flushes and shuts the worker down on cleanup.
    """
    keys = keys if keys is not None else KeyDirectory(settings.keys_file)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[STATE] = ProxyState(settings, keys, worker)
    model_routes = {path: on_aiohttp(core) for path, core in MODEL_ROUTES.items()}
    for prefix in ("", "/t/{attrs}"):
        for path, handler in model_routes.items():
            app.router.add_post(prefix + path, handler)
        for path in ("/v1/models", "/models", "/cursor/v1/models"):
            app.router.add_get(prefix + path, list_models)
        app.router.add_post(f"{prefix}/v1/messages/count_tokens", count_tokens)
    app.router.add_post("/hooks/cursor", cursor_hook)
    app.router.add_get("/healthz", healthz)
    app.router.add_route("OPTIONS", "/{tail:.*}", preflight)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    app.cleanup_ctx.append(_lifecycle)
    return app
