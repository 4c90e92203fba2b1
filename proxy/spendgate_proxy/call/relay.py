"""Relays: the provider's answer back to the client, in the client's format, noting what the span needs.

Two relays behind one shape (``relay(ex, call, reply) -> response or finished stream``):

- :func:`pass_bytes`, when the provider speaks the client's format: the bytes go out as they
  arrive through a :class:`Tap` that notes usage, finish reasons and errors on the side
  (:class:`~spendgate_proxy.call.openai_tap.OpenAITap` for Chat Completions, which may also strip
  the usage event the client did not ask for; :class:`~spendgate_proxy.call.anthropic_tap.AnthropicTap`
  for Messages). On the hot path the response head goes out with the first chunk when it is
  already here, and the last chunk with the end marker (``sse_response.py``).
- :func:`translate_events`, otherwise: the provider's stream is parsed into canonical events and
  written back by the client format's writer (``ChatCompletionsSSEWriter`` or
  ``AnthropicSSEWriter``), chunk by chunk, never buffered; for Cursor, custom tool calls are
  rewritten on the way (``CustomCallStream``). Errors are translated too: a provider's context
  overflow reaches an OpenAI client as ``context_length_exceeded``.

Either way a provider that breaks off mid-stream ends the stream with an error event in the
client's format (the headers are gone by then), and what was seen is left in ``call.seen`` for
``record.finish_record``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import orjson
from aiohttp import web

from spendgate_proxy.call.anthropic_tap import AnthropicTap
from spendgate_proxy.call.attempts import error_json, error_reply
from spendgate_proxy.call.model import Seen
from spendgate_proxy.call.openai_tap import OpenAITap
from spendgate_proxy.call.record import note_answer
from spendgate_proxy.errors import sse_error_event
from spendgate_proxy.formats import anthropic as anthropic_messages
from spendgate_proxy.formats import openai as openai_chat
from spendgate_proxy.formats.canonical import (
    ChatResponse,
    Finish,
    StreamError,
    StreamEvent,
    StreamFailed,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    UsageEvent,
    collect_stream,
    response_events,
)
from spendgate_proxy.formats.cursor import CustomCallStream, custom_tool_names, restore_custom_calls
from spendgate_proxy.formats.errors import map_stream_error
from spendgate_proxy.formats.estimate import CHARS_PER_TOKEN
from spendgate_proxy.providers.http1 import Http1Response
from spendgate_proxy.telemetry.redact import redact

if TYPE_CHECKING:
    from spendgate_proxy.call.model import Call
    from spendgate_proxy.formats.canonical import Usage as CanonicalUsage
    from spendgate_proxy.http.exchange import Exchange, StreamOut
    from spendgate_proxy.providers import Reply
    from spendgate_proxy.telemetry.spans import CallRecord

STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell nginx-style fronts not to buffer the stream
    "Access-Control-Allow-Origin": "*",
}
_PASSED = ("retry-after", "x-request-id", "request-id")
"""Provider headers a client sees (``Retry-After`` above all) on translated and Anthropic answers."""
_STREAM_BROKEN = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError)


class Tap(Seen, Protocol):
    """Watches one passed-through stream: ``feed`` returns the bytes to send on (all of them, or
    whole events less what the client did not ask for), ``flush`` what is left at its end."""

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


# ---------------------------------------------------------------------------------------------
# Passthrough


@dataclass(frozen=True, slots=True)
class _Wire:
    """What passing one format through needs besides the bytes."""

    passed: tuple[str, ...]
    """Provider headers the client sees."""
    whole_type: str | None
    """Content type of a whole (non-streamed) answer; None: the provider's own."""
    tap: Callable[[Call], Tap]
    note_error: Callable[[CallRecord, Reply, bytes], object]
    """Notes a provider error answer (status not 200) on the span."""
    broken: Callable[[str], bytes]
    """The error event that ends a stream the provider broke off."""


def _note_openai_error(rec: CallRecord, reply: Reply, data: bytes) -> None:
    rec.error_type = str(reply.status)
    rec.error_message = None
    try:
        err = orjson.loads(data).get("error")
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return
    if isinstance(err, dict):
        rec.error_message = str(err.get("message") or err.get("code") or "")[:500]


