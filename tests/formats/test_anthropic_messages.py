"""Anthropic Messages ↔ canonical: request and response bodies, errors both ways, count_tokens.

"Anthropic accepts it" is checked against the simulated Anthropic upstream, which refuses what the
real API refuses (unpaired tool results, empty text, a system role, thinking that lost its
signature); "OpenAI accepts it" against the openai SDK's request types (``assert_valid_chat_request``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import anthropic
import orjson
import pytest

from spendgate_proxy.formats import anthropic as am
from spendgate_proxy.formats import openai as openai_chat
from spendgate_proxy.formats.canonical import (
    ChatResponse,
    ImagePart,
    Reasoning,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolChoiceTool,
    ToolResultPart,
    Usage,
)
from spendgate_proxy.formats.cursor import normalise_cursor_request
from spendgate_proxy.formats.estimate import IMAGE_TOKENS, count_tokens, estimate_input_tokens
from spendgate_simulator import anthropic as anthropic_sim
from spendgate_simulator.responses import build_reply as openai_build_reply
from tests.formats.support import assert_valid_chat_request, load_fixture

MODEL = "claude-sonnet-4-6"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
READ = {
    "name": "read_file",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
    "cache_control": {"type": "ephemeral"},
}
THINKING = "The user wants the weather; I should call the tool."


def full_request() -> dict[str, Any]:
    """An Anthropic request using every translated feature, valid for the real API (and the simulator)."""
    signature = anthropic_sim.thinking_signature(THINKING)
    return {
        "model": MODEL,
        "max_tokens": 4096,
        "system": [
            {"type": "text", "text": "You are a coding assistant."},
            {
                "type": "text",
                "text": "Repository rules: be brief.",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            },
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this screenshot, and the weather in Paris?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": THINKING, "signature": signature},
                    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDdRSMwK4"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_02", "name": "read_file", "input": {"path": "a.py"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny, 21C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_02",
                        "content": [{"type": "text", "text": "no such file"}],
                        "is_error": True,
                        "cache_control": {"type": "ephemeral"},
                    },
                    {"type": "text", "text": "Thanks."},
                ],
            },
        ],
        "tools": [WEATHER, READ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "stop_sequences": ["END"],
        "top_p": 0.99,
        "top_k": 40,
        "metadata": {"user_id": "u-123"},
        "stream": True,
    }


def anthropic_accepts(body: dict[str, Any]) -> dict[str, Any]:
    """The simulated upstream's non-streamed answer to ``body``; fails the test on a 400."""
    reply = anthropic_sim.build_reply(orjson.dumps({**body, "stream": False}), cache=anthropic_sim.PromptCache())
    assert reply.status == 200, reply.body.decode()
    return orjson.loads(reply.body)


# ---------------------------------------------------------------------------------------------
# Requests


def test_parse_keeps_everything_the_canonical_model_can_hold() -> None:
    req = am.parse_request(full_request())
    assert req.source_format == "anthropic"
    assert req.system == (
        TextPart("You are a coding assistant."),
        TextPart("Repository rules: be brief.", {"type": "ephemeral", "ttl": "1h"}),
    )
    user, assistant, results = req.messages
    assert user.parts[1:] == (ImagePart(data=PNG, media_type="image/png"), ImagePart(url="https://example.com/a.png"))
    assert assistant.parts[:2] == (
        ThinkingPart(THINKING, anthropic_sim.thinking_signature(THINKING)),
        ThinkingPart("EmwKAhgBEgy3va3pzix/LafPsn4aDdRSMwK4", redacted=True),
    )
    assert assistant.parts[3] == ToolCallPart("toolu_01", "get_weather", '{"city":"Paris"}')
    assert results.role == "user"  # Anthropic's tool results stay in the user turn
    assert results.parts[:2] == (
        ToolResultPart("toolu_01", "sunny, 21C"),
        ToolResultPart("toolu_02", (TextPart("no such file"),), is_error=True, cache_control={"type": "ephemeral"}),
    )
    assert [t.name for t in req.tools] == ["get_weather", "read_file"]
    assert req.tools[1].cache_control == {"type": "ephemeral"}
    assert (req.tool_choice, req.parallel_tool_calls) == ("auto", False)
    assert req.reasoning == Reasoning(budget_tokens=2048)
    assert (req.stop, req.top_p, req.max_tokens, req.stream, req.include_usage) == (("END",), 0.99, 4096, True, True)
    assert (req.user, req.extra) == ("u-123", {"top_k": 40})


def test_native_round_trip_is_exact_and_accepted() -> None:
    body = full_request()
    assert am.render_request(am.parse_request(copy.deepcopy(body))) == body
    answer = anthropic_accepts(body)
    assert [b["type"] for b in answer["content"]] == ["thinking", "text"]


