"""Anthropic SSE ↔ canonical events, read back by the official SDKs on the other side.

Anthropic in, Chat Completions out: the simulated Anthropic upstream's bytes, cut anywhere, go
through :class:`AnthropicSSEParser` and the Chat Completions writer into the ``openai`` SDK.
Chat Completions in, Anthropic out: the OpenAI simulator's bytes go through the Chat Completions
parser and :class:`AnthropicSSEWriter` into ``anthropic``'s ``messages.stream``. Thinking crosses
into Chat Completions as ``reasoning_content`` deltas; its signature cannot (no field for it).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from typing import Any

import anthropic
import httpx2  # the anthropic SDK accepts only httpx2 clients
import openai
import orjson
import pytest

from spendgate_proxy.formats.anthropic import (
    AnthropicSSEParser,
    AnthropicSSEWriter,
    parse_sse,
    usage_to_anthropic,
)
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
)
from spendgate_proxy.formats.openai import ChatCompletionsSSEParser, ChatCompletionsSSEWriter
from spendgate_simulator import anthropic as anthropic_sim
from tests.formats.support import chunked, openai_final, openai_stream, simulated_stream

MODEL = "claude-sonnet-4-6"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}},
}
CLOCK = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
SYSTEM = [{"type": "text", "text": "You review code carefully. " * 30, "cache_control": {"type": "ephemeral"}}]


def anthropic_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 4000,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": "What is the weather in Paris and the time?"}],
        **extra,
    }


def simulated_anthropic(body: dict[str, Any], *, warm_cache: bool = False) -> tuple[bytes, dict[str, Any]]:
    """The simulated Anthropic stream for ``body`` and its final usage (message_start + message_delta).

    ``warm_cache`` sends the body once first, so the stream reports a cache read, not a write.
    """
    cache = anthropic_sim.PromptCache()
    if warm_cache:
        anthropic_sim.build_reply(orjson.dumps(body), cache=cache)
    reply = anthropic_sim.build_reply(orjson.dumps({**body, "stream": True}), cache=cache, chunks=4)
    assert reply.status == 200, reply.body
    sse = b"".join(reply.events)
    usage: dict[str, Any] = {}
    for frame in sse.split(b"\n\n"):
        if frame.startswith(b"event: message_start\n"):
            usage.update(orjson.loads(frame.split(b"data: ", 1)[1])["message"]["usage"])
        elif frame.startswith(b"event: message_delta\n"):
            usage.update(orjson.loads(frame.split(b"data: ", 1)[1])["usage"])
    return sse, usage


def parse_in_pieces(data: bytes, pieces: Iterable[bytes]) -> list[StreamEvent]:
    parser = AnthropicSSEParser()
    events: list[StreamEvent] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    events.extend(parser.close())
    assert parser.done
    return events


def anthropic_client(sse: bytes) -> anthropic.Anthropic:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=sse)

    http_client = httpx2.Client(transport=httpx2.MockTransport(handler))
    return anthropic.Anthropic(api_key="sk-test", base_url="http://gateway.test", http_client=http_client)


def anthropic_final(sse: bytes) -> tuple[Any, list[str]]:
    """The SDK's accumulated message for an SSE body, and the raw event types it saw."""
    seen: list[str] = []
    with anthropic_client(sse).messages.stream(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        for event in stream:
            seen.append(event.type)
        return stream.get_final_message(), seen


# ---------------------------------------------------------------------------------------------
# Anthropic upstream → Chat Completions client


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 5, 17, 64, 10_000])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    sse, _ = simulated_anthropic(
        anthropic_body(tools=[WEATHER, CLOCK], thinking={"type": "enabled", "budget_tokens": 2000})
    )
    assert parse_in_pieces(sse, _pieces(sse, size)) == parse_sse(sse)
    assert parse_in_pieces(sse, chunked(sse)) == parse_sse(sse)


def test_crlf_line_endings_split_between_chunks() -> None:
    sse, _ = simulated_anthropic(anthropic_body())
    crlf = sse.replace(b"\n", b"\r\n")
    assert parse_in_pieces(crlf, _pieces(crlf, 1)) == parse_sse(sse)


