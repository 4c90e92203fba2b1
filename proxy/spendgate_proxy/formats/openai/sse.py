"""Chat Completions SSE ↔ canonical stream events: the writer and the incremental parser."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from spendgate_proxy.formats._values import list_or_empty, mapping_or_empty
from spendgate_proxy.formats.canonical import (
    Finish,
    FinishReason,
    StreamError,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageEvent,
)
from spendgate_proxy.formats.errors import openai_error
from spendgate_proxy.formats.openai.response import finish_reason_from_openai, usage_from_openai, usage_to_openai

# ---------------------------------------------------------------------------------------------
# Streaming: canonical events → Chat Completions SSE


class ChatCompletionsSSEWriter:
    """Canonical stream events → Chat Completions SSE bytes, the way Cursor and the SDK read them.

    One writer per response. :meth:`write` returns the bytes for one event (possibly ``b""``);
    :meth:`close` returns the tail: a finish chunk if none was written, the usage chunk if the
    client asked (``include_usage``), and ``data: [DONE]``. After a :class:`StreamError` only
    ``[DONE]`` follows. Usage is always recorded in :attr:`usage` (the last one seen), for the
    span, even when the client does not see it.

    The first chunk carries ``role: "assistant"``; tool calls open with ``index``, ``id``,
    ``type`` and ``function.name`` (and empty ``arguments``), then send argument fragments. The
    usage chunk has ``choices: []`` and is written once, at :meth:`close`, after the finish
    chunk as OpenAI sends it: providers report usage before the stop reason (Anthropic) or on
    every chunk (vLLM's continuous usage), and a client must see exactly one. ``model``, when
    given, replaces the provider's model name in every chunk (e.g. with the id Cursor asked for).
    """

    def __init__(
        self,
        *,
        include_usage: bool = False,
        model: str | None = None,
        reasoning_content: bool = True,
        created: int | None = None,
    ) -> None:
        self.include_usage = include_usage
        self.model_override = model
        self.reasoning_content = reasoning_content
        self._created = created
        self._head = b""
        self._envelope = b""
        self._started = False
        self._finished = False
        self._errored = False
        self._closed = False
        self._tool_calls = 0
        self.usage: Usage | None = None
        self.finish_reason: FinishReason | None = None

    def _start(self, id_: str, model: str, created: int | None) -> bytes:
        self._started = True
        created = created if created is not None else self._created
        if created is None:
            created = int(time.time())
        model = self.model_override or model
        # Pre-encode the envelope once: each chunk is then one small dumps() of its delta.
        self._envelope = (
            b'{"id":'
            + orjson.dumps(id_)
            + b',"object":"chat.completion.chunk","created":'
            + str(created).encode()
            + b',"model":'
            + orjson.dumps(model)
        )
        self._head = b"data: " + self._envelope + b',"choices":[{"index":0,"delta":'
        return self._chunk({"role": "assistant", "content": ""})

    def _chunk(self, delta: Mapping[str, Any]) -> bytes:
        return self._head + orjson.dumps(delta) + b',"logprobs":null,"finish_reason":null}]}\n\n'

    def _ensure_started(self) -> bytes:
        return b"" if self._started else self._start("chatcmpl-spendgate", "", None)

    def _usage_chunk(self, usage: Usage) -> bytes:
        return b"data: " + self._envelope + b',"choices":[],"usage":' + orjson.dumps(usage_to_openai(usage)) + b"}\n\n"

    def _finish_chunk(self, reason: FinishReason) -> bytes:
        self._finished = True
        self.finish_reason = reason
        return self._head + b'{},"logprobs":null,"finish_reason":' + orjson.dumps(reason) + b"}]}\n\n"

    def write(self, event: StreamEvent) -> bytes:
        """The SSE bytes for one event (``b""`` when it has nothing to show the client)."""
        if self._closed or self._errored:
            return b""
        if isinstance(event, StreamStart):
            return b"" if self._started else self._start(event.id, event.model, event.created)
        out = self._ensure_started()
        if isinstance(event, TextDelta):
            if event.text:
                out += self._chunk({"content": event.text})
        elif isinstance(event, ToolCallStart):
            self._tool_calls += 1
            call = {"index": event.index, "id": event.id, "type": "function"}
            out += self._chunk({"tool_calls": [{**call, "function": {"name": event.name, "arguments": ""}}]})
        elif isinstance(event, ToolCallDelta):
            if event.arguments_fragment:
                fragment = {"index": event.index, "function": {"arguments": event.arguments_fragment}}
                out += self._chunk({"tool_calls": [fragment]})
        elif isinstance(event, ThinkingDelta):
            # De-facto field (DeepSeek, vLLM, OpenRouter); signatures have no place in Chat Completions.
            if self.reasoning_content and event.text and not event.redacted:
                out += self._chunk({"reasoning_content": event.text})
        elif isinstance(event, Finish):
            if not self._finished:
                out += self._finish_chunk(event.reason)
        elif isinstance(event, UsageEvent):
            self.usage = event.usage
        elif isinstance(event, StreamError):
            self._errored = True
            error = openai_error(event.message, event.type, event.code)
            out += b"data: " + orjson.dumps({"error": error}) + b"\n\n"
        return out

    def close(self) -> bytes:
        """The end of the stream: any missing finish, the usage chunk if asked for, then ``[DONE]``.

        A stream that ended without a finish reason (some compatible servers omit it) gets one:
        ``tool_calls`` when tools were called, else ``stop``, because Cursor waits for it.
        """
        if self._closed:
            return b""
        self._closed = True
        out = b""
        if not self._errored:
            out += self._ensure_started()
            if not self._finished:
                out += self._finish_chunk("tool_calls" if self._tool_calls else "stop")
            if self.include_usage and self.usage is not None:
                out += self._usage_chunk(self.usage)
        return out + b"data: [DONE]\n\n"

    def write_all(self, events: Iterable[StreamEvent]) -> bytes:
        """Every event and the tail, joined: for tests and non-incremental callers."""
        return b"".join(self.write(e) for e in events) + self.close()


# ---------------------------------------------------------------------------------------------
# Streaming: Chat Completions SSE → canonical events


class ChatCompletionsSSEParser:
    """Chat Completions SSE bytes, cut anywhere, → canonical stream events.

    :meth:`feed` takes whatever bytes arrived and returns the events completed by them;
    :meth:`close` flushes a final event that lacked its blank line. Tool calls are renumbered
    0, 1, ... in order of appearance (some servers start at 1 or reuse positions), and a call is
    opened once even when a server repeats its id and name on every fragment. ``data: {"error":
    ...}`` becomes a :class:`StreamError`. :attr:`done` turns true at ``[DONE]``.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False
        self._finished = False
        self._calls: dict[int | str, int] = {}  # upstream index (or stand-in key) → canonical index
        self._ids: dict[str, int | str] = {}  # call id → key in _calls
        self.done = False

    def feed(self, data: bytes) -> list[StreamEvent]:
        if self.done:
            return []
        buffer = self._buffer + data
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[StreamEvent] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            self._event(buffer[start:end], events)
            start = end + 2
            if self.done:
                break
        self._buffer = b"" if self.done else buffer[start:]
        return events

    def close(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._buffer.strip() and not self.done:
            self._event(self._buffer, events)
        self._buffer = b""
        return events

    def _event(self, raw: bytes, events: list[StreamEvent]) -> None:
        lines = [line[5:].lstrip(b" ") for line in raw.split(b"\n") if line.startswith(b"data:")]
        if not lines:
            return  # a comment (": keep-alive") or an event without data
        payload = b"\n".join(lines).strip()
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return  # a server's stray non-JSON line; the stream may still be fine
        if not isinstance(chunk, dict):
            return
        self.chunk_to_events(chunk, events)

    def chunk_to_events(self, chunk: Mapping[str, Any], events: list[StreamEvent]) -> None:
        """One parsed ``chat.completion.chunk`` → events (appended to ``events``)."""
        error = chunk.get("error")
        if isinstance(error, Mapping):
            events.append(
                StreamError(
                    str(error.get("message") or "upstream error"),
                    str(error.get("type") or "server_error"),
                    str(error["code"]) if error.get("code") is not None else None,
                )
            )
            return
        if not self._started:
            self._started = True
            created = chunk.get("created")
            events.append(
                StreamStart(
                    str(chunk.get("id") or ""),
                    str(chunk.get("model") or ""),
                    created if isinstance(created, int) else None,
                )
            )
        for choice in list_or_empty(chunk.get("choices")):
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                self._delta(delta, events)
            reason = finish_reason_from_openai(choice.get("finish_reason"))
            if reason is not None and not self._finished:
                self._finished = True
                events.append(Finish(reason))
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            events.append(UsageEvent(usage_from_openai(usage)))

    def _delta(self, delta: Mapping[str, Any], events: list[StreamEvent]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.append(ThinkingDelta(reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            events.append(TextDelta(content))
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            events.append(TextDelta(refusal))
        for position, call in enumerate(list_or_empty(delta.get("tool_calls"))):
            if isinstance(call, Mapping):
                self._tool_call(call, position, events)

    def _tool_call(self, call: Mapping[str, Any], position: int, events: list[StreamEvent]) -> None:
        function = mapping_or_empty(call.get("function"))
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        key: int | str
        if isinstance(call.get("index"), int):
            key = call["index"]
        elif call_id is not None:
            # No index (some Gemini-compatible servers): the id names the call.
            key = self._ids.get(call_id, f"id:{call_id}")
        elif self._calls:
            key = next(reversed(self._calls))  # an anonymous fragment continues the latest call
        else:
            key = f"position:{position}"
        index = self._calls.get(key)
        if index is None:
            index = len(self._calls)
            self._calls[key] = index
            name = function.get("name")
            call_id = call_id or f"call_{index}"
            self._ids[call_id] = key
            events.append(ToolCallStart(index, call_id, name if isinstance(name, str) else ""))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(ToolCallDelta(index, arguments))


def parse_sse(data: bytes) -> list[StreamEvent]:
    """All events of a complete Chat Completions SSE body (for tests and non-streamed upstreams)."""
    parser = ChatCompletionsSSEParser()
    return parser.feed(data) + parser.close()


# The format interface's names (formats.WireFormat): a fresh parser or writer for one stream.
sse_parser = ChatCompletionsSSEParser
sse_writer = ChatCompletionsSSEWriter

__all__ = ["ChatCompletionsSSEParser", "ChatCompletionsSSEWriter", "parse_sse", "sse_parser", "sse_writer"]
