"""Responses-shaped bodies (Cursor Agent mode for GPT models) → canonical → Chat Completions."""

from __future__ import annotations

import json

from spendgate_proxy.formats import openai as openai_chat
from spendgate_proxy.formats import responses_shaped
from spendgate_proxy.formats.canonical import (
    Message,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolChoiceTool,
    ToolResultPart,
)
from tests.formats.support import assert_valid_chat_request, load_fixture


def test_string_input_and_instructions() -> None:
    req = responses_shaped.parse_request({"model": "gpt-5", "instructions": "be kind", "input": "hello"})
    assert req.system == (TextPart("be kind"),)
    assert req.messages == (Message("user", (TextPart("hello"),)),)
    assert req.source_format == "responses"


def test_agent_fixture_items_become_turns() -> None:
    req = responses_shaped.parse_request(load_fixture("responses_agent_apply_patch.json"))
    roles = [m.role for m in req.messages]
    assert roles == ["user", "assistant", "tool", "tool", "assistant", "user"]
    # The reasoning item and both calls are one assistant turn, so the results follow it directly.
    assert req.messages[1].parts == (
        ThinkingPart(
            "**Inspecting invoice totals** I need to see how totals are summed.",
            "gAAAAABo-opaque-encrypted-reasoning-0001",
        ),
        ToolCallPart("call_Rd1", "read_file", '{"target_file":"billing/invoice.py"}'),
        ToolCallPart("call_Gr1", "grep_search", '{"query":"def total"}'),
    )
    assert req.messages[2].parts == (
        ToolResultPart("call_Rd1", "def total(lines):\n    return sum(l.amount for l in lines)\n"),
    )
    assert [(t.name, t.kind) for t in req.tools] == [
        ("read_file", "function"),
        ("grep_search", "function"),
        ("ApplyPatch", "custom"),
    ]
    apply_patch = req.tools[2]
    assert apply_patch.original is not None and apply_patch.original["format"]["syntax"] == "lark"
    assert apply_patch.parameters["properties"]["input"] == {
        "type": "string",
        "description": "The raw input for this tool.",
    }
    assert req.reasoning is not None
    assert (req.reasoning.effort, req.reasoning.summary) == ("high", "auto")
    assert (req.max_tokens, req.stream, req.include_usage, req.parallel_tool_calls) == (2048, True, True, True)
    assert set(req.extra) == {
        "include",
        "text",
        "store",
        "previous_response_id",
        "truncation",
        "prompt_cache_retention",
    }


def test_agent_fixture_renders_as_valid_chat_completions() -> None:
    req = responses_shaped.parse_request(load_fixture("responses_agent_apply_patch.json"))
    body = openai_chat.render_request(req)
    assert_valid_chat_request(body)
    assert body["max_completion_tokens"] == 2048  # a GPT-5 model: max_tokens would be rejected
    assert body["reasoning_effort"] == "high"
    assert body["stream_options"] == {"include_usage": True}
    # Responses-only fields do not leak into a Chat Completions body...
    assert not {"include", "store", "previous_response_id", "truncation", "prompt_cache_retention", "text"} & set(body)
    # ...but the ones Chat Completions also has can be asked for.
    assert openai_chat.render_request(req, extra=responses_shaped.chat_extra(req))["verbosity"] == "low"
    tool = next(t for t in body["tools"] if t["function"]["name"] == "ApplyPatch")
    assert tool["function"]["parameters"]["required"] == ["input"]


def test_custom_tool_call_history_and_outputs() -> None:
    req = responses_shaped.parse_request(
        {
            "model": "gpt-5",
            "input": [
                {"role": "user", "content": "edit it"},  # an item without ``type`` is a message
                {"type": "custom_tool_call", "call_id": "c1", "name": "ApplyPatch", "input": "*** Begin Patch\n"},
                {
                    "type": "custom_tool_call_output",
                    "call_id": "c1",
                    "output": [{"type": "input_text", "text": "Done"}],
                },
                {"type": "item_reference", "id": "msg_1"},
            ],
            "tool_choice": {"type": "custom", "name": "ApplyPatch"},
        }
    )
    assert req.messages[1].parts == (
        ToolCallPart("c1", "ApplyPatch", json.dumps({"input": "*** Begin Patch\n"}, separators=(",", ":"))),
    )
    assert req.messages[2].parts == (ToolResultPart("c1", (TextPart("Done"),)),)
    assert req.tool_choice == ToolChoiceTool("ApplyPatch")


def test_assistant_text_after_a_call_starts_a_new_turn() -> None:
    req = responses_shaped.parse_request(
        {
            "model": "gpt-5",
            "input": [
                {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "a", "output": "1"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "so"}]},
                {"type": "function_call", "call_id": "b", "name": "f", "arguments": "{}"},
            ],
        }
    )
    assert [m.role for m in req.messages] == ["assistant", "tool", "assistant"]
    assert req.messages[2].parts == (TextPart("so"), ToolCallPart("b", "f", "{}"))


def test_developer_items_join_instructions_and_chat_extra_maps_text_format() -> None:
    req = responses_shaped.parse_request(
        {
            "model": "gpt-5",
            "instructions": "one",
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "two"}]},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "https://x/i.png", "detail": "high"}],
                },
            ],
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
            "prompt_cache_key": "k",
            "reasoning": {"effort": "none"},
        }
    )
    assert req.system == (TextPart("one"), TextPart("two"))
    assert req.reasoning is not None and not req.reasoning.enabled
    assert "reasoning_effort" not in openai_chat.render_request(req)
    assert responses_shaped.chat_extra(req) == {
        "prompt_cache_key": "k",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
        },
    }