def test_anthropic_tools_and_thinking_reach_the_openai_sdk_whole() -> None:
    body = anthropic_body(tools=[WEATHER, CLOCK], thinking={"type": "enabled", "budget_tokens": 2000})
    sse, upstream = simulated_anthropic(body, warm_cache=True)
    message, _ = anthropic_final(sse)  # what an Anthropic client would have seen
    events = parse_in_pieces(sse, _pieces(sse, 1))
    chunks = openai_stream(
        ChatCompletionsSSEWriter(include_usage=True).write_all(events), stream_options={"include_usage": True}
    )

    assert chunks[0].choices[0].delta.role == "assistant"
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    calls: dict[int, list[str]] = {}
    for chunk in chunks:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(call.index, ["", "", ""])
            if call.id:
                entry[0], entry[1] = call.id, call.function.name
            entry[2] += call.function.arguments or ""
    blocks = {b.type: b for b in message.content}
    assert reasoning == blocks["thinking"].thinking
    assert text == blocks["text"].text
    tool_uses = [b for b in message.content if b.type == "tool_use"]
    assert [[b.id, b.name, b.input] for b in tool_uses] == [
        [id_, name, json.loads(arguments)] for id_, name, arguments in (calls[i] for i in sorted(calls))
    ]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]

    usage = chunks[-1].usage
    assert upstream["cache_read_input_tokens"] > 0 and upstream["cache_creation_input_tokens"] == 0
    assert usage.prompt_tokens == (
        upstream["input_tokens"] + upstream["cache_read_input_tokens"] + upstream["cache_creation_input_tokens"]
    )
    assert usage.prompt_tokens_details.cached_tokens == upstream["cache_read_input_tokens"]
    assert usage.completion_tokens == upstream["output_tokens"]
    assert usage.completion_tokens_details.reasoning_tokens == upstream["output_tokens_details"]["thinking_tokens"] > 0


def test_usage_and_stop_reason_from_a_text_answer() -> None:
    sse, upstream = simulated_anthropic(anthropic_body(max_tokens=6))  # cache cold: a write
    chunks = openai_stream(
        ChatCompletionsSSEWriter(include_usage=True).write_all(parse_sse(sse)), stream_options={"include_usage": True}
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == anthropic_final(sse)[0].content[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    usage = chunks[-1].usage
    assert upstream["cache_creation_input_tokens"] > 0
    assert usage.prompt_tokens == (
        upstream["input_tokens"] + upstream["cache_creation_input_tokens"] + upstream["cache_read_input_tokens"]
    )
    assert usage.completion_tokens == upstream["output_tokens"] == 6
    # The cache write is not an OpenAI field; the writer adds OpenRouter's name for it.
    assert getattr(usage.prompt_tokens_details, "cache_write_tokens", None) == upstream["cache_creation_input_tokens"]


def _event(**data: Any) -> bytes:
    return anthropic_sim.sse(data["type"], data)


def test_a_tool_whose_input_streamed_nothing_gets_empty_json_object() -> None:
    # The real API may stream a no-argument call as one empty fragment; json.loads("") would fail.
    tool = {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}
    sse = b"".join(
        [
            _event(type="message_start", message={"id": "msg_1", "model": MODEL, "usage": {"input_tokens": 3}}),
            _event(type="content_block_start", index=0, content_block=tool),
            _event(type="content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": ""}),
            _event(type="content_block_stop", index=0),
            _event(type="message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 4}),
            _event(type="message_stop"),
        ]
    )
    events = parse_sse(sse)
    assert events == [
        StreamStart("msg_1", MODEL),
        ToolCallStart(0, "toolu_1", "get_time"),
        ToolCallDelta(0, "{}"),
        Finish("tool_calls"),
        UsageEvent(Usage(input_tokens=3, output_tokens=4)),
    ]
    final = openai_final(ChatCompletionsSSEWriter().write_all(events))
    assert json.loads(final.choices[0].message.tool_calls[0].function.arguments) == {}


def test_an_anthropic_error_event_fails_the_openai_stream() -> None:
    sse, _ = simulated_anthropic(anthropic_body())
    head = sse.split(b"event: content_block_delta", 2)
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    cut = head[0] + b"event: content_block_delta" + head[1] + anthropic_sim.sse("error", overloaded)
    events = parse_sse(cut)
    assert events[-1] == StreamError("Overloaded", "server_error", "overloaded")
    with pytest.raises(openai.APIError, match="Overloaded"):
        openai_stream(ChatCompletionsSSEWriter().write_all(events))


def test_a_cut_stream_still_knows_its_input_tokens() -> None:
    sse, _ = simulated_anthropic(anthropic_body())
    parser = AnthropicSSEParser()
    events = parser.feed(sse[: sse.index(b"event: message_delta")])
    assert not any(isinstance(e, Finish | UsageEvent) for e in events)
    assert not parser.done
    usage = parser.usage
    assert usage is not None and usage.input_tokens > 0 and usage.cache_write_tokens > 0


# ---------------------------------------------------------------------------------------------
# Chat Completions upstream → Anthropic client

OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}},
    {"type": "function", "function": {"name": "get_time", "parameters": CLOCK["input_schema"]}},
]
OPENAI_USER = [{"role": "user", "content": "What is the weather in Paris and the time?"}]


