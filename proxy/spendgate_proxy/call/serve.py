"""Serving a call through the canonical model: when the client's format is not the provider's, or must be fixed first.

The Chat Completions hot path in ``routes/chat.py`` passes bytes straight through to OpenAI-compatible
providers. Everything else comes here as a :class:`Call` (the canonical request, the client's
body, the targets to try) and :func:`serve` answers it in the client's format:

- **Anthropic client, Anthropic provider**: the body is passed through (model renamed) and the
  answer's bytes go back untouched, with :class:`~spendgate_proxy.call.anthropic_tap.AnthropicTap`
  noting usage on the side.
- **Anything else**: the provider renders the canonical request, its stream is parsed into
  canonical events and written back by the client format's writer (``ChatCompletionsSSEWriter``
  or ``AnthropicSSEWriter``), chunk by chunk, never buffered; for Cursor, custom tool calls are
  rewritten on the way (``CustomCallStream``). Errors are translated too: a provider's context
  overflow reaches an OpenAI client as ``context_length_exceeded``.

Fallbacks work as on the hot path (429 / 5xx / timeouts / connection errors, before the first byte
only), and each attempt picks passthrough or translation for its own provider, so a chain may
cross formats. One ``CallRecord`` is recorded however the call ends; token counts come from the
canonical ``Usage`` (input includes cache reads and writes, output includes reasoning).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web

from spendgate_proxy.call.anthropic_tap import AnthropicTap
from spendgate_proxy.call.estimate import CHARS_PER_TOKEN
from spendgate_proxy.call.model import Call, InboundFormat
from spendgate_proxy.call.openai_tap import Usage
from spendgate_proxy.call.routing import RETRYABLE_STATUSES
from spendgate_proxy.formats import anthropic_messages, openai_chat
from spendgate_proxy.formats.canonical import (
    ChatRequest,
    ChatResponse,
    Finish,
    Message,
    StreamError,
    StreamEvent,
    StreamFailed,
    StreamStart,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
    UsageEvent,
    collect_stream,
    finish_reason_from_anthropic,
    response_events,
)
from spendgate_proxy.formats.canonical import Usage as CanonicalUsage
from spendgate_proxy.formats.cursor import CustomCallStream, custom_tool_names, map_stream_error, restore_custom_calls
from spendgate_proxy.telemetry.redact import redact

if TYPE_CHECKING:
    from spendgate_proxy.http.exchange import Exchange, StreamOut
    from spendgate_proxy.providers import Reply
    from spendgate_proxy.state import ProxyState
    from spendgate_proxy.telemetry.spans import CallRecord

STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell nginx-style fronts not to buffer the stream
    "Access-Control-Allow-Origin": "*",
}
_PASS_HEADERS = ("retry-after", "x-request-id", "request-id")
_STREAM_BROKEN = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError)


def to_span_usage(usage: CanonicalUsage) -> Usage:
    """Canonical usage → the span's usage (same totals: prompt includes cache, completion includes reasoning)."""
    return Usage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


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


# ---------------------------------------------------------------------------------------------
# Errors in the client's format


def error_json(inbound: InboundFormat, status: int, openai_body: Mapping[str, Any]) -> tuple[int, bytes]:
    """An error in OpenAI's vocabulary → (status, body) in the client's format."""
    if inbound == "anthropic":
        status, body = anthropic_messages.error_from_openai(status, openai_body)
        return status, orjson.dumps(body)
    return status, orjson.dumps(openai_body)


