"""Unit tests for spendgate_simulator.responses: the pure request → reply functions, no sockets."""

from __future__ import annotations

import math

import orjson
import pytest

from spendgate_simulator.config import SimulatorConfig
from spendgate_simulator.responses import (
    CREATED,
    SYSTEM_FINGERPRINT,
    build_reply,
    find_markers,
    is_reasoning_model,
    plan_answer,
    prompt_tokens,
)

USER = [{"role": "user", "content": "What does this repo do?"}]
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "metric": {"type": "boolean"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "note": {"type": ["null", "string"]},
    },
}


def _raw(**body: object) -> bytes:
    return orjson.dumps({"model": "gpt-4.1", "messages": USER, **body})


def _chunks(events: tuple[bytes, ...]) -> list[dict]:
    assert events[-1] == b"data: [DONE]\n\n"
    for event in events:
        assert event.startswith(b"data: ")
        assert event.endswith(b"\n\n")
    return [orjson.loads(e[6:-2]) for e in events[:-1]]


@pytest.mark.parametrize("include_usage", [True, False])
@pytest.mark.parametrize("tools", [None, [{"type": "function", "function": {"name": "w", "parameters": WEATHER}}]])
def test_stream_events_are_exactly_orjson_of_each_chunk(include_usage: bool, tools: object) -> None:
    # The events are assembled from pre-encoded pieces; they must equal a plain dump of the object.
    reply = build_reply(_raw(stream=True, stream_options={"include_usage": include_usage}, tools=tools))
    for event, chunk in zip(reply.events, _chunks(reply.events), strict=False):
        assert event == b"data: " + orjson.dumps(chunk) + b"\n\n"


def test_stream_chunk_shape() -> None:
    reply = build_reply(_raw(stream=True, stream_options={"include_usage": True}), chunks=3)
    chunks = _chunks(reply.events)
    first = chunks[0]
    assert list(first) == ["id", "object", "created", "model", "system_fingerprint", "choices", "usage"]
    assert first["object"] == "chat.completion.chunk"
    assert (first["created"], first["system_fingerprint"], first["model"]) == (CREATED, SYSTEM_FINGERPRINT, "gpt-4.1")
    assert first["id"].startswith("chatcmpl-sim") and len(first["id"]) == len("chatcmpl-sim") + 24
    assert first["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "", "refusal": None},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert all(list(c["choices"][0]["delta"]) == ["content"] for c in chunks[1:4])
    assert chunks[4]["choices"][0]["delta"] == {}
    assert chunks[4]["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in chunks[:5])
    assert chunks[5]["choices"] == []
    assert chunks[5]["usage"]["total_tokens"] > 0
    assert len(chunks) == 6
    assert reply.delta_events == 3


def test_without_include_usage_there_is_no_usage_key_at_all() -> None:
    reply = build_reply(_raw(stream=True))
    assert all(b'"usage"' not in e for e in reply.events)
    assert _chunks(reply.events)[-1]["choices"][0]["finish_reason"] == "stop"


def test_same_body_in_any_key_order_gives_identical_bytes() -> None:
    a = b'{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    b = b'{"messages": [{"content": "hi", "role": "user"}], "stream": true, "model": "gpt-4.1"}'
    assert build_reply(a) == build_reply(b)
    assert build_reply(a).events  # and it is a real answer


def test_id_and_words_change_with_the_conversation() -> None:
    other = orjson.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "something else"}]})
    assert orjson.loads(build_reply(_raw()).body)["id"] != orjson.loads(build_reply(other).body)["id"]


def test_text_answer_has_chunks_deltas_and_word_token_usage() -> None:
    body = orjson.loads(_raw())
    answer = plan_answer(body, chunks=7)
    assert len(answer.content_deltas) == 7
    words = "".join(answer.content_deltas).split()
    assert all(2 <= len(d.split()) <= 4 for d in answer.content_deltas)
    assert answer.usage["completion_tokens"] == len(words)
    assert answer.finish_reason == "stop"
    # "What does this repo do?" is 23 characters: ceil(23 / 4) + 4 per message.
    assert answer.usage["prompt_tokens"] == 6 + 4
    assert answer.usage["total_tokens"] == answer.usage["prompt_tokens"] + answer.usage["completion_tokens"]