def openai_upstream(body: dict[str, Any], **kwargs: Any) -> tuple[list[StreamEvent], dict[str, Any]]:
    """Canonical events of the OpenAI simulator's stream (parsed 1 byte at a time) and its last usage chunk."""
    sse = simulated_stream({**body, "stream_options": {"include_usage": True}}, **kwargs)
    parser = ChatCompletionsSSEParser()
    events = [e for piece in _pieces(sse, 1) for e in parser.feed(piece)] + parser.close()
    chunks = [json.loads(frame[6:]) for frame in sse.split(b"\n\n") if frame.startswith(b"data: {")]
    return events, chunks[-1]["usage"]


def test_openai_tool_calls_stream_to_the_anthropic_sdk() -> None:
    events, usage = openai_upstream(
        {"model": "gpt-4.1", "messages": OPENAI_USER, "tools": OPENAI_TOOLS}, cached_ratio=0.5
    )
    message, seen = anthropic_final(AnthropicSSEWriter().write_all(events))

    assert seen[0] == "message_start" and seen[-1] == "message_stop"
    assert [b.type for b in message.content] == ["tool_use", "tool_use"]
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    arguments = [
        "".join(e.arguments_fragment for e in events if isinstance(e, ToolCallDelta) and e.index == s.index)
        for s in starts
    ]
    assert [(b.id, b.name, b.input) for b in message.content] == [
        (s.id, s.name, json.loads(a)) for s, a in zip(starts, arguments, strict=True)
    ]
    assert message.stop_reason == "tool_use"
    assert message.usage.cache_read_input_tokens == usage["prompt_tokens_details"]["cached_tokens"] > 0
    assert message.usage.input_tokens + message.usage.cache_read_input_tokens == usage["prompt_tokens"]
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.output_tokens == usage["completion_tokens"]


@pytest.mark.parametrize(
    ("body", "stop_reason"),
    [
        ({"model": "gpt-4.1", "messages": OPENAI_USER}, "end_turn"),
        ({"model": "gpt-4.1", "messages": OPENAI_USER, "max_tokens": 5}, "max_tokens"),
    ],
)
def test_openai_text_streams_to_the_anthropic_sdk(body: dict[str, Any], stop_reason: str) -> None:
    events, usage = openai_upstream(body)
    message, _ = anthropic_final(AnthropicSSEWriter(input_tokens=123).write_all(events))
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "".join(e.text for e in events if isinstance(e, TextDelta))
    assert message.stop_reason == stop_reason
    # message_start carried the caller's estimate; message_delta's real count replaced it.
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )


def test_reasoning_tokens_become_thinking_tokens() -> None:
    events, usage = openai_upstream({"model": "gpt-5", "messages": OPENAI_USER})
    message, _ = anthropic_final(AnthropicSSEWriter().write_all(events))
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning > 0
    assert message.usage.output_tokens_details.thinking_tokens == reasoning


def test_interleaved_parallel_calls_are_held_until_they_can_be_written_whole() -> None:
    events: list[StreamEvent] = [
        StreamStart("chatcmpl-1", "gpt-4.1"),
        ToolCallStart(0, "call_a", "get_weather"),
        ToolCallStart(1, "call_b", "get_time"),
        ToolCallDelta(0, '{"city":'),
        ToolCallDelta(1, "{"),
        ToolCallDelta(0, ' "Paris"}'),
        ToolCallDelta(1, "}"),
        Finish("tool_calls"),
        UsageEvent(Usage(input_tokens=10, output_tokens=7)),
    ]
    message, _ = anthropic_final(AnthropicSSEWriter().write_all(events))
    assert [(b.id, b.input) for b in message.content] == [("call_a", {"city": "Paris"}), ("call_b", {})]


def test_first_tool_call_streams_live() -> None:
    writer = AnthropicSSEWriter()
    writer.write(StreamStart("chatcmpl-1", "gpt-4.1"))
    assert b"content_block_start" in writer.write(ToolCallStart(0, "call_a", "get_weather"))
    assert b"input_json_delta" in writer.write(ToolCallDelta(0, '{"city":'))
    assert writer.write(ToolCallStart(1, "call_b", "get_time")) == b""  # held: call_a may still grow


def test_thinking_signature_and_redacted_thinking_reach_the_anthropic_sdk() -> None:
    events: list[StreamEvent] = [
        StreamStart("msg_1", MODEL),
        ThinkingDelta("Let me think"),
        ThinkingDelta(" about it."),
        ThinkingDelta("", "sig-123"),
        ThinkingDelta("opaque==", redacted=True),
        TextDelta("Answer."),
        Finish("stop"),
        UsageEvent(
            Usage(input_tokens=50, output_tokens=20, cache_read_tokens=30, cache_write_tokens=10, reasoning_tokens=12)
        ),
    ]
    message, _ = anthropic_final(AnthropicSSEWriter().write_all(events))
    assert [b.type for b in message.content] == ["thinking", "redacted_thinking", "text"]
    assert (message.content[0].thinking, message.content[0].signature) == ("Let me think about it.", "sig-123")
    assert message.content[1].data == "opaque=="
    assert message.stop_reason == "end_turn"
    assert (
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
        message.usage.cache_creation_input_tokens,
    ) == (10, 30, 10)


