"""detect_shape: which of the three request shapes a ``/chat/completions`` body is, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from spendgate_proxy.formats.detect import detect_shape
from tests.formats.cursor_history import cursor_history
from tests.formats.support import load_fixture

USER = {"role": "user", "content": "hi"}

CASES: list[tuple[str, dict[str, Any], str]] = [
    # Clear cases.
    ("plain chat", {"model": "m", "messages": [USER]}, "chat"),
    ("responses string input", {"model": "m", "input": "hi"}, "responses"),
    ("responses instructions only", {"model": "m", "instructions": "x"}, "responses"),
    (
        "anthropic system list",
        {"model": "m", "system": [{"type": "text", "text": "s"}], "messages": [USER]},
        "anthropic",
    ),
    (
        "anthropic tool_use block",
        {
            "model": "m",
            "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}],
        },
        "anthropic",
    ),
    (
        "anthropic tool_result block",
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]}],
        },
        "anthropic",
    ),
    (
        "anthropic image with source",
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "u"}}]}],
        },
        "anthropic",
    ),
    (
        "anthropic input_schema tool",
        {"model": "m", "messages": [USER], "tools": [{"name": "f", "input_schema": {}}]},
        "anthropic",
    ),
    ("anthropic tool_choice any", {"model": "m", "messages": [USER], "tool_choice": {"type": "any"}}, "anthropic"),
    (
        "anthropic thinking",
        {"model": "m", "messages": [USER], "thinking": {"type": "enabled", "budget_tokens": 1024}},
        "anthropic",
    ),
    # Ambiguous: plain messages are valid in both chat and Anthropic; chat is the tolerant parser.
    (
        "text blocks only",
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
        "chat",
    ),
    (
        "cache_control on chat text (OpenRouter style)",
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]}
            ],
        },
        "chat",
    ),
    (
        "flat function tools with messages",
        {"model": "m", "messages": [USER], "tools": [{"type": "function", "name": "f", "parameters": {}}]},
        "chat",
    ),
    (
        "chat tool_choice object",
        {"model": "m", "messages": [USER], "tool_choice": {"type": "function", "function": {"name": "f"}}},
        "chat",
    ),
    ("string system, plain messages", {"model": "m", "system": "s", "messages": [USER]}, "anthropic"),
    (
        "string system next to chat tool turns",
        {"model": "m", "system": "s", "messages": [USER, {"role": "tool", "tool_call_id": "c", "content": "r"}]},
        "chat",
    ),
    (
        "string system next to nested function tools",
        {"model": "m", "system": "s", "messages": [USER], "tools": [{"type": "function", "function": {"name": "f"}}]},
        "chat",
    ),
    (
        "top_k from a vLLM-style chat client with a system message",
        {"model": "m", "top_k": 5, "messages": [{"role": "system", "content": "s"}, USER]},
        "chat",
    ),
    ("top_k alone", {"model": "m", "top_k": 5, "messages": [USER]}, "anthropic"),
    ("input wins over messages", {"model": "m", "input": "x", "messages": [USER]}, "responses"),
    ("instructions next to chat messages", {"model": "m", "instructions": "x", "messages": [USER]}, "responses"),
    (
        "image_url part is chat",
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]},
        "chat",
    ),
    (
        "image without source is not anthropic",
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "image", "url": "u"}]}]},
        "chat",
    ),
    ("empty body", {}, "chat"),
    ("garbage values", {"messages": "nope", "tools": 3, "system": None}, "chat"),
]


@pytest.mark.parametrize(("body", "shape"), [(b, s) for _, b, s in CASES], ids=[c[0] for c in CASES])
def test_detect_shape(body: dict[str, Any], shape: str) -> None:
    assert detect_shape(body) == shape


@pytest.mark.parametrize(
    ("fixture", "shape"),
    [
        ("chat_ask_mixed_tools.json", "chat"),
        ("responses_agent_apply_patch.json", "responses"),
        ("anthropic_claude_agent.json", "anthropic"),
    ],
)
def test_detect_cursor_fixtures(fixture: str, shape: str) -> None:
    assert detect_shape(load_fixture(fixture)) == shape


def test_detect_long_histories() -> None:
    assert detect_shape(cursor_history(300)) == "chat"
    assert detect_shape(cursor_history(300, shape="responses")) == "responses"
