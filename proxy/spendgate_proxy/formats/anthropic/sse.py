"""Anthropic SSE ↔ canonical stream events: the incremental parser and the writer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from spendgate_proxy.formats._values import mapping_or_empty
from spendgate_proxy.formats.anthropic.errors import stream_error_from_anthropic, stream_error_to_anthropic
from spendgate_proxy.formats.anthropic.request import tool_id
from spendgate_proxy.formats.anthropic.response import usage_from_anthropic, usage_to_anthropic
from spendgate_proxy.formats.canonical import (
    Finish,
    StreamError,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageEvent,
    finish_reason_from_anthropic,
    finish_reason_to_anthropic,
)

# ---------------------------------------------------------------------------------------------
# Streaming: Anthropic SSE → canonical events


class AnthropicSSEParser:
    """Anthropic SSE bytes, cut anywhere, → canonical stream events.

    :meth:`feed` takes whatever bytes arrived and returns the events they complete; :meth:`close`
    flushes a final event that lacked its blank line. ``tool_use`` blocks are numbered 0, 1, ...
    as tool calls; a tool call whose input streamed nothing gets ``"{}"`` so that OpenAI clients
    can parse its arguments. ``message_delta`` gives :class:`Finish`, ``message_stop`` the one
    :class:`UsageEvent`, an ``error`` event a :class:`StreamError`; :attr:`done` turns true at
    either end. :attr:`usage` is what is known so far (input tokens arrive first, in
    ``message_start``), for a span when the stream is cut; :attr:`stop_reason` and
    :attr:`stop_sequence` keep Anthropic's own values.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # block index → tool call index
        self._tool_args: dict[int, bool] = {}  # block index → any argument fragment seen
        self._tool_input: dict[int, Any] = {}  # block index → input given whole in content_block_start
        self.done = False
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None

    @property
    def usage(self) -> Usage | None:
        return usage_from_anthropic(self._usage) if self._usage else None

    def feed(self, data: bytes) -> list[StreamEvent]:
        if self.done:
            return []
        buffer = self._buffer + data
        if b"\r" in buffer:
            # A \r\n split across two chunks leaves a lone \r here; joining first keeps it whole.
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[StreamEvent] = []
        start = 0
        while not self.done:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            self._event(buffer[start:end], events)
            start = end + 2
        self._buffer = b"" if self.done else buffer[start:]
        return events

    def close(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._buffer.strip() and not self.done:
            self._event(self._buffer, events)
        self._buffer = b""
        return events

    def _event(self, raw: bytes, events: list[StreamEvent]) -> None:
        name = None
        data: list[bytes] = []
        for line in raw.split(b"\n"):
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
            elif line.startswith(b"event:"):
                name = line[6:].strip().decode("utf-8", "replace")
        if not data:
            return  # a comment or an event without data
        try:
            payload = orjson.loads(b"\n".join(data))
        except orjson.JSONDecodeError:
            return  # a stray non-JSON line; the stream may still be fine
        if isinstance(payload, dict):
            self.payload_to_events(str(payload.get("type") or name), payload, events)

    def payload_to_events(self, kind: str, payload: Mapping[str, Any], events: list[StreamEvent]) -> None:
        """One parsed event (``kind`` = its ``type``) → canonical events (appended to ``events``)."""
        if kind == "content_block_delta":
            self._block_delta(payload, events)
        elif kind == "content_block_start":
            self._block_start(payload, events)
        elif kind == "content_block_stop":
            index = payload.get("index")
            if isinstance(index, int) and index in self._tools and not self._tool_args[index]:
                given = self._tool_input.get(index)
                events.append(ToolCallDelta(self._tools[index], orjson.dumps(given).decode() if given else "{}"))
        elif kind == "message_start":
            message = mapping_or_empty(payload.get("message"))
            if isinstance(message.get("usage"), Mapping):
                self._usage.update(message["usage"])
            events.append(StreamStart(str(message.get("id") or ""), str(message.get("model") or "")))
        elif kind == "message_delta":
            delta = mapping_or_empty(payload.get("delta"))
            usage = payload.get("usage")
            if isinstance(usage, Mapping):
                # Cumulative counts: they replace, and absent ones keep message_start's values.
                self._usage.update({k: v for k, v in usage.items() if v is not None})
            reason = delta.get("stop_reason")
            if isinstance(reason, str):
                self.stop_reason = reason
                stop_sequence = delta.get("stop_sequence")
                self.stop_sequence = stop_sequence if isinstance(stop_sequence, str) else None
                events.append(Finish(finish_reason_from_anthropic(reason) or "stop"))
        elif kind == "message_stop":
            self.done = True
            events.append(UsageEvent(usage_from_anthropic(self._usage)))
        elif kind == "error":
            self.done = True
            error = mapping_or_empty(payload.get("error"))
            events.append(stream_error_from_anthropic(error))
        # ping and event types added later carry nothing the canonical stream needs.

    def _block_start(self, payload: Mapping[str, Any], events: list[StreamEvent]) -> None:
        index, block = payload.get("index"), payload.get("content_block")
        if not isinstance(index, int) or not isinstance(block, Mapping):
            return
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            events.append(TextDelta(str(block["text"])))
        elif kind == "tool_use":
            self._tools[index] = len(self._tools)
            self._tool_args[index] = False
            self._tool_input[index] = block.get("input")
            events.append(ToolCallStart(self._tools[index], str(block.get("id") or ""), str(block.get("name") or "")))
        elif kind == "thinking":
            if block.get("thinking") or block.get("signature"):
                events.append(ThinkingDelta(str(block.get("thinking") or ""), block.get("signature") or None))
        elif kind == "redacted_thinking":
            events.append(ThinkingDelta(str(block.get("data") or ""), redacted=True))

    def _block_delta(self, payload: Mapping[str, Any], events: list[StreamEvent]) -> None:
        index, delta = payload.get("index"), payload.get("delta")
        if not isinstance(delta, Mapping):
            return
        kind = delta.get("type")
        if kind == "text_delta":
            if delta.get("text"):
                events.append(TextDelta(str(delta["text"])))
        elif kind == "input_json_delta":
            fragment = delta.get("partial_json")
            if isinstance(index, int) and index in self._tools and isinstance(fragment, str) and fragment:
                self._tool_args[index] = True
                events.append(ToolCallDelta(self._tools[index], fragment))
        elif kind == "thinking_delta":
            if delta.get("thinking"):
                events.append(ThinkingDelta(str(delta["thinking"])))
        elif kind == "signature_delta" and delta.get("signature"):
            events.append(ThinkingDelta("", str(delta["signature"])))


def parse_sse(data: bytes) -> list[StreamEvent]:
    """All events of a complete Anthropic SSE body (for tests and non-incremental callers)."""
    parser = AnthropicSSEParser()
    return parser.feed(data) + parser.close()


# ---------------------------------------------------------------------------------------------
# Streaming: canonical events → Anthropic SSE


def sse_event(name: str, data: Mapping[str, Any]) -> bytes:
    """One Anthropic SSE event: ``event: NAME``, ``data: JSON``, blank line."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_MESSAGE_STOP = sse_event("message_stop", {"type": "message_stop"})


@dataclass(slots=True)
class _Held:
    """Content held back while a tool block is open: one future block, filled as events arrive."""

    kind: str  # "text" | "thinking" | "redacted" | "tool"
    pieces: list[str] = field(default_factory=list)
    signature: str | None = None
    id: str = ""
    name: str = ""


class AnthropicSSEWriter:
    """Canonical stream events → Anthropic SSE bytes, the way the ``anthropic`` SDK reads them.

    One writer per response. :meth:`write` returns the bytes for one event (possibly ``b""``);
    :meth:`close` ends the message if that has not happened. Blocks open and close strictly one
    at a time, as Anthropic's do: thinking (``thinking_delta``, then ``signature_delta``), text,
    ``tool_use`` (``input_json_delta``). Usage arrives last from most providers, while Anthropic
    reports input tokens first, so ``message_start`` carries ``input_tokens`` (a caller's estimate,
    or 0) and ``message_delta`` the real counts (the SDK takes those). ``message_delta`` waits
    for both the finish reason and the usage, or for :meth:`close`.

    Tool calls: an Anthropic block cannot be reopened, and a provider may still send arguments
    for a call after other content (parallel calls interleaved, text between fragments). So while
    a tool block is open only its own fragments stream live; everything else (text, thinking,
    further calls with their fragments) is held, in order, and written whole at the finish or the
    end. Text and thinking before the first tool call stream live; with OpenAI's usual order (calls
    one after the other) the first call streams live and the others follow at the finish.
    """

    def __init__(self, *, model: str | None = None, input_tokens: int | None = None) -> None:
        self.model_override = model
        self.input_tokens_hint = input_tokens
        self._started = False
        self._ended = False
        self._index = -1  # index of the last block opened
        self._open: str | None = None  # "text" | "thinking" | "signed" (thinking with signature) | "tool"
        self._active_tool: int | None = None
        self._held: list[_Held] = []
        self._held_tools: dict[int, _Held] = {}
        self._tools_seen = 0
        self._reason: str | None = None
        self.usage: Usage | None = None
        self.stop_reason: str | None = None

    # -- pieces ----------------------------------------------------------------------------

    def _start(self, id_: str, model: str) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": id_ or "msg_spendgate",
            "type": "message",
            "role": "assistant",
            "model": self.model_override or model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.input_tokens_hint or 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 0,
            },
        }
        return sse_event("message_start", {"type": "message_start", "message": message})

    def _ensure_started(self) -> bytes:
        return b"" if self._started else self._start("", "")

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        self._active_tool = None
        return sse_event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _open_block(self, kind: str, block: Mapping[str, Any]) -> bytes:
        out = self._close_block()
        self._index += 1
        self._open = kind
        return out + sse_event(
            "content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block}
        )

    def _delta(self, delta: Mapping[str, Any]) -> bytes:
        return sse_event("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})

    def _open_tool(self, index: int, id_: str, name: str) -> bytes:
        self._tools_seen += 1
        out = self._open_block("tool", {"type": "tool_use", "id": tool_id(id_), "name": name, "input": {}})
        self._active_tool = index
        return out

    def _text(self, text: str) -> bytes:
        out = b"" if self._open == "text" else self._open_block("text", {"type": "text", "text": ""})
        return out + self._delta({"type": "text_delta", "text": text})

    def _thinking(self, text: str, signature: str | None) -> bytes:
        out = b""
        if text:
            # A signature ends a thinking block: later thinking is a new block.
            if self._open != "thinking":
                out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta({"type": "thinking_delta", "thinking": text})
        if signature:
            if self._open != "thinking":
                out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta({"type": "signature_delta", "signature": signature})
            self._open = "signed"
        return out

    def _redacted(self, data: str) -> bytes:
        return self._open_block("redacted", {"type": "redacted_thinking", "data": data}) + self._close_block()

    def _hold(self, event: StreamEvent) -> None:
        last = self._held[-1] if self._held else None
        if isinstance(event, TextDelta):
            if last is None or last.kind != "text":
                last = _Held("text")
                self._held.append(last)
            last.pieces.append(event.text)
        elif isinstance(event, ThinkingDelta):
            if event.redacted:
                self._held.append(_Held("redacted", [event.text]))
                return
            if last is None or last.kind != "thinking" or last.signature is not None:
                last = _Held("thinking")
                self._held.append(last)
            last.pieces.append(event.text)
            last.signature = event.signature or last.signature
        elif isinstance(event, ToolCallStart):
            held = _Held("tool", id=event.id, name=event.name)
            self._held.append(held)
            self._held_tools[event.index] = held
        elif isinstance(event, ToolCallDelta) and event.index in self._held_tools:
            self._held_tools[event.index].pieces.append(event.arguments_fragment)

    def _release(self) -> bytes:
        """Close the open block, then write everything held, each held item as one whole block."""
        out = self._close_block()
        for held in self._held:
            joined = "".join(held.pieces)
            if held.kind == "text":
                out += self._text(joined) if joined else b""
            elif held.kind == "thinking":
                out += self._thinking(joined, held.signature)
            elif held.kind == "redacted":
                out += self._redacted(joined)
            else:
                out += self._open_tool(-1, held.id, held.name)
                if joined:
                    out += self._delta({"type": "input_json_delta", "partial_json": joined})
            out += self._close_block()
        self._held.clear()
        self._held_tools.clear()
        return out

    def _end(self) -> bytes:
        self._ended = True
        out = self._release()
        self.stop_reason = self._reason or ("tool_use" if self._tools_seen else "end_turn")
        usage = usage_to_anthropic(self.usage) if self.usage is not None else {"output_tokens": 0}
        delta = {"stop_reason": self.stop_reason, "stop_sequence": None}
        out += sse_event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        return out + _MESSAGE_STOP

    # -- the interface ---------------------------------------------------------------------

    def write(self, event: StreamEvent) -> bytes:
        """The SSE bytes for one event (``b""`` when nothing can be sent yet)."""
        if self._ended:
            return b""
        if isinstance(event, StreamStart):
            return b"" if self._started else self._start(event.id, event.model)
        out = self._ensure_started()
        if isinstance(event, TextDelta | ThinkingDelta | ToolCallStart | ToolCallDelta):
            if isinstance(event, ToolCallDelta) and event.index == self._active_tool:
                if event.arguments_fragment:
                    out += self._delta({"type": "input_json_delta", "partial_json": event.arguments_fragment})
            elif self._active_tool is not None:
                self._hold(event)  # the open tool block may still grow
            elif isinstance(event, TextDelta):
                out += self._text(event.text) if event.text else b""
            elif isinstance(event, ThinkingDelta):
                out += self._redacted(event.text) if event.redacted else self._thinking(event.text, event.signature)
            elif isinstance(event, ToolCallStart):
                out += self._open_tool(event.index, event.id, event.name)
        elif isinstance(event, Finish):
            self._reason = finish_reason_to_anthropic(event.reason)
            out += self._release()
            if self.usage is not None:
                out += self._end()
        elif isinstance(event, UsageEvent):
            self.usage = event.usage
            if self._reason is not None:
                out += self._end()
        elif isinstance(event, StreamError):
            # Anthropic ends a failed stream with an error event alone; the SDK raises on it.
            self._ended = True
            out += sse_event("error", stream_error_to_anthropic(event))
        return out

    def close(self) -> bytes:
        """End the message if it has not ended: held content, ``message_delta`` and ``message_stop``."""
        if self._ended:
            return b""
        return self._ensure_started() + self._end()

    def write_all(self, events: Iterable[StreamEvent]) -> bytes:
        """Every event and the tail, joined: for tests and non-incremental callers."""
        return b"".join(self.write(e) for e in events) + self.close()


# The format interface's names (formats.WireFormat): a fresh parser or writer for one stream.
sse_parser = AnthropicSSEParser
sse_writer = AnthropicSSEWriter

__all__ = ["AnthropicSSEParser", "AnthropicSSEWriter", "parse_sse", "sse_event", "sse_parser", "sse_writer"]