def _note_provider_error(rec: CallRecord, reply: Reply, data: bytes) -> tuple[int, dict[str, Any]]:
    """The provider's error read in OpenAI's vocabulary (noted on the span): (status, body)."""
    status, err = reply.provider.error_to_openai(reply.status, data)
    error = err.get("error") if isinstance(err.get("error"), dict) else {}
    rec.error_type = str(error.get("code") or reply.status)
    rec.error_message = str(error.get("message") or "")[:500]
    return status, err


def _anthropic_broken(message: str) -> bytes:
    return anthropic_messages.sse_event("error", anthropic_messages.stream_error_to_anthropic(StreamError(message)))


_WIRES: dict[str, _Wire] = {
    "openai": _Wire(
        passed=("retry-after", "x-request-id", "openai-processing-ms"),
        whole_type=None,
        tap=lambda call: OpenAITap(strip_usage=not call.wants_usage),
        note_error=_note_openai_error,
        broken=lambda message: sse_error_event(message, code="upstream_stream_error"),
    ),
    "anthropic": _Wire(
        passed=_PASSED,
        whole_type="application/json",
        tap=lambda call: AnthropicTap(),
        note_error=_note_provider_error,
        broken=_anthropic_broken,
    ),
}


def _headers(names: tuple[str, ...], upstream: Any, out: dict[str, str]) -> dict[str, str]:
    """``out`` plus those of the provider's headers named in ``names``."""
    for name in names:
        value = upstream.get(name)
        if value is not None:
            out[name] = value
    return out


async def pass_bytes(ex: Exchange, call: Call, reply: Reply) -> Any:
    """Same format both sides: the provider's answer goes out byte for byte (usage the client did
    not ask for aside). Returns a ``web.Response`` to send, or the stream written to the end."""
    rec = call.record()
    wire = _WIRES[call.inbound]
    status = reply.status
    if status != 200 or not call.stream or not reply.streaming:
        data = await reply.read()
        rec.ttft_ns = time.time_ns()
        rec.status_code = status
        out = {"Access-Control-Allow-Origin": "*"}
        content_type = wire.whole_type or reply.content_type
        if content_type:
            out["Content-Type"] = content_type
        _headers(wire.passed, reply.headers, out)
        if status == 200:
            note_answer(rec, data, call.inbound)
            if call.budget_headers:
                out.update(call.budget_headers)
        else:
            wire.note_error(rec, reply, data)
        return web.Response(status=status, body=data, headers=out)

    headers = _headers(wire.passed, reply.headers, dict(STREAM_HEADERS))
    if call.budget_headers:
        headers.update(call.budget_headers)
    raw = reply.raw
    coalesce = isinstance(raw, Http1Response)
    # Head and first chunk in one write when that chunk is already here (sse_response.py).
    out = ex.stream(headers, head_with_first_chunk=coalesce and raw.buffered)
    await out.prepare(ex.request)
    rec.status_code = 200
    tap = call.seen = wire.tap(call)
    feed = tap.feed
    write = out.write
    final = b""
    try:
        async for chunk in raw.content.iter_any():
            if rec.ttft_ns is None:
                rec.ttft_ns = time.time_ns()
            data = feed(chunk)
            if coalesce and raw.at_eof:
                final = data  # the upstream body ended with this read: send it with the end marker
            elif data:
                await write(data)
            else:
                out.send_head()  # nothing to forward yet: the head must not wait for it
    except _STREAM_BROKEN as exc:
        # The provider broke off mid-stream: headers are gone, so end with an error event.
        name = reply.provider.name
        rec.error_type = "upstream_stream_error"
        rec.error_message = f"{type(exc).__name__} from provider {name} mid-stream"
        await write(wire.broken(f"Upstream provider '{name}' ended the stream unexpectedly."))
    else:
        final += tap.flush()
    await out.write_eof(final)
    return out


# ---------------------------------------------------------------------------------------------
# Translation


class Progress:
    """What a translated stream said so far, for the span."""

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

    def cut_short(self, partial: CanonicalUsage | None) -> None:
        """The stream ended without usage (client gone, provider broke off): the input count is
        the provider's so far, the output is estimated from what was streamed."""
        if partial is not None and self.usage is None:
            output = max(partial.output_tokens, self.output_estimate())
            self.usage = dataclasses.replace(partial, output_tokens=output)
            self.estimated = True

    def fill(self, rec: CallRecord) -> None:
        if rec.usage is not None:  # a whole answer passed through noted it already
            return
        if self.usage is not None:
            rec.usage = self.usage
            rec.usage_estimated = self.estimated
        if self.finish:
            rec.finish_reasons = tuple(self.finish)
        rec.response_id = rec.response_id or self.response_id
        rec.response_model = rec.response_model or self.response_model
        if self.error is not None and rec.error_type is None:
            rec.error_type = self.error.code or self.error.type
            rec.error_message = self.error.message[:500]
        if self.text is not None:
            rec.output_text = redact("".join(self.text))

    def output_estimate(self) -> int:
        return math.ceil(self.chars / CHARS_PER_TOKEN)