def error_reply(
    inbound: InboundFormat,
    status: int,
    message: str,
    type_: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A gateway-made error (timeout, unreachable, bad request) in the client's format."""
    openai_body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    status, body = error_json(inbound, status, openai_body)
    out = {"Access-Control-Allow-Origin": "*", **(headers or {})}
    return web.Response(status=status, body=body, content_type="application/json", headers=out)


def _passed_headers(upstream_headers: Any) -> dict[str, str]:
    out = {"Access-Control-Allow-Origin": "*"}
    for name in _PASS_HEADERS:
        value = upstream_headers.get(name)
        if value is not None:
            out[name] = value
    return out


def _ok_headers(call: Call, upstream_headers: Any) -> dict[str, str]:
    """Headers of a successful reply: the provider's passed ones plus the call's budget state."""
    out = _passed_headers(upstream_headers)
    if call.budget_headers:
        out.update(call.budget_headers)
    return out


# ---------------------------------------------------------------------------------------------
# Serving


class _Progress:
    """What the stream said so far, for the span."""

    __slots__ = ("chars", "error", "estimated", "finish", "response_id", "response_model", "text", "usage")

    def __init__(self, capture: bool) -> None:
        self.usage: CanonicalUsage | None = None
        self.finish: list[str] = []
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.error: StreamError | None = None
        self.chars = 0
        self.estimated = False
        self.text: list[str] | None = [] if capture else None

    def note(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta | ThinkingDelta):
            self.chars += len(event.text)
            if self.text is not None:
                self.text.append(event.text)
        elif isinstance(event, ToolCallDelta):
            self.chars += len(event.arguments_fragment)
        elif isinstance(event, UsageEvent):
            self.usage = event.usage
        elif isinstance(event, Finish):
            self.finish.append(event.reason)
        elif isinstance(event, StreamStart):
            self.response_id, self.response_model = event.id or None, event.model or None
        elif isinstance(event, StreamError):
            self.error = event


async def serve(ex: Exchange, state: ProxyState, call: Call) -> Any:
    """Answer ``call`` in its client's format, trying its targets in order; records one span.

    Returns a ``web.Response`` to send, or the stream it has written to the end (exchange.py)."""
    rec = call.rec
    reply: Reply | None = None
    progress = _Progress(rec.output_text is not None)
    tap: AnthropicTap | None = None
    try:
        reply, passthrough = await _send(state, call)
        if isinstance(reply, web.Response):
            return reply
        provider = reply.provider
        rec.status_code = reply.status
        if reply.status != 200:
            data = await reply.read()
            rec.ttft_ns = time.time_ns()
            status, err = provider.error_to_openai(reply.status, data)
            error = err.get("error") if isinstance(err.get("error"), dict) else {}
            rec.error_type = str(error.get("code") or reply.status)
            rec.error_message = str(error.get("message") or "")[:500]
            headers = _passed_headers(reply.headers)
            if passthrough:  # the client speaks the provider's format: its error as it came
                return web.Response(status=reply.status, body=data, content_type="application/json", headers=headers)
            status, body = error_json(call.inbound, status, err)
            return web.Response(status=status, body=body, content_type="application/json", headers=headers)

        if passthrough:
            if call.stream and reply.streaming:
                tap = AnthropicTap()
                return await _pipe(ex, reply, tap, rec, _ok_headers(call, reply.headers))
            data = await reply.read()
            rec.ttft_ns = time.time_ns()
            _note_anthropic_json(rec, data)
            return web.Response(body=data, content_type="application/json", headers=_ok_headers(call, reply.headers))

        if call.stream:
            return await _stream(ex, call, reply, progress)
        # A non-streamed answer (or a stream the client did not ask for, from an odd upstream).
        if reply.streaming:
            events = [e async for batch in reply.events() for e in batch]
            rec.ttft_ns = rec.ttft_ns or time.time_ns()
            resp = _collect(events)
            if resp is None:
                error = next(e for e in events if isinstance(e, StreamError))
                return _stream_error_response(call, error, rec)
        else:
            resp = await reply.response()
            rec.ttft_ns = time.time_ns()
        return _json_answer(call, resp, progress, reply)
    except (ConnectionResetError, asyncio.CancelledError):
        rec.disconnected = True
        rec.error_type = "client_disconnected"
        raise
    finally:
        if reply is not None and not isinstance(reply, web.Response):
            partial = reply.partial_usage if tap is None and progress.usage is None else None
            if partial is not None:
                # Cut short (client gone or provider broke off): the input count is the provider's,
                # the output is estimated from what was streamed.
                output = max(partial.output_tokens, math.ceil(progress.chars / CHARS_PER_TOKEN))
                progress.usage = dataclasses.replace(partial, output_tokens=output)
                progress.estimated = True
            reply.close()
        _finish_record(state, call, progress, tap)


async def _send(state: ProxyState, call: Call) -> tuple[Reply | web.Response, bool]:
    """The first target that answers (or the last one's failure); passthrough or translated per target."""
    rec = call.rec
    policy = state.routing
    last = len(call.attempts) - 1
    for i, (route, provider) in enumerate(call.attempts):
        target = route.target
        passthrough = call.inbound == "anthropic" and provider.format == "anthropic" and not call.cursor
        if i:
            rec.served_model, rec.provider_id, rec.provider_system = target, provider.name, provider.system
            rec.server_address, rec.server_port = provider.host, provider.port
        try:
            if passthrough:
                body = orjson.dumps({**call.body, "model": target})
                reply = await provider.send_raw(body, model=target, stream=call.stream, headers=call.forward_headers)
            else:
                # Always ask for usage: it is the only exact record of what the provider bills.
                reply = await provider.send(dataclasses.replace(call.req, model=target, include_usage=call.stream))
        except TimeoutError:
            rec.status_code, rec.error_type = 504, "timeout"
            rec.error_message = f"provider {provider.name} did not answer in time"
            if i < last:
                rec.note_attempt(route.name, provider.name, "timeout")
                continue
            return error_reply(
                call.inbound,
                504,
                f"Upstream provider '{provider.name}' timed out.",
                "api_error",
                code="upstream_timeout",
            ), False
        except aiohttp.ClientError as exc:
            rec.status_code, rec.error_type = 502, "upstream_unreachable"
            rec.error_message = f"{type(exc).__name__} reaching provider {provider.name}"
            if i < last:
                rec.note_attempt(route.name, provider.name, "upstream_unreachable")
                continue
            return error_reply(
                call.inbound,
                502,
                f"Upstream provider '{provider.name}' is unreachable ({type(exc).__name__}).",
                "api_error",
                code="upstream_unreachable",
            ), False
        if i < last and reply.status in RETRYABLE_STATUSES:
            # Nothing has reached the client yet, so the next target can still take the call.
            waited = policy.cool_down(route.name, reply.headers.get("retry-after")) if policy else 0.0
            rec.note_attempt(route.name, provider.name, str(reply.status), reply.status, waited)
            reply.release()
            continue
        if i:
            rec.error_type = rec.error_message = None
            rec.note_attempt(route.name, provider.name, None, reply.status)
        return reply, passthrough
    raise AssertionError("a call has at least one target")


async def _pipe(ex: Exchange, reply: Reply, tap: AnthropicTap, rec: CallRecord, headers: dict[str, str]) -> StreamOut:
    """Same format both sides: the provider's stream goes out byte for byte."""
    out = ex.stream({**STREAM_HEADERS, **headers}, head_with_first_chunk=False)
    await out.prepare(ex.request)
    feed, write = tap.feed, out.write
    try:
        async for chunk in reply.raw.content.iter_any():
            if rec.ttft_ns is None:
                rec.ttft_ns = time.time_ns()
            feed(chunk)
            await write(chunk)
    except _STREAM_BROKEN as exc:
        rec.error_type = "upstream_stream_error"
        rec.error_message = f"{type(exc).__name__} from provider {reply.provider.name} mid-stream"
        error = StreamError(f"Upstream provider '{reply.provider.name}' ended the stream unexpectedly.")
        await write(anthropic_messages.sse_event("error", anthropic_messages.stream_error_to_anthropic(error)))
    await out.write_eof()
    return out


async def _stream(ex: Exchange, call: Call, reply: Reply, progress: _Progress) -> StreamOut:
    """Provider events → the client's stream format, event by event."""
    rec = call.rec
    writer: openai_chat.ChatCompletionsSSEWriter | anthropic_messages.AnthropicSSEWriter
    if call.inbound == "anthropic":
        writer = anthropic_messages.AnthropicSSEWriter(model=call.req.model)
    else:
        writer = openai_chat.ChatCompletionsSSEWriter(include_usage=call.wants_usage, model=call.req.model)
    rewriter = CustomCallStream(custom_tool_names(call.req), mode=call.custom_mode) if call.cursor else None
    out = ex.stream({**STREAM_HEADERS, **_ok_headers(call, reply.headers)}, head_with_first_chunk=False)
    await out.prepare(ex.request)
    write, note, render = out.write, progress.note, writer.write

    def emit(events: list[StreamEvent]) -> bytes:
        data = b""
        for event in events:
            if isinstance(event, StreamError) and call.inbound == "openai":
                event = map_stream_error(event)
            note(event)
            data += render(event)
        return data

    try:
        if reply.streaming:
            async for events in reply.events():
                if rec.ttft_ns is None:
                    rec.ttft_ns = time.time_ns()
                if rewriter is not None:
                    events = [e for event in events for e in rewriter.process(event)]
                data = emit(events)
                if data:
                    await write(data)
        else:  # the provider answered whole although asked to stream
            events = response_events(await reply.response())
            rec.ttft_ns = time.time_ns()
            if rewriter is not None:
                events = [e for event in events for e in rewriter.process(event)]
            await write(emit(events))
    except _STREAM_BROKEN as exc:
        # The provider broke off mid-stream: headers are gone, so end with an error event.
        rec.error_type = "upstream_stream_error"
        rec.error_message = f"{type(exc).__name__} from provider {reply.provider.name} mid-stream"
        await write(
            emit(
                [
                    StreamError(
                        f"Upstream provider '{reply.provider.name}' ended the stream unexpectedly.",
                        "api_error",
                        "upstream_stream_error",
                    )
                ]
            )
        )
    tail = emit(rewriter.close()) if rewriter is not None else b""
    await write(tail + writer.close())
    await out.write_eof()
    return out


def _collect(events: list[StreamEvent]) -> ChatResponse | None:
    try:
        return collect_stream(events)
    except StreamFailed:
        return None


def _stream_error_response(call: Call, error: StreamError, rec: CallRecord) -> web.Response:
    rec.error_type, rec.error_message = error.code or error.type, error.message[:500]
    return error_reply(call.inbound, 502, error.message, error.type, code=error.code)


def _json_answer(call: Call, resp: ChatResponse, progress: _Progress, reply: Reply) -> web.Response:
    progress.usage = resp.usage
    progress.response_id, progress.response_model = resp.id or None, resp.model or None
    if resp.finish_reason:
        progress.finish.append(resp.finish_reason)
    resp = dataclasses.replace(resp, model=call.req.model)
    if call.cursor:
        resp = restore_custom_calls(resp, custom_tool_names(call.req), mode=call.custom_mode)
    if call.inbound == "anthropic":
        body = anthropic_messages.render_response(resp)
    else:
        body = openai_chat.render_response(resp)
    data = orjson.dumps(body)
    if progress.text is not None:
        progress.text.append(data.decode())
    return web.Response(body=data, content_type="application/json", headers=_ok_headers(call, reply.headers))


def _note_anthropic_json(rec: CallRecord, data: bytes) -> None:
    """Usage, id and stop reason from a passed-through non-streamed Messages answer."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    if not isinstance(obj, dict):
        return
    if isinstance(obj.get("usage"), dict):
        rec.usage = to_span_usage(anthropic_messages.usage_from_anthropic(obj["usage"]))
    rec.response_id, rec.response_model = obj.get("id"), obj.get("model")
    reason = finish_reason_from_anthropic(obj.get("stop_reason") if isinstance(obj.get("stop_reason"), str) else None)
    rec.finish_reasons = (reason,) if reason else ()
    if rec.output_text is not None:
        rec.output_text = redact(data.decode(errors="replace"))


def _finish_record(state: ProxyState, call: Call, progress: _Progress, tap: AnthropicTap | None) -> None:
    rec = call.rec
    if tap is not None:
        tap.finish()
        if tap.usage is not None:
            rec.usage = to_span_usage(tap.usage)
            rec.usage_estimated = tap.estimated
        reason = finish_reason_from_anthropic(tap.stop_reason)
        rec.finish_reasons = (reason,) if reason else ()
        rec.response_id, rec.response_model = tap.response_id, tap.response_model
        if tap.error is not None and rec.error_type is None:
            rec.error_type = str(tap.error.get("type") or "stream_error")
            rec.error_message = str(tap.error.get("message") or "")[:500]
    elif rec.usage is None:
        if progress.usage is not None:
            rec.usage = to_span_usage(progress.usage)
            rec.usage_estimated = progress.estimated
        if progress.finish:
            rec.finish_reasons = tuple(progress.finish)
        rec.response_id = rec.response_id or progress.response_id
        rec.response_model = rec.response_model or progress.response_model
        if progress.error is not None and rec.error_type is None:
            rec.error_type = progress.error.code or progress.error.type
            rec.error_message = progress.error.message[:500]
        if progress.text is not None:
            rec.output_text = redact("".join(progress.text))
    if rec.usage is None and rec.status_code in (0, 200) and (rec.ttft_ns is not None or rec.disconnected):
        # What the provider will bill although it never said: prompt from the request, output
        # from what was streamed.
        rec.usage = Usage(
            prompt_tokens=anthropic_messages.estimate_input_tokens(call.req),
            completion_tokens=math.ceil(progress.chars / CHARS_PER_TOKEN),
        )
        rec.usage_estimated = True
    rec.end_ns = time.time_ns()
    if state.worker is not None:
        state.worker.record(rec)


__all__ = ["STREAM_HEADERS", "error_json", "error_reply", "feature_body", "serve", "to_span_usage"]
