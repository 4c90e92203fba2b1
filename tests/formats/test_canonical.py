"""The canonical model's helpers: finish-reason mapping, custom tools, stream ↔ whole answer."""

from __future__ import annotations

import pytest

from spendgate_proxy.formats.canonical import (
    CUSTOM_TOOL_INPUT,
    ChatRequest,
    ChatResponse,
    Finish,
    StreamError,
    StreamFailed,
    StreamStart,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
    UsageEvent,
    collect_stream,
    custom_tool,
    finish_reason_from_anthropic,
    finish_reason_to_anthropic,
    response_events,
)


@pytest.mark.parametrize(
    ("anthropic", "openai"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "stop"),
        (None, None),
    ],
)
def test_finish_reason_from_anthropic(anthropic: str | None, openai: str | None) -> None:
    assert openai == finish_reason_from_anthropic(anthropic)


@pytest.mark.parametrize(
    ("openai", "anthropic"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("content_filter", "refusal")],
)
def test_finish_reason_to_anthropic(openai: str, anthropic: str) -> None:
    assert anthropic == finish_reason_to_anthropic(openai)


def test_custom_tool_becomes_a_one_string_function_and_keeps_its_definition() -> None:
    definition = {
        "type": "custom",
        "name": "ApplyPatch",
        "description": "Edit files.",
        "format": {"type": "grammar", "syntax": "lark", "definition": "start: PATCH"},
    }
    tool = custom_tool(definition)
    assert (tool.name, tool.kind) == ("ApplyPatch", "custom")
    assert definition == tool.original
    assert tool.parameters["required"] == [CUSTOM_TOOL_INPUT]
    assert tool.parameters["properties"][CUSTOM_TOOL_INPUT]["type"] == "string"
    # The grammar cannot be a JSON schema, so the model reads it in the description.
    assert tool.description.startswith("Edit files.") and "start: PATCH" in tool.description


def test_custom_tool_nested_form() -> None:
    tool = custom_tool({"type": "custom", "custom": {"name": "Sh", "format": {"type": "text"}}})
    assert (tool.name, tool.description) == ("Sh", None)


def test_collect_stream_joins_deltas_in_order() -> None:
    events = [
        StreamStart("id1", "m", 7),
        ThinkingDelta("let me "),
        ThinkingDelta("think", signature="sig"),
        TextDelta("Hel"),
        TextDelta("lo"),
        ToolCallStart(0, "c0", "a"),
        ToolCallStart(1, "c1", "b"),
        ToolCallDelta(1, '{"y"'),
        ToolCallDelta(0, '{"x":1}'),
        ToolCallDelta(1, ":2}"),
        Finish("tool_calls"),
        UsageEvent(Usage(10, 5)),
    ]
    resp = collect_stream(events)
    assert (
        ThinkingPart("let me think", "sig"),
        TextPart("Hello"),
        ToolCallPart("c0", "a", '{"x":1}'),
        ToolCallPart("c1", "b", '{"y":2}'),
    ) == resp.content
    assert ("id1", "m", 7, "tool_calls", Usage(10, 5)) == (
        resp.id,
        resp.model,
        resp.created,
        resp.finish_reason,
        resp.usage,
    )


def test_collect_stream_raises_on_error() -> None:
    with pytest.raises(StreamFailed) as caught:
        collect_stream([StreamStart("i", "m"), TextDelta("half"), StreamError("boom", "server_error")])
    assert caught.value.error.message == "boom"


def test_response_events_round_trip() -> None:
    resp = ChatResponse(
        id="r",
        model="m",
        content=(TextPart("hi"), ToolCallPart("c", "f", '{"a":1}')),
        finish_reason="tool_calls",
        usage=Usage(3, 4, cache_read_tokens=1),
        created=5,
    )
    assert resp == collect_stream(response_events(resp))


def test_request_defaults_are_shareable() -> None:
    # Two requests never share a mutable ``extra``.
    a, b = ChatRequest(model="x"), ChatRequest(model="y")
    assert a.extra == {} and a.extra is not b.extra
