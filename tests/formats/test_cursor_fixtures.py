"""Every Cursor body shape, end to end without sockets.

fixture → ``detect_shape`` → parser → ``normalise_cursor_request`` → a Chat Completions request
(checked against the openai SDK's request types) → the simulated provider's stream → our SSE
parser → custom-call rewrite → our SSE writer → the official ``openai`` SDK, which must see a
well-formed stream: role on the first delta, complete JSON tool arguments with their indexes,
a finish reason, usage when asked, ``[DONE]``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from spendgate_proxy.formats import anthropic as anthropic_format
from spendgate_proxy.formats import openai as openai_chat
from spendgate_proxy.formats import responses_shaped
from spendgate_proxy.formats.canonical import ChatRequest, ToolChoiceTool
from spendgate_proxy.formats.cursor import (
    DEFAULT_MAX_TOKENS_FLOOR,
    CustomCallStream,
    custom_tool_names,
    normalise_cursor_request,
)
from spendgate_proxy.formats.detect import detect_shape
from tests.formats.cursor_history import cursor_history
from tests.formats.support import (
    assert_valid_chat_request,
    chunked,
    load_fixture,
    openai_final,
    openai_stream,
    simulated_stream,
)

PARSERS: dict[str, Callable[[dict[str, Any]], ChatRequest]] = {
    "chat": openai_chat.parse_request,
    "responses": responses_shaped.parse_request,
    "anthropic": anthropic_format.parse_request,
}


def to_upstream(body: dict[str, Any]) -> tuple[ChatRequest, dict[str, Any]]:
    """Detect, parse and normalise a Cursor body; render it for a Chat Completions upstream."""
    shape = detect_shape(body)
    req = normalise_cursor_request(PARSERS[shape](body))
    # The proxy always asks the provider for usage and hides it from clients that did not ask.
    upstream = openai_chat.render_request(dataclasses.replace(req, stream=True, include_usage=True))
    assert_valid_chat_request(upstream)
    return req, upstream


def answer_for_cursor(req: ChatRequest, upstream: dict[str, Any]) -> bytes:
    """The provider's stream for ``upstream``, translated back into what Cursor is sent."""
    parser = openai_chat.ChatCompletionsSSEParser()
    rewriter = CustomCallStream(custom_tool_names(req))
    writer = openai_chat.ChatCompletionsSSEWriter(include_usage=req.include_usage)
    out = b""
    for piece in chunked(simulated_stream(upstream)):
        for event in parser.feed(piece):
            out += b"".join(writer.write(e) for e in rewriter.process(event))
    for event in parser.close() + rewriter.close():
        out += writer.write(event)
    return out + writer.close()


def assert_cursor_reads(sse: bytes, *, usage: bool) -> Any:
    chunks = openai_stream(sse)
    assert chunks[0].object == "chat.completion.chunk"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] in (
        ["stop"],
        ["tool_calls"],
        ["length"],
    )
    assert (chunks[-1].usage is not None) is usage
    assert sse.endswith(b"data: [DONE]\n\n")
    return openai_final(sse)


CURSOR_BODIES: list[tuple[str, Callable[[], dict[str, Any]], str]] = [
    ("chat with mixed nested/flat tools", lambda: load_fixture("chat_ask_mixed_tools.json"), "chat"),
    ("responses agent turn with ApplyPatch", lambda: load_fixture("responses_agent_apply_patch.json"), "responses"),
    (
        "anthropic with system array, cache_control, image",
        lambda: load_fixture("anthropic_claude_agent.json"),
        "anthropic",
    ),
    ("300-message chat history", lambda: cursor_history(300), "chat"),
    ("300-message responses history", lambda: cursor_history(300, shape="responses"), "responses"),
]


@pytest.mark.parametrize(("make_body", "shape"), [c[1:] for c in CURSOR_BODIES], ids=[c[0] for c in CURSOR_BODIES])
def test_cursor_body_streams_back_as_chat_completions(make_body: Callable[[], dict[str, Any]], shape: str) -> None:
    body = make_body()
    assert detect_shape(body) == shape
    req, upstream = to_upstream(body)
    final = assert_cursor_reads(answer_for_cursor(req, upstream), usage=req.include_usage)
    calls = final.choices[0].message.tool_calls or []
    for call in calls:
        json.loads(call.function.arguments)  # complete JSON, not a prefix
    if final.choices[0].finish_reason == "tool_calls":
        assert calls
        # The simulator calls the first two tools when parallel calls are allowed.
        offered = [t["function"]["name"] for t in upstream["tools"]]
        assert [c.function.name for c in calls] == offered[: len(calls)]


def test_chat_fixture_details() -> None:
    _, upstream = to_upstream(load_fixture("chat_ask_mixed_tools.json"))
    assert [t["function"]["name"] for t in upstream["tools"]] == [
        "read_file",
        "run_terminal_cmd",
        "codebase_search",
        "grep_search",
    ]
    assert upstream["max_tokens"] == DEFAULT_MAX_TOKENS_FLOOR  # 512 in the fixture: too low for tool JSON
    image = upstream["messages"][-1]["content"][1]
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith("data:image/png;base64,")
    assert image["image_url"]["detail"] == "low"
    assert upstream["messages"][0]["content"].startswith("You are a powerful agentic AI coding assistant")


def test_long_history_keeps_every_message() -> None:
    _, upstream = to_upstream(cursor_history(300))
    assert len(upstream["messages"]) == 300
    # The same conversation sent Responses-shaped reaches the upstream as the same messages.
    _, from_responses = to_upstream(cursor_history(300, shape="responses"))
    assert from_responses["messages"] == upstream["messages"]


def test_apply_patch_call_reaches_cursor_as_raw_text() -> None:
    req, _ = to_upstream(load_fixture("responses_agent_apply_patch.json"))
    # Make the simulated model call ApplyPatch.
    forced = dataclasses.replace(req, tool_choice=ToolChoiceTool("ApplyPatch"))
    upstream = openai_chat.render_request(dataclasses.replace(forced, stream=True, include_usage=True))
    assert_valid_chat_request(upstream)
    final = assert_cursor_reads(answer_for_cursor(forced, upstream), usage=True)
    (call,) = final.choices[0].message.tool_calls
    assert (call.type, call.function.name) == ("function", "ApplyPatch")
    # The simulator fills {"input": <a word>}; Cursor gets the word itself, not JSON.
    assert call.function.arguments.isalpha()


def test_anthropic_fixture_parses_to_canonical() -> None:
    req = anthropic_format.parse_request(load_fixture("anthropic_claude_agent.json"))
    assert req.system[1].cache_control == {"type": "ephemeral"}
    assert [t.name for t in req.tools] == ["read_file", "edit_file"]
    kinds = [type(p).__name__ for m in req.messages for p in m.parts]
    assert kinds == ["TextPart", "ImagePart", "TextPart", "ToolCallPart", "ToolResultPart", "TextPart"]
