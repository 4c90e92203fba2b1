"""Chat Completions ↔ canonical: request and response bodies, SSE writer and parser, the openai SDK."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from spendgate_proxy.formats import openai as openai_chat
from spendgate_proxy.formats import responses_shaped
from spendgate_proxy.formats.canonical import (
    ChatRequest,
    ChatResponse,
    Finish,
    ImagePart,
    Message,
    StreamError,
    StreamStart,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoiceTool,
    ToolResultPart,
    Usage,
    UsageEvent,
    collect_stream,
)
from spendgate_proxy.formats.openai import (
    ChatCompletionsSSEParser,
    ChatCompletionsSSEWriter,
    parse_request,
    parse_sse,
    render_request,
)
from spendgate_simulator import SimulatorConfig
from spendgate_simulator import create_app as create_simulator
from tests.formats.support import (
    assert_valid_chat_request,
    chunked,
    openai_completion,
    openai_final,
    openai_stream,
    simulated_stream,
)
from tests.support.aio_server import serve_app

SCHEMA_X = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}
SCHEMA_N = {"type": "object", "properties": {"n": {"type": "integer"}}}


def two_tool_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "do two things"}],
        "tools": [
            {"type": "function", "function": {"name": "alpha", "parameters": SCHEMA_X}},
            {"type": "function", "name": "beta", "parameters": SCHEMA_N},
        ],
        **extra,
    }


# ---------------------------------------------------------------------------------------------
# Requests


def test_parse_accepts_nested_flat_and_custom_tools() -> None:
    req = parse_request(
        {
            "model": "m",
            "messages": [],
            "tools": [
                {"type": "function", "function": {"name": "a", "description": "A", "parameters": SCHEMA_X}},
                {"type": "function", "name": "b", "parameters": SCHEMA_N, "strict": True},
                {"type": "custom", "name": "ApplyPatch", "format": {"type": "text"}},
                {"type": "web_search_preview"},  # no provider could run it: dropped
                {"type": "function", "function": {"description": "nameless"}},
            ],
        }
    )
    assert [(t.name, t.kind) for t in req.tools] == [("a", "function"), ("b", "function"), ("ApplyPatch", "custom")]
    assert req.tools[0].description == "A" and req.tools[1].strict is True
    assert req.tools[1].parameters == SCHEMA_N


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "function": {"name": "a"}}, ToolChoiceTool("a")),
        ({"type": "function", "name": "a"}, ToolChoiceTool("a")),
        ({"type": "custom", "custom": {"name": "ApplyPatch"}}, ToolChoiceTool("ApplyPatch")),
        ({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": []}}, "required"),
        ("any", "required"),
        (None, None),
        ("bogus", None),
    ],
)
def test_parse_tool_choice(raw: Any, expected: Any) -> None:
    assert openai_chat.parse_tool_choice(raw) == expected


def test_parse_messages_roles_and_parts() -> None:
    req = parse_request(
        {
            "model": "o4-mini",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "system",
                    "content": [{"type": "text", "text": "and exact", "cache_control": {"type": "ephemeral"}}],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD", "detail": "low"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "hmm",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "a", "arguments": '{"x":"1"}'}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "done"},
                {"role": "system", "content": "mid-conversation note"},
            ],
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "reasoning_effort": "low",
            "stream": True,
            "stream_options": {"include_usage": True},
            "seed": 7,
            "response_format": {"type": "json_object"},
        }
    )
    assert req.system == (TextPart("be brief"), TextPart("and exact", {"type": "ephemeral"}))
    assert req.messages == (
        Message(
            "user",
            (
                TextPart("look"),
                ImagePart(data="QUJD", media_type="image/png", detail="low"),
                ImagePart(url="https://example.com/a.png"),
            ),
        ),
        Message("assistant", (ThinkingPart("hmm"), ToolCallPart("c1", "a", '{"x":"1"}'))),
        Message("tool", (ToolResultPart("c1", "done"),)),
        Message("system", (TextPart("mid-conversation note"),)),
    )
    assert req.max_tokens == 20  # max_completion_tokens wins: it is the current name
    assert req.reasoning is not None and req.reasoning.effort == "low"
    assert req.stream and req.include_usage
    assert req.extra == {"seed": 7, "response_format": {"type": "json_object"}}
    assert req.source_format == "chat"


def test_chat_round_trip_keeps_the_request() -> None:
    body = {
        "model": "gpt-4.1",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "alpha", "arguments": '{"x": "a"}'}},
                    {"id": "c2", "type": "function", "function": {"name": "beta", "arguments": '{"n":1}'}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "r1"},
            {"role": "tool", "tool_call_id": "c2", "content": "r2"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                ],
            },
        ],
        "tools": [
            {"type": "function", "function": {"name": "alpha", "parameters": SCHEMA_X}},
            {"type": "function", "function": {"name": "beta", "parameters": SCHEMA_N}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "alpha"}},
        "parallel_tool_calls": False,
        "max_tokens": 100,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["END"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u1",
        "metadata": {"k": "v"},
        "seed": 3,
    }
    rendered = render_request(parse_request(body))
    assert rendered == body
    assert_valid_chat_request(rendered)


def test_render_normalises_flat_tools_and_omits_parallel_without_tools() -> None:
    rendered = render_request(parse_request(two_tool_body()))
    assert [t["function"]["name"] for t in rendered["tools"]] == ["alpha", "beta"]
    assert all(set(t) == {"type", "function"} for t in rendered["tools"])
    no_tools = render_request(ChatRequest(model="m", parallel_tool_calls=True))
    assert "parallel_tool_calls" not in no_tools


@pytest.mark.parametrize(
    ("model", "param"),
    [("gpt-4.1", "max_tokens"), ("o4-mini", "max_completion_tokens"), ("acme/gpt-5", "max_completion_tokens")],
)
def test_render_max_tokens_field_follows_the_model(model: str, param: str) -> None:
    rendered = render_request(ChatRequest(model=model, max_tokens=50))
    assert rendered[param] == 50
    assert render_request(ChatRequest(model=model, max_tokens=50), max_tokens_param="max_tokens")["max_tokens"] == 50


def test_render_anthropic_style_turns_as_tool_messages_first() -> None:
    # Anthropic puts tool results (which may hold images) in a user turn, next to new text.
    req = ChatRequest(
        model="m",
        system=(TextPart("a", {"type": "ephemeral"}), TextPart("b")),
        messages=(
            Message("user", (TextPart("go"),)),
            Message("assistant", (ThinkingPart("t", "sig"), TextPart("ok"), ToolCallPart("t1", "alpha", '{"x":"1"}'))),
            Message(
                "user",
                (
                    ToolResultPart(
                        "t1", (TextPart("shot:"), ImagePart(data="QUJD", media_type="image/jpeg")), is_error=True
                    ),
                    TextPart("next"),
                ),
            ),
        ),
        tools=(Tool("alpha", parameters=SCHEMA_X),),
        source_format="anthropic",
        extra={"top_k": 5},
    )
    rendered = render_request(req)
    assert rendered["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": "ok",
            "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "alpha", "arguments": '{"x":"1"}'}}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "shot:"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
                {"type": "text", "text": "next"},
            ],
        },
    ]
    assert "top_k" not in rendered  # another format's extras are not Chat Completions fields
    assert_valid_chat_request(rendered)
    # cache_control is kept on request for upstreams that forward it to Claude.
    kept = render_request(req, cache_control=True)["messages"][0]["content"][0]
    assert kept == {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}


def test_rendered_request_is_answered_by_the_simulator() -> None:
    rendered = render_request(parse_request(two_tool_body(stream=True)))
    events = parse_sse(simulated_stream(rendered))
    assert [e.name for e in events if isinstance(e, ToolCallStart)] == ["alpha", "beta"]


# ---------------------------------------------------------------------------------------------
# Responses (non-streamed)


def test_response_round_trip_through_the_sdk() -> None:
    obj = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4.1",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Calling.",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "alpha", "arguments": '{"x":"y"}'}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "total_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 60},
            "completion_tokens_details": {"reasoning_tokens": 5},
        },
    }
    resp = openai_chat.parse_response(obj)
    assert resp.content == (TextPart("Calling."), ToolCallPart("c1", "alpha", '{"x":"y"}'))
    assert resp.usage == Usage(100, 20, cache_read_tokens=60, reasoning_tokens=5)
    completion = openai_completion(openai_chat.render_response(resp))
    assert completion.choices[0].finish_reason == "tool_calls"
    assert json.loads(completion.choices[0].message.tool_calls[0].function.arguments) == {"x": "y"}
    assert (completion.usage.prompt_tokens, completion.usage.prompt_tokens_details.cached_tokens) == (100, 60)


def test_render_response_shows_thinking_and_cache_writes() -> None:
    resp = ChatResponse(
        id="r", model="m", content=(ThinkingPart("why"), TextPart("because")), usage=Usage(10, 2, 4, 3), created=9
    )
    body = openai_chat.render_response(resp)
    message = body["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"], body["choices"][0]["finish_reason"]) == (
        "because",
        "why",
        "stop",
    )
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 4, "cache_write_tokens": 3}


# ---------------------------------------------------------------------------------------------
# SSE: parse the simulator, write, let the SDK read it


@pytest.mark.parametrize("include_usage", [True, False])
def test_parallel_tool_calls_round_trip_through_the_sdk(include_usage: bool) -> None:
    body = two_tool_body(stream=True, stream_options={"include_usage": True})
    parser = ChatCompletionsSSEParser()
    events = [e for piece in chunked(simulated_stream(body)) for e in parser.feed(piece)] + parser.close()
    assert parser.done
    sse = ChatCompletionsSSEWriter(include_usage=include_usage).write_all(events)

    chunks = openai_stream(sse)
    assert chunks[0].object == "chat.completion.chunk" and chunks[0].choices[0].delta.role == "assistant"
    opened = [
        (c.index, c.id, c.type, c.function.name) for ch in chunks for d in ch.choices for c in d.delta.tool_calls or ()
    ]
    opened = [o for o in opened if o[1]]
    assert [(i, t, n) for i, _, t, n in opened] == [(0, "function", "alpha"), (1, "function", "beta")]
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason] == [
        "tool_calls"
    ]
    usage_chunks = [ch for ch in chunks if ch.usage is not None]
    assert len(usage_chunks) == (1 if include_usage else 0)
    if include_usage:
        assert usage_chunks[0].choices == [] and usage_chunks[0].usage.prompt_tokens > 0

    final = openai_final(sse)
    calls = final.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["alpha", "beta"]
    assert [sorted(json.loads(c.function.arguments)) for c in calls] == [["x"], ["n"]]


def test_text_stream_round_trip_keeps_every_byte_of_text() -> None:
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "tell me"}], "stream": True}
    upstream = simulated_stream({**body, "stream_options": {"include_usage": True}})
    events = parse_sse(upstream)
    expected_text = "".join(e.text for e in events if isinstance(e, TextDelta))
    final = openai_final(ChatCompletionsSSEWriter(include_usage=True).write_all(events))
    assert final.choices[0].message.content == expected_text and expected_text.endswith(".")
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.completion_tokens == len(expected_text.split())


def test_stream_from_a_simulator_over_http() -> None:
    body = two_tool_body(stream=True, stream_options={"include_usage": True})
    with serve_app(lambda: create_simulator(SimulatorConfig(chunks=5, chunk_delay_ms=1))) as sim:
        parser = ChatCompletionsSSEParser()
        events = []
        with httpx.stream("POST", f"{sim.url}/v1/chat/completions", json=body, timeout=10) as response:
            for piece in response.iter_raw():
                events += parser.feed(piece)
        events += parser.close()
    resp = collect_stream(events)
    assert [json.loads(p.arguments_json) for p in resp.content if isinstance(p, ToolCallPart)][1] == {"n": 1}
    assert resp.finish_reason == "tool_calls" and resp.usage is not None


def test_writer_holds_usage_until_finish_and_synthesises_missing_finish() -> None:
    writer = ChatCompletionsSSEWriter(include_usage=True, created=1)
    out = writer.write(StreamStart("id", "m"))
    out += writer.write(UsageEvent(Usage(5, 1)))  # Anthropic-style: usage before the stop reason
    out += writer.write(TextDelta("x"))
    out += writer.close()  # no Finish at all
    payloads = [json.loads(line[6:]) for line in out.decode().split("\n\n") if line.startswith("data: {")]
    assert [p["choices"][0]["finish_reason"] if p["choices"] else "usage" for p in payloads] == [
        None,
        None,
        "stop",
        "usage",
    ]
    assert out.endswith(b"data: [DONE]\n\n")
    assert (writer.finish_reason, writer.usage) == ("stop", Usage(5, 1))


def test_writer_error_event_makes_the_sdk_raise() -> None:
    writer = ChatCompletionsSSEWriter()
    sse = writer.write_all(
        [StreamStart("i", "m"), TextDelta("partial "), StreamError("upstream went away", "server_error")]
    )
    assert b'data: {"error":{"message":"upstream went away","type":"server_error","param":null,"code":null}}\n\n' in sse
    with pytest.raises(openai.APIError, match="upstream went away"):
        openai_stream(sse)


def test_writer_thinking_as_reasoning_content() -> None:
    sse = ChatCompletionsSSEWriter().write_all(
        [StreamStart("i", "m"), ThinkingDelta("ponder"), ThinkingDelta(signature="s"), TextDelta("ok"), Finish("stop")]
    )
    chunks = openai_stream(sse)
    assert [getattr(c.choices[0].delta, "reasoning_content", None) for c in chunks if c.choices][:2] == [None, "ponder"]
    assert parse_sse(sse)[1] == ThinkingDelta("ponder")


def test_parser_handles_crlf_comments_and_a_missing_final_blank_line() -> None:
    chunk = {
        "id": "a",
        "model": "m",
        "created": 3,
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
    }
    raw = b": keep-alive\r\n\r\ndata: " + json.dumps(chunk).encode() + b"\r\n\r\nevent: x\r\ndata: [DONE]"
    parser = ChatCompletionsSSEParser()
    events = [e for piece in chunked(raw, (2, 5)) for e in parser.feed(piece)] + parser.close()
    assert events == [StreamStart("a", "m", 3), TextDelta("hi")]
    assert parser.done


def test_parser_opens_each_call_once_and_renumbers() -> None:
    def chunk(calls: list[dict[str, Any]], finish: str | None = None) -> bytes:
        body = {
            "id": "a",
            "model": "m",
            "choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    sse = (
        # A server that starts at index 1 and repeats id and name on every fragment.
        chunk([{"index": 1, "id": "c1", "type": "function", "function": {"name": "a", "arguments": '{"x":'}}])
        + chunk([{"index": 1, "id": "c1", "type": "function", "function": {"name": "a", "arguments": '"1"}'}}])
        # A server without indexes: the id names the call.
        + chunk([{"id": "c2", "function": {"name": "b", "arguments": "{}"}}])
        + chunk([], "function_call")
        + b"data: [DONE]\n\n"
    )
    events = parse_sse(sse)
    assert events[1:] == [
        ToolCallStart(0, "c1", "a"),
        ToolCallDelta(0, '{"x":'),
        ToolCallDelta(0, '"1"}'),
        ToolCallStart(1, "c2", "b"),
        ToolCallDelta(1, "{}"),
        Finish("tool_calls"),
    ]


def test_parser_error_chunk() -> None:
    sse = b'data: {"error": {"message": "overloaded", "type": "overloaded_error", "code": 529}}\n\n'
    assert parse_sse(sse) == [StreamError("overloaded", "overloaded_error", "529")]


def test_writer_event_order_is_what_cursor_expects() -> None:
    events = [
        StreamStart("chatcmpl-9", "gpt-4.1", 11),
        ToolCallStart(0, "call_1", "read_file"),
        ToolCallDelta(0, '{"target_file":'),
        ToolCallDelta(0, '"a.py"}'),
        Finish("tool_calls"),
        UsageEvent(Usage(1, 2)),
    ]
    sse = ChatCompletionsSSEWriter(include_usage=True).write_all(events)
    datas = [block[6:] for block in sse.decode().split("\n\n") if block]
    parsed = [json.loads(d) for d in datas[:-1]]
    assert datas[-1] == "[DONE]"
    assert {p["object"] for p in parsed} == {"chat.completion.chunk"}
    assert {(p["id"], p["model"], p["created"]) for p in parsed} == {("chatcmpl-9", "gpt-4.1", 11)}
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert parsed[1]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": ""}}
    ]
    assert parsed[2]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "function": {"arguments": '{"target_file":'}}
    ]
    assert parsed[4]["choices"][0]["finish_reason"] == "tool_calls"
    assert parsed[5]["choices"] == [] and parsed[5]["usage"]["total_tokens"] == 3


def test_writer_sends_one_usage_chunk_however_often_the_provider_reports() -> None:
    # vLLM's continuous usage stats put usage on every chunk; the client must see it once, last.
    events = [StreamStart("i", "m"), UsageEvent(Usage(5, 1)), TextDelta("a"), UsageEvent(Usage(5, 2))]
    events += [Finish("stop"), UsageEvent(Usage(5, 3))]
    chunks = openai_stream(ChatCompletionsSSEWriter(include_usage=True).write_all(events))
    assert [c.usage.completion_tokens for c in chunks if c.usage is not None] == [3]
    assert chunks[-1].usage is not None


@pytest.mark.parametrize(
    "body",
    [
        {"messages": 7, "tools": "x", "stop": 3, "stream_options": "yes"},
        {"messages": [{"role": "assistant", "tool_calls": {"a": 1}}, {"role": "user", "content": 5}]},
        {"model": ["x"], "max_tokens": "many", "temperature": True, "tool_choice": {"type": "function"}},
        {"choices": {"0": 1}, "usage": {"prompt_tokens": "a", "prompt_tokens_details": []}},
    ],
)
def test_malformed_bodies_parse_without_raising(body: dict[str, Any]) -> None:
    # Validation (400s naming the field) is the route's job; parsing must never crash on junk.
    render_request(parse_request(body))
    openai_chat.parse_response(body)
    responses_shaped.parse_request(body)