def test_through_chat_completions_and_back() -> None:
    # Anthropic in → OpenAI-compatible upstream (the other adapter) → parsed back → Anthropic out.
    req = am.parse_request(full_request())
    chat = openai_chat.render_request(req, cache_control=True)
    assert_valid_chat_request(chat)
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool", "user"]
    assert chat["messages"][1]["content"][1]["image_url"]["url"] == f"data:image/png;base64,{PNG}"
    assert [c["function"]["arguments"] for c in chat["messages"][2]["tool_calls"]] == [
        '{"city":"Paris"}',
        '{"path":"a.py"}',
    ]
    assert chat["parallel_tool_calls"] is False

    back = am.render_request(openai_chat.parse_request(chat))
    anthropic_accepts(back)
    # cache_control on text survives (the chat body carried it, as OpenRouter does), and so do
    # images and tools. (openai_chat.render_tool does not write a tool's cache_control yet.)
    assert back["system"] == full_request()["system"]
    assert back["messages"][0]["content"][1] == full_request()["messages"][0]["content"][1]
    assert [t["input_schema"] for t in back["tools"]] == [WEATHER["input_schema"], READ["input_schema"]]
    results = back["messages"][2]["content"]
    assert [b["type"] for b in results] == ["tool_result", "tool_result", "text"]
    # Chat Completions has no place for signed thinking, so none comes back. The thinking setting
    # does not survive either: Chat Completions carries only reasoning_effort, and a budget has no
    # effort; and with the signed thinking gone, Anthropic would refuse thinking in this tool loop.
    assert [b["type"] for b in back["messages"][1]["content"]] == ["text", "tool_use", "tool_use"]
    assert "thinking" not in back


def test_cursor_anthropic_fixture_to_openai_and_to_anthropic() -> None:
    body = load_fixture("anthropic_claude_agent.json")
    req = normalise_cursor_request(am.parse_request(body, require_max_tokens=False))
    assert_valid_chat_request(openai_chat.render_request(req))
    rendered = am.render_request(req)
    anthropic_accepts(rendered)
    assert rendered["system"][1]["cache_control"] == {"type": "ephemeral"}
    assert rendered["messages"][2]["content"][0]["cache_control"] == {"type": "ephemeral"}


def openai_history() -> dict[str, Any]:
    """A Chat Completions body as clients send it: parallel calls, tool messages, a late system turn."""
    return {
        "model": "claude-sonnet-4-6",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG}"}},
                ],
            },
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "unsigned reasoning from another provider",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},  # noqa: E501
                    {"id": "call.2", "type": "function", "function": {"name": "read_file", "arguments": '{"path":'}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call.2", "content": ""},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "   "},
            {"role": "user", "content": "Go on. "},
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}},
            {"type": "function", "function": {"name": "read_file", "parameters": READ["input_schema"]}},
        ],
        "temperature": 1.7,
        "stop": ["\n", "END"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "dev@example.com",
    }  # fmt: skip


def test_chat_completions_history_becomes_a_valid_anthropic_conversation() -> None:
    body = am.render_request(openai_chat.parse_request(openai_history()))
    anthropic_accepts(body)
    assert body["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Answer in French."},
    ]
    user, assistant, results = body["messages"]
    assert user["content"][1]["source"] == {"type": "base64", "media_type": "image/jpeg", "data": PNG}
    # No unsigned thinking, no empty text; a cut argument string becomes an empty input.
    assert assistant["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "read_file", "input": {}},
    ]
    # Both tool messages and the user text share one user turn, results first, ids made valid.
    assert results["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "call_2"},
        {"type": "text", "text": "Go on. "},
    ]
    assert body["temperature"] == 1.0  # OpenAI's range is 0-2, Anthropic's 0-1
    assert body["stop_sequences"] == ["END"]  # Anthropic refuses whitespace-only ones
    assert "metadata" not in body  # OpenAI's user may be an email; Anthropic asks for none
    assert body["max_tokens"] == am.DEFAULT_MAX_TOKENS
    assert body["stream"] is True