async def translate_events(ex: Exchange, call: Call, reply: Reply, progress: Progress) -> Any:
    """The provider's answer → the client's format. Returns a ``web.Response`` or the finished stream."""
    rec = call.record()
    rec.status_code = reply.status
    if reply.status != 200:
        data = await reply.read()
        rec.ttft_ns = time.time_ns()
        status, err = _note_provider_error(rec, reply, data)
        status, body = error_json(call.inbound, status, err)
        headers = _headers(_PASSED, reply.headers, {"Access-Control-Allow-Origin": "*"})
        return web.Response(status=status, body=body, content_type="application/json", headers=headers)
    if call.stream:
        return await _stream(ex, call, reply, progress)
    # A non-streamed answer (or a stream the client did not ask for, from an odd upstream).
    if reply.streaming:
        events = [e async for batch in reply.events() for e in batch]
        rec.ttft_ns = rec.ttft_ns or time.time_ns()
        try:
            resp = collect_stream(events)
        except StreamFailed:
            error = next(e for e in events if isinstance(e, StreamError))
            rec.error_type, rec.error_message = error.code or error.type, error.message[:500]
            return error_reply(call.inbound, 502, error.message, error.type, code=error.code)
    else:
        resp = await reply.response()
        rec.ttft_ns = time.time_ns()
    return _json_answer(call, resp, progress, reply)


def _ok_headers(call: Call, upstream_headers: Any) -> dict[str, str]:
    """Headers of a successful reply: the provider's passed ones plus the call's budget state."""
    out = _headers(_PASSED, upstream_headers, {"Access-Control-Allow-Origin": "*"})
    if call.budget_headers:
        out.update(call.budget_headers)
    return out


async def _stream(ex: Exchange, call: Call, reply: Reply, progress: Progress) -> StreamOut:
    """Provider events → the client's stream format, event by event."""
    rec = call.record()
    req = call.req
    assert req is not None
    writer: openai_chat.ChatCompletionsSSEWriter | anthropic_messages.AnthropicSSEWriter
    if call.inbound == "anthropic":
        writer = anthropic_messages.AnthropicSSEWriter(model=req.model)
    else:
        writer = openai_chat.ChatCompletionsSSEWriter(include_usage=call.wants_usage, model=req.model)
    rewriter = CustomCallStream(custom_tool_names(req), mode=call.custom_mode) if call.cursor else None
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
        name = reply.provider.name
        rec.error_type = "upstream_stream_error"
        rec.error_message = f"{type(exc).__name__} from provider {name} mid-stream"
        message = f"Upstream provider '{name}' ended the stream unexpectedly."
        await write(emit([StreamError(message, "api_error", "upstream_stream_error")]))
    tail = emit(rewriter.close()) if rewriter is not None else b""
    await write(tail + writer.close())
    await out.write_eof()
    return out


def _json_answer(call: Call, resp: ChatResponse, progress: Progress, reply: Reply) -> web.Response:
    req = call.req
    assert req is not None
    progress.usage = resp.usage
    progress.response_id, progress.response_model = resp.id or None, resp.model or None
    if resp.finish_reason:
        progress.finish.append(resp.finish_reason)
    resp = dataclasses.replace(resp, model=req.model)
    if call.cursor:
        resp = restore_custom_calls(resp, custom_tool_names(req), mode=call.custom_mode)
    if call.inbound == "anthropic":
        body = anthropic_messages.render_response(resp)
    else:
        body = openai_chat.render_response(resp)
    data = orjson.dumps(body)
    if progress.text is not None:
        progress.text.append(data.decode())
    return web.Response(body=data, content_type="application/json", headers=_ok_headers(call, reply.headers))


__all__ = ["STREAM_HEADERS", "Progress", "Tap", "pass_bytes", "translate_events"]