def test_prompt_tokens_count_text_parts_and_tools() -> None:
    messages = [
        {"role": "system", "content": "x" * 10},
        {"role": "user", "content": [{"type": "text", "text": "y" * 6}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": None, "tool_calls": []},
    ]
    tools = [{"type": "function", "function": {"name": "f"}}]
    tools_chars = len(b'[{"function":{"name":"f"},"type":"function"}]')
    assert prompt_tokens(messages, None) == math.ceil(16 / 4) + 12
    assert prompt_tokens(messages, tools) == math.ceil(16 / 4) + 12 + math.ceil(tools_chars / 4)


def test_cached_ratio_reports_a_floor_share_of_prompt_tokens() -> None:
    usage = plan_answer(orjson.loads(_raw()), cached_ratio=0.75).usage
    assert usage["prompt_tokens_details"] == {"cached_tokens": math.floor(10 * 0.75), "audio_tokens": 0}


@pytest.mark.parametrize(
    ("model", "reasoning"),
    [
        *[("o4-mini", True), ("o3", True), ("gpt-5", True), ("gpt-5-mini", True), ("acme-api/o1", True)],
        *[("gpt-4.1", False), ("claude-sonnet-4-5", False), ("omni", False), ("gpt-4o", False)],
    ],
)
def test_reasoning_models_bill_twice_the_visible_tokens_as_reasoning(model: str, reasoning: bool) -> None:
    assert is_reasoning_model(model) is reasoning
    usage = plan_answer({"model": model, "messages": USER}).usage
    visible = usage["completion_tokens"] // 3 if reasoning else usage["completion_tokens"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == (2 * visible if reasoning else 0)


def test_max_tokens_truncates_with_finish_reason_length() -> None:
    answer = plan_answer({"model": "gpt-4.1", "messages": USER, "max_tokens": 5})
    assert len("".join(answer.content_deltas).split()) == 5
    assert answer.usage["completion_tokens"] == 5
    assert answer.finish_reason == "length"
    # max_completion_tokens is the newer spelling of the same limit.
    assert plan_answer({"model": "gpt-4.1", "messages": USER, "max_completion_tokens": 5}) == answer
    # A limit above the natural length changes nothing.
    assert plan_answer({"model": "gpt-4.1", "messages": USER, "max_tokens": 10_000}).finish_reason == "stop"


def test_max_tokens_of_a_reasoning_model_covers_its_reasoning() -> None:
    answer = plan_answer({"model": "o4-mini", "messages": USER, "max_tokens": 10})
    assert answer.usage["completion_tokens"] == 9  # 3 visible words + 6 reasoning tokens
    assert answer.finish_reason == "length"
    tiny = plan_answer({"model": "o4-mini", "messages": USER, "max_tokens": 2})
    assert (tiny.content_deltas, tiny.usage["completion_tokens"], tiny.finish_reason) == ((), 0, "length")


def test_tool_arguments_come_from_the_schema_in_sorted_order() -> None:
    body = {"model": "gpt-4.1", "messages": USER, "tools": [{"type": "function", "name": "w", "parameters": WEATHER}]}
    (call,) = plan_answer(body).tool_calls
    args = orjson.loads(call.arguments)
    assert list(args) == ["city", "days", "metric", "note", "unit"]
    assert isinstance(args["city"], str) and args["city"]
    assert (args["days"], args["metric"], args["unit"]) == (1, True, "celsius")
    assert isinstance(args["note"], str)
    assert call.id.startswith("call_") and len(call.id) == 29


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, ["a", "b"]),
        ({"parallel_tool_calls": False}, ["a"]),
        ({"tool_choice": "none"}, []),
        ({"tool_choice": "required"}, ["a", "b"]),
        ({"tool_choice": {"type": "function", "function": {"name": "b"}}}, ["b"]),
        ({"tool_choice": {"type": "function", "name": "b"}}, ["b"]),
    ],
)
def test_which_tools_are_called(extra: dict, expected: list[str]) -> None:
    tools = [
        {"type": "function", "function": {"name": "a", "parameters": {}}},
        {"type": "function", "name": "b", "parameters": {}},
        {"type": "web_search"},  # not a function tool: ignored
    ]
    answer = plan_answer({"model": "gpt-4.1", "messages": USER, "tools": tools, **extra})
    assert [c.name for c in answer.tool_calls] == expected
    assert answer.finish_reason == ("tool_calls" if expected else "stop")