@pytest.mark.parametrize(
    ("extra", "thinking", "max_tokens"),
    [
        ({"reasoning_effort": "high"}, {"type": "enabled", "budget_tokens": 16_384}, 16_384 + am.DEFAULT_MAX_TOKENS),
        ({"reasoning_effort": "high", "max_tokens": 5000}, {"type": "enabled", "budget_tokens": 4999}, 5000),
        ({"reasoning_effort": "low", "max_tokens": 1000}, None, 1000),
        ({"reasoning_effort": "medium", "tool_choice": "required"}, None, am.DEFAULT_MAX_TOKENS),
        ({"reasoning_effort": "none"}, None, am.DEFAULT_MAX_TOKENS),
    ],
)
def test_reasoning_effort_becomes_a_budget_that_anthropic_accepts(
    extra: dict[str, Any], thinking: dict[str, Any] | None, max_tokens: int
) -> None:
    chat = {
        "model": "claude-sonnet-4-6",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}],
        "temperature": 0.2,
        **extra,
    }
    body = am.render_request(openai_chat.parse_request(chat))
    assert (body.get("thinking"), body["max_tokens"]) == (thinking, max_tokens)
    # Thinking forbids a changed temperature; without it the temperature stays.
    assert body.get("temperature") == (None if thinking else 0.2)
    anthropic_accepts(body)


def test_thinking_is_left_off_when_a_tool_loop_lost_its_signed_thinking() -> None:
    chat = openai_history() | {"reasoning_effort": "high"}
    chat["messages"] = chat["messages"][:5]
    body = am.render_request(openai_chat.parse_request(chat))
    assert "thinking" not in body
    anthropic_accepts(body)


def test_adaptive_thinking_and_unknown_fields_pass_through_natively() -> None:
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "cache_control": {"type": "ephemeral"},
        "service_tier": "auto",
    }
    req = am.parse_request(body)
    assert req.reasoning == Reasoning(effort="high")
    assert am.render_request(req) == body
    # Another format's renderer sees only the canonical effort.
    assert openai_chat.render_request(req)["reasoning_effort"] == "high"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "model"),
        ({"model": MODEL, "messages": []}, "max_tokens"),
        ({"model": MODEL, "max_tokens": 1}, "messages"),
        ({"model": MODEL, "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        (
            {
                "model": MODEL,
                "max_tokens": 1,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "document"}]}],
            },
            "messages.0.content.1.type",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 1,
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
                ],
            },
            "messages.0.content.0.source",
        ),
        ({"model": MODEL, "max_tokens": 1, "messages": [], "system": [{"type": "image"}]}, "system.0"),
    ],
)
def test_parse_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(am.AnthropicFormatError) as raised:
        am.parse_request(body)
    assert raised.value.param == param
    assert str(raised.value).startswith(param + ": ")


