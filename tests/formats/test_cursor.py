"""Cursor normalisation: tool dedupe, max_tokens floor, custom tool calls both ways."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from spendgate_proxy.formats import openai as openai_chat
from spendgate_proxy.formats import responses_shaped
from spendgate_proxy.formats.canonical import (
    ChatRequest,
    ChatResponse,
    Finish,
    Message,
    StreamStart,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    custom_tool,
)
from spendgate_proxy.formats.cursor import (
    DEFAULT_MAX_TOKENS_FLOOR,
    CustomCallStream,
    custom_input,
    custom_tool_call_to_cursor,
    custom_tool_names,
    normalise_cursor_request,
    restore_custom_calls,
)
from tests.formats.support import openai_final

APPLY_PATCH = custom_tool({"type": "custom", "name": "ApplyPatch", "format": {"type": "text"}})
PATCH = '*** Begin Patch\n*** Update File: a.py\n@@\n-x = "old"\n+x = "new\\t\u00e9 \U0001f600"\n*** End Patch\n'


def req_with(**kwargs: Any) -> ChatRequest:
    return ChatRequest(model="m", tools=(Tool("read_file"), APPLY_PATCH), **kwargs)


# ---------------------------------------------------------------------------------------------
# Requests


@pytest.mark.parametrize(
    ("max_tokens", "tool_choice", "tools", "expected"),
    [
        (512, None, True, DEFAULT_MAX_TOKENS_FLOOR),  # Cursor's too-low max_tokens on a tool turn
        (512, "auto", True, DEFAULT_MAX_TOKENS_FLOOR),
        (20_000, None, True, 20_000),  # already above the floor
        (None, None, True, None),  # absent stays absent
        (512, "none", True, 512),  # tools offered but not callable
        (512, None, False, 512),  # no tools: not a tool-using turn
    ],
)
def test_max_tokens_floor(max_tokens: int | None, tool_choice: Any, tools: bool, expected: int | None) -> None:
    req = ChatRequest(model="m", max_tokens=max_tokens, tool_choice=tool_choice, tools=(Tool("f"),) if tools else ())
    assert normalise_cursor_request(req).max_tokens == expected


def test_max_tokens_floor_is_configurable_and_can_be_off() -> None:
    assert normalise_cursor_request(req_with(max_tokens=100), max_tokens_floor=1000).max_tokens == 1000
    assert normalise_cursor_request(req_with(max_tokens=100), max_tokens_floor=None).max_tokens == 100


def test_duplicate_tools_are_kept_once() -> None:
    # The same tool sent nested and flat (Cursor mixes both forms).
    body = {
        "model": "m",
        "messages": [],
        "tools": [
            {"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}},
            {"type": "function", "name": "read_file", "parameters": {"type": "object", "properties": {}}},
            {"type": "function", "name": "grep"},
        ],
    }
    req = normalise_cursor_request(openai_chat.parse_request(body))
    assert [t.name for t in req.tools] == ["read_file", "grep"]
    assert req.tools[0].parameters == {"type": "object"}


@pytest.mark.parametrize(
    "arguments",
    [
        PATCH,  # how Cursor replays an ApplyPatch call it got as raw text
        json.dumps({"input": PATCH}),
        json.dumps(PATCH),  # a JSON string
    ],
)
def test_replayed_custom_calls_are_wrapped_as_json(arguments: str) -> None:
    req = req_with(
        messages=(
            Message(
                "assistant", (ToolCallPart("c1", "ApplyPatch", arguments), ToolCallPart("c2", "read_file", "not json"))
            ),
        )
    )
    parts = normalise_cursor_request(req).messages[0].parts
    assert json.loads(parts[0].arguments_json) == {"input": PATCH}
    assert parts[1].arguments_json == "not json"  # only custom tools are rewritten


def test_chat_shaped_body_with_flat_custom_tool() -> None:
    # Reported for Cursor Ask mode: nested function tools next to a flat top-level custom tool
    # (Wei-Shaw/sub2api PR #5861); neither may be lost.
    body = {
        "model": "gpt-5",
        "messages": [{"role": "user", "content": "edit"}],
        "tools": [
            {"type": "function", "function": {"name": "Shell", "parameters": {"type": "object"}}},
            {
                "type": "custom",
                "name": "ApplyPatch",
                "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"},
            },
        ],
    }
    req = normalise_cursor_request(openai_chat.parse_request(body))
    assert custom_tool_names(req) == {"ApplyPatch"}
    assert [t["function"]["name"] for t in openai_chat.render_request(req)["tools"]] == ["Shell", "ApplyPatch"]


# ---------------------------------------------------------------------------------------------
# Custom tool calls on the way back


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (json.dumps({"input": "x"}), "x"),
        (json.dumps("x"), "x"),
        ("*** Begin Patch", "*** Begin Patch"),
        (json.dumps({"other": 1}), '{"other": 1}'),
    ],
)
def test_custom_input(arguments: str, expected: str) -> None:
    assert custom_input(arguments) == expected


def test_custom_tool_call_to_cursor_modes() -> None:
    call = ToolCallPart("c1", "ApplyPatch", json.dumps({"input": PATCH}))
    assert custom_tool_call_to_cursor(call) == {
        "id": "c1",
        "type": "function",
        "function": {"name": "ApplyPatch", "arguments": PATCH},
    }
    as_json = custom_tool_call_to_cursor(call, mode="json")
    assert json.loads(as_json["function"]["arguments"]) == {"input": PATCH}
    assert custom_tool_call_to_cursor(call, mode="custom") == {
        "id": "c1",
        "type": "custom",
        "custom": {"name": "ApplyPatch", "input": PATCH},
    }


def test_restore_custom_calls_in_a_whole_answer() -> None:
    resp = ChatResponse(
        id="r",
        model="m",
        content=(ToolCallPart("c1", "ApplyPatch", json.dumps({"input": PATCH})), ToolCallPart("c2", "read_file", "{}")),
    )
    restored = restore_custom_calls(resp, {"ApplyPatch"})
    assert [p.arguments_json for p in restored.content] == [PATCH, "{}"]


def _stream(fragments: list[str]) -> list[Any]:
    return [
        StreamStart("i", "m"),
        ToolCallStart(0, "c1", "ApplyPatch"),
        ToolCallStart(1, "c2", "read_file"),
        *[ToolCallDelta(0, f) for f in fragments],
        ToolCallDelta(1, '{"target_file":"a.py"}'),
        Finish("tool_calls"),
    ]


def _split(text: str, rng: random.Random) -> list[str]:
    pieces, at = [], 0
    while at < len(text):
        size = rng.randint(1, 6)
        pieces.append(text[at : at + size])
        at += size
    return pieces


@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("seed", range(20))
def test_custom_call_stream_decodes_input_as_it_arrives(seed: int, ensure_ascii: bool) -> None:
    rng = random.Random(seed)
    encoded = json.dumps({"input": PATCH}, ensure_ascii=ensure_ascii)
    if seed % 2:
        encoded = encoded.replace('{"input": ', '{ "input" :\n')  # whitespace a model may emit
    rewriter = CustomCallStream({"ApplyPatch"})
    events = [e for ev in _stream(_split(encoded, rng)) for e in rewriter.process(ev)] + rewriter.close()
    streamed = "".join(e.arguments_fragment for e in events if isinstance(e, ToolCallDelta) and e.index == 0)
    assert streamed == PATCH
    # Text went out before the call ended, not in one burst at the finish.
    first_delta = next(i for i, e in enumerate(events) if isinstance(e, ToolCallDelta) and e.index == 0)
    assert first_delta < len(events) - 3
    other = [e.arguments_fragment for e in events if isinstance(e, ToolCallDelta) and e.index == 1]
    assert other == ['{"target_file":"a.py"}']


def test_custom_call_stream_falls_back_when_the_model_sent_something_else() -> None:
    rewriter = CustomCallStream({"ApplyPatch"})
    events = []
    for ev in _stream(["*** Begin", " Patch\n"]):  # raw text instead of {"input": ...}
        events += rewriter.process(ev)
    deltas = [e for e in events if isinstance(e, ToolCallDelta) and e.index == 0]
    assert deltas == [ToolCallDelta(0, "*** Begin Patch\n")]
    assert isinstance(events[-1], Finish)  # held text goes out before the finish


def test_custom_call_stream_json_mode_passes_through() -> None:
    events = _stream(['{"input":', '"x"}'])
    rewriter = CustomCallStream({"ApplyPatch"}, mode="json")
    assert [e for ev in events for e in rewriter.process(ev)] == events


def test_custom_call_reaches_the_sdk_as_raw_text() -> None:
    rewriter = CustomCallStream({"ApplyPatch"})
    encoded = json.dumps({"input": PATCH})
    events = [e for ev in _stream(_split(encoded, random.Random(1))) for e in rewriter.process(ev)] + rewriter.close()
    final = openai_final(openai_chat.ChatCompletionsSSEWriter().write_all(events))
    calls = final.choices[0].message.tool_calls
    assert [(c.type, c.function.name, c.function.arguments) for c in calls] == [
        ("function", "ApplyPatch", PATCH),
        ("function", "read_file", '{"target_file":"a.py"}'),
    ]


def test_apply_patch_round_trip_through_a_later_request() -> None:
    # Cursor replays the raw-text call in the next request; the upstream must get JSON again.
    body = {
        "model": "gpt-5",
        "input": [
            {"type": "function_call", "call_id": "c1", "name": "ApplyPatch", "arguments": PATCH},
            {"type": "function_call_output", "call_id": "c1", "output": "Applied"},
        ],
        "tools": [{"type": "custom", "name": "ApplyPatch", "format": {"type": "text"}}],
    }
    req = normalise_cursor_request(responses_shaped.parse_request(body))
    rendered = openai_chat.render_request(req)
    arguments = rendered["messages"][0]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(arguments) == {"input": PATCH}


def test_restore_without_custom_tools_is_a_no_op() -> None:
    resp = ChatResponse(id="r", model="m", content=(TextPart("hi"),))
    assert restore_custom_calls(resp, set()) is resp


@pytest.mark.parametrize("fragment", ["\\uZZZZ", "\\u12", "\\uD83D\\u0041", "\\uDE00"])
def test_custom_call_stream_survives_bad_escapes(fragment: str) -> None:
    rewriter = CustomCallStream({"ApplyPatch"})
    events = [e for ev in _stream(['{"input":"a', fragment, 'b"}']) for e in rewriter.process(ev)] + rewriter.close()
    text = "".join(e.arguments_fragment for e in events if isinstance(e, ToolCallDelta) and e.index == 0)
    assert text.startswith("a") and text.endswith("b")
    text.encode()  # no lone surrogates: the SSE writer must be able to encode it