def test_usage_before_finish_and_a_missing_finish() -> None:
    writer = AnthropicSSEWriter()
    events: list[StreamEvent] = [StreamStart("x", "m"), ToolCallStart(0, "call_a", "get_time"), UsageEvent(Usage(3, 4))]
    message, _ = anthropic_final(writer.write_all(events))
    assert message.stop_reason == "tool_use"  # inferred at close from the tool call
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 4)
    assert writer.stop_reason == "tool_use"


def test_a_stream_error_reaches_the_anthropic_sdk_as_an_error_event() -> None:
    events: list[StreamEvent] = [
        StreamStart("x", "m"),
        TextDelta("partial"),
        StreamError("The server had an error", "server_error", None),
    ]
    sse = AnthropicSSEWriter().write_all(events)
    assert sse.endswith(
        b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"The server had an error"}}\n\n'
    )
    with pytest.raises(anthropic.APIStatusError, match="api_error"):
        anthropic_final(sse)


def test_anthropic_through_canonical_and_back_is_what_the_upstream_sent() -> None:
    body = anthropic_body(tools=[WEATHER, CLOCK], thinking={"type": "enabled", "budget_tokens": 2000})
    sse, _ = simulated_anthropic(body, warm_cache=True)
    direct, _ = anthropic_final(sse)
    relayed, _ = anthropic_final(AnthropicSSEWriter().write_all(parse_in_pieces(sse, _pieces(sse, 3))))
    assert [b.model_dump(exclude={"parsed_output"}) for b in relayed.content] == [
        b.model_dump(exclude={"parsed_output"}) for b in direct.content
    ]
    assert relayed.stop_reason == direct.stop_reason
    for field in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"):
        assert getattr(relayed.usage, field) == getattr(direct.usage, field), field


def test_usage_to_anthropic_never_goes_negative() -> None:
    # A provider whose cache counts exceed its prompt count (seen in the wild) must not yield -1.
    assert usage_to_anthropic(Usage(input_tokens=5, cache_read_tokens=8))["input_tokens"] == 0


def _random_stream(rnd: random.Random) -> tuple[list[StreamEvent], dict[int, str]]:
    """Canonical events in a random but legal order: interleaved text, thinking and tool calls."""
    calls = {i: orjson.dumps({"n": i, "word": "x" * rnd.randint(0, 12)}).decode() for i in range(rnd.randint(0, 4))}
    pending = {i: [args[j : j + 3] for j in range(0, len(args), 3)] for i, args in calls.items()}
    opened: list[int] = []
    events: list[StreamEvent] = [StreamStart("s", "m")]
    while len(opened) < len(calls) or any(pending[i] for i in opened) or rnd.random() < 0.3:
        roll = rnd.random()
        if roll < 0.15:
            events.append(TextDelta(rnd.choice(["a", "b c", " d"])))
        elif roll < 0.25:
            events.append(ThinkingDelta(rnd.choice(["t", "u v"]), rnd.choice([None, None, "sig"])))
        elif roll < 0.5 and len(opened) < len(calls):
            opened.append(len(opened))
            events.append(ToolCallStart(opened[-1], f"call_{opened[-1]}", "tool"))
        elif opened:
            index = rnd.choice(opened)
            if pending[index]:
                events.append(ToolCallDelta(index, pending[index].pop(0)))
    events.append(Finish("tool_calls" if calls else "stop"))
    events.append(UsageEvent(Usage(5, 6)))
    return events, calls


@pytest.mark.parametrize("seed", range(40))
def test_any_legal_event_order_gives_well_formed_blocks_and_whole_tool_inputs(seed: int) -> None:
    events, calls = _random_stream(random.Random(seed))
    sse = AnthropicSSEWriter().write_all(events)
    open_index, last_index = None, -1
    for frame in sse.split(b"\n\n")[:-1]:
        data = orjson.loads(frame.split(b"data: ", 1)[1])
        if data["type"] == "content_block_start":
            assert open_index is None and data["index"] == last_index + 1
            open_index = last_index = data["index"]
        elif data["type"] in ("content_block_delta", "content_block_stop"):
            assert data["index"] == open_index
            open_index = None if data["type"] == "content_block_stop" else open_index
    message, _ = anthropic_final(sse)
    tools = {int(b.id.removeprefix("call_")): b.input for b in message.content if b.type == "tool_use"}
    assert tools == {i: json.loads(args) for i, args in calls.items()}
    assert message.stop_reason == ("tool_use" if calls else "end_turn")