def test_typed_server_tools_are_dropped_and_tool_choice_maps() -> None:
    body = {
        "model": MODEL,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [WEATHER, {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        "tool_choice": {"type": "tool", "name": "get_weather"},
    }
    req = am.parse_request(body)
    assert [t.name for t in req.tools] == ["get_weather"]
    assert req.tool_choice == ToolChoiceTool("get_weather")
    assert am.render_tool_choice("required") == {"type": "any"}
    assert am.render_tool_choice("none", False) == {"type": "none"}
    assert am.render_tool_choice(None, False) == {"type": "auto", "disable_parallel_tool_use": True}
    assert am.render_tool_choice(None) is None


# ---------------------------------------------------------------------------------------------
# Responses


def test_response_round_trip_and_usage_totals() -> None:
    body = full_request()
    body["messages"] = body["messages"][:1]
    body["tools"] = [WEATHER]
    message = anthropic_accepts(body)
    resp = am.parse_response(message)
    usage = message["usage"]
    assert resp.usage == Usage(
        input_tokens=usage["input_tokens"] + usage["cache_creation_input_tokens"] + usage["cache_read_input_tokens"],
        output_tokens=usage["output_tokens"],
        cache_read_tokens=usage["cache_read_input_tokens"],
        cache_write_tokens=usage["cache_creation_input_tokens"],
        reasoning_tokens=usage["output_tokens_details"]["thinking_tokens"],
    )
    assert resp.finish_reason == "tool_calls"
    rendered = am.render_response(resp)
    assert rendered["content"] == message["content"]
    assert rendered["stop_reason"] == "tool_use"
    assert {k: rendered["usage"][k] for k in rendered["usage"]} == {k: message["usage"][k] for k in rendered["usage"]}
    # And the other adapter renders it for an OpenAI client: thinking as reasoning_content.
    chat = openai_chat.render_response(resp)
    assert chat["usage"]["prompt_tokens"] == resp.usage.input_tokens
    assert chat["choices"][0]["message"]["reasoning_content"] == message["content"][0]["thinking"]


def test_render_response_from_an_openai_answer_is_a_valid_anthropic_message() -> None:
    raw = openai_build_reply(
        orjson.dumps({"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}), cached_ratio=0.5
    )
    resp = openai_chat.parse_response(orjson.loads(raw.body))
    resp = ChatResponse(resp.id, resp.model, (ThinkingPart("reasoning"), *resp.content), resp.finish_reason, resp.usage)
    message = anthropic.types.Message.model_validate(am.render_response(resp))
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].signature == ""
    assert message.usage.input_tokens + message.usage.cache_read_input_tokens == resp.usage.input_tokens
    assert message.usage.output_tokens_details.thinking_tokens == resp.usage.reasoning_tokens
    assert message.stop_reason == "end_turn"
    assert am.render_response(resp, stop_sequence="END")["stop_reason"] == "stop_sequence"


# ---------------------------------------------------------------------------------------------
# Errors


def _anthropic_error(reply: Any) -> tuple[int, dict[str, Any]]:
    return reply.status, orjson.loads(reply.body)


def test_anthropic_errors_to_openai() -> None:
    status, body = am.error_to_openai(*_anthropic_error(anthropic_sim.context_overflow_reply(0)))
    assert status == 400
    assert body["error"]["code"] == "context_length_exceeded" and body["error"]["param"] == "messages"
    assert body["error"]["message"].startswith("This model's maximum context length is 200000 tokens.")
    assert "prompt is too long: 210000 tokens > 200000 maximum" in body["error"]["message"]

    assert am.error_to_openai(*_anthropic_error(anthropic_sim.rate_limit_reply()))[1]["error"]["code"] == (
        "rate_limit_exceeded"
    )
    assert am.error_to_openai(401, {"type": "error", "error": {"type": "authentication_error", "message": "no"}}) == (
        401,
        {"error": {"message": "no", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}},
    )
    status, body = am.error_to_openai(
        529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    assert (status, body["error"]["type"], body["error"]["code"]) == (503, "server_error", "overloaded")
    assert am.error_to_openai(502, b"<html>bad gateway</html>")[1]["error"]["message"] == "upstream error (HTTP 502)"


def test_openai_errors_to_anthropic() -> None:
    overflow = openai_build_reply(
        orjson.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "[[sim:context-overflow]]"}]})
    )
    status, body = am.error_from_openai(overflow.status, orjson.loads(overflow.body))
    assert (status, body["type"], body["error"]["type"]) == (400, "error", "invalid_request_error")
    assert body["error"]["message"] == "prompt is too long: 128001 tokens > 128000 maximum"

    limited = openai_build_reply(
        orjson.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "[[sim:429]]"}]})
    )
    assert am.error_from_openai(limited.status, orjson.loads(limited.body))[1]["error"]["type"] == "rate_limit_error"
    by_status = {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        418: "invalid_request_error",
        500: "api_error",
        503: "overloaded_error",
    }
    for status, kind in by_status.items():
        assert am.error_from_openai(status, {"error": {"message": "m", "type": "x"}})[1]["error"]["type"] == kind


def test_stream_errors_both_ways() -> None:
    error = am.stream_error_from_anthropic({"type": "overloaded_error", "message": "Overloaded"})
    assert (error.type, error.code) == ("server_error", "overloaded")
    assert am.stream_error_to_anthropic(error) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    overflow = am.stream_error_from_anthropic(
        {"type": "invalid_request_error", "message": "prompt is too long: 210000 tokens > 200000 maximum"}
    )
    assert overflow.code == "context_length_exceeded"
    assert am.stream_error_to_anthropic(overflow)["error"] == {
        "type": "invalid_request_error",
        "message": "prompt is too long: 210000 tokens > 200000 maximum",
    }


# ---------------------------------------------------------------------------------------------
# count_tokens


def test_count_tokens_requests() -> None:
    body = full_request()
    for key in ("max_tokens", "stream", "top_p", "top_k", "stop_sequences", "metadata"):
        body.pop(key)
    req = am.parse_count_tokens_request(body)
    rendered = am.render_count_tokens_request(req)
    assert rendered == body
    reply = anthropic_sim.count_tokens_reply(orjson.dumps(rendered))
    assert reply.status == 200
    assert am.count_tokens_response(7) == {"input_tokens": 7}


def test_estimate_input_tokens() -> None:
    req = am.parse_request(full_request())
    estimate = estimate_input_tokens(req)
    texts = [
        "You are a coding assistant.",
        "Repository rules: be brief.",
        "What is in this screenshot, and the weather in Paris?",
        # the last assistant turn's thinking counts; a redacted block is opaque and does not
        THINKING,
        "Let me check.",
        'get_weather{"city":"Paris"}',
        'read_file{"path":"a.py"}',
        "sunny, 21C",
        "no such file",
        "Thanks.",
        json.dumps([am.render_tool(t) for t in req.tools], separators=(",", ":")),
    ]
    assert estimate == count_tokens("\n".join(texts)) + 4 * 3 + 2 * IMAGE_TOKENS