def test_a_tool_result_last_gets_a_text_answer() -> None:
    messages = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function"}]},
        {"role": "tool", "tool_call_id": "c", "content": "sunny"},
    ]
    tools = [{"type": "function", "function": {"name": "a"}}]
    answer = plan_answer({"model": "gpt-4.1", "messages": messages, "tools": tools})
    assert (answer.tool_calls, answer.finish_reason) == ((), "stop")
    assert answer.content_deltas


def test_streamed_tool_call_opens_then_sends_argument_fragments() -> None:
    tools = [{"type": "function", "function": {"name": "w", "parameters": WEATHER}}]
    reply = build_reply(_raw(stream=True, tools=tools, parallel_tool_calls=False))
    chunks = _chunks(reply.events)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None, "refusal": None}
    opening = chunks[1]["choices"][0]["delta"]["tool_calls"][0]
    assert opening["index"] == 0 and opening["type"] == "function"
    assert opening["function"] == {"name": "w", "arguments": ""}
    fragments = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[2:-1]]
    assert len(fragments) == 4
    assert all(list(f) == ["index", "function"] for f in fragments)
    arguments = "".join(f["function"]["arguments"] for f in fragments)
    assert orjson.loads(arguments)["unit"] == "celsius"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_markers_are_read_from_the_last_user_message_only() -> None:
    messages = [
        {"role": "user", "content": "earlier [[sim:500]]"},
        {"role": "assistant", "content": "[[sim:429]]"},
        {"role": "user", "content": [{"type": "text", "text": "now [[sim:drop-after=3]] [[sim:slow=25]]"}]},
    ]
    markers = find_markers(messages)
    assert (markers.server_error, markers.rate_limit) == (False, False)
    assert (markers.drop_after, markers.slow_ms) == (3, 25.0)


@pytest.mark.parametrize(
    ("marker", "status", "code"),
    [
        ("[[sim:429]]", 429, "rate_limit_exceeded"),
        ("[[sim:500]]", 500, None),
        ("[[sim:context-overflow]]", 400, "context_length_exceeded"),
    ],
)
def test_error_markers(marker: str, status: int, code: str | None) -> None:
    reply = build_reply(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": f"hi {marker}"}]}))
    assert reply.status == status
    error = orjson.loads(reply.body)["error"]
    assert list(error) == ["message", "type", "param", "code"]
    assert error["code"] == code
    if status == 429:
        assert dict(reply.headers) == {"retry-after": "1"}
        assert error["type"] == "requests"


@pytest.mark.parametrize(
    ("raw", "param", "code"),
    [
        (b"{not json", None, None),
        (b"[1, 2]", None, None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model", "missing_required_parameter"),
        (b'{"model": "m"}', "messages", "missing_required_parameter"),
        (b'{"model": "m", "messages": []}', "messages", "empty_array"),
        (b'{"model": "m", "messages": "hi"}', "messages", "invalid_type"),
        (b'{"model": "m", "messages": ["hi"]}', "messages[0]", "invalid_type"),
        (b'{"model": "m", "messages": [{"role": "user"}], "max_tokens": 0}', "max_tokens", "integer_below_min_value"),
    ],
)
def test_bad_requests_get_openai_style_400s(raw: bytes, param: str | None, code: str | None) -> None:
    reply = build_reply(raw)
    assert reply.status == 400
    error = orjson.loads(reply.body)["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert error["message"]


def test_config_reports_every_problem_at_once() -> None:
    with pytest.raises(ValueError, match="chunks") as info:
        SimulatorConfig(chunks=0, cached_ratio=2, error_rate_429=0.7, error_rate_500=0.7)
    assert "cached_ratio" in str(info.value) and "must not exceed 1" in str(info.value)
