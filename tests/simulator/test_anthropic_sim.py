"""The simulated Anthropic upstream (``/v1/messages``), driven by the official ``anthropic`` SDK and raw httpx.

If the SDK streams, accumulates and raises on these answers exactly as it does against the real
API, the simulator speaks real Anthropic; the pure-function tests pin the token and cache maths.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import anthropic
import httpx
import orjson
import pytest

from spendgate_simulator import SimulatorConfig, create_app
from spendgate_simulator import anthropic as sim
from tests.support.aio_server import ServerHandle, serve_app

MODEL = "claude-sonnet-4-6"
USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}
TIME_TOOL = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
SYSTEM = [
    {"type": "text", "text": "You are a careful assistant. " * 20, "cache_control": {"type": "ephemeral"}},
    {"type": "text", "text": "Today is Monday."},
]
THINKING = {"type": "enabled", "budget_tokens": 2000}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with serve_app(lambda: create_app(SimulatorConfig(chunks=5, api_key="sk-ant-sim"))) as handle:
        yield handle


@pytest.fixture
def client(server: ServerHandle) -> anthropic.Anthropic:
    # No retries: a 429 or 500 must reach the test, not be retried away.
    return anthropic.Anthropic(base_url=server.url, api_key="sk-ant-sim", max_retries=0)


@pytest.fixture(autouse=True)
def _no_sdk_warnings() -> Iterator[None]:
    # A deprecation warning from the SDK would mean a field or model the real API no longer takes.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _unique(text: str) -> list[dict]:
    """A user turn no other test sends."""
    return [{"role": "user", "content": text}]


def _system(tag: str) -> list[dict]:
    """SYSTEM with a cached block no other test sends, so the shared prompt cache starts cold for it."""
    return [{**SYSTEM[0], "text": f"{tag}: {SYSTEM[0]['text']}"}, SYSTEM[1]]


# ---------------------------------------------------------------------------------------------
# The official SDK


def test_sdk_streams_thinking_then_text_then_parallel_tool_use(client: anthropic.Anthropic) -> None:
    kinds: list[str] = []
    with client.messages.stream(
        model=MODEL, max_tokens=4000, messages=USER, tools=[WEATHER_TOOL, TIME_TOOL], thinking=THINKING
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                kinds.append(event.delta.type)
        message = stream.get_final_message()

    assert [b.type for b in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    thinking, _, weather, clock = message.content
    assert sim.thinking_signature(thinking.thinking) == thinking.signature
    assert {"thinking_delta", "signature_delta", "text_delta", "input_json_delta"} == set(kinds)
    assert weather.name == "get_weather" and weather.id.startswith("toolu_")
    assert isinstance(weather.input["city"], str) and weather.input["days"] == 1
    assert (clock.name, clock.input) == ("get_time", {})
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens_details is not None
    assert 0 < message.usage.output_tokens_details.thinking_tokens < message.usage.output_tokens


def test_streamed_and_non_streamed_answers_agree(client: anthropic.Anthropic) -> None:
    kwargs = {"model": MODEL, "max_tokens": 4000, "messages": USER, "tools": [WEATHER_TOOL], "thinking": THINKING}
    with client.messages.stream(**kwargs) as stream:
        streamed = stream.get_final_message()
    whole = client.messages.create(**kwargs)
    assert streamed.id == whole.id
    assert [b.model_dump() for b in whole.content] == [
        b.model_dump(exclude={"parsed_output"}) for b in streamed.content
    ]
    assert whole.usage.output_tokens == streamed.usage.output_tokens
    assert whole.stop_reason == streamed.stop_reason


def test_plain_text_answer(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=500, messages=USER)
    assert [b.type for b in message.content] == ["text"]
    text = message.content[0].text
    assert text.endswith(".") and text[0].isupper()
    assert message.stop_reason == "end_turn"
    assert len(text.split()) == message.usage.output_tokens
    assert message.id.startswith("msg_")


def test_cache_control_prefix_is_written_once_then_read(client: anthropic.Anthropic) -> None:
    messages, system = _unique("summarise the repository layout"), _system("cache test")
    first = client.messages.create(model=MODEL, max_tokens=50, system=system, messages=messages)
    second = client.messages.create(model=MODEL, max_tokens=50, system=system, messages=messages)
    prefix = first.usage.cache_creation_input_tokens
    assert prefix > 0 and first.usage.cache_read_input_tokens == 0
    assert (0, prefix) == (second.usage.cache_creation_input_tokens, second.usage.cache_read_input_tokens)
    assert first.usage.input_tokens == second.usage.input_tokens  # the uncached remainder
    assert first.usage.cache_creation is not None
    assert prefix == first.usage.cache_creation.ephemeral_5m_input_tokens
    # count_tokens reports the whole input: uncached + written (or read).
    counted = client.messages.count_tokens(model=MODEL, system=system, messages=messages)
    assert first.usage.input_tokens + prefix == counted.input_tokens


def test_streamed_message_start_carries_cache_usage(client: anthropic.Anthropic) -> None:
    messages, system = _unique("streamed"), _system("streamed cache test")
    starts = []
    for _ in range(2):
        with client.messages.stream(model=MODEL, max_tokens=50, system=system, messages=messages) as stream:
            for event in stream:
                if event.type == "message_start":
                    starts.append(event.message.usage)
    assert starts[0].cache_creation_input_tokens == starts[1].cache_read_input_tokens > 0
    assert 0 == starts[0].cache_read_input_tokens == starts[1].cache_creation_input_tokens


def test_tool_loop_with_thinking_blocks_sent_back(client: anthropic.Anthropic) -> None:
    tools = [WEATHER_TOOL]
    first = client.messages.create(model=MODEL, max_tokens=4000, messages=USER, tools=tools, thinking=THINKING)
    call = next(b for b in first.content if b.type == "tool_use")
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}]}
    history = [*USER, {"role": "assistant", "content": first.content}, result]

    second = client.messages.create(model=MODEL, max_tokens=4000, messages=history, tools=tools, thinking=THINKING)
    assert second.stop_reason == "end_turn"
    assert [b.type for b in second.content] == ["thinking", "text"]

    # A gateway that drops the thinking block on replay gets the real API's refusal.
    without = [b for b in first.content if b.type != "thinking"]
    with pytest.raises(anthropic.BadRequestError, match="must start with a thinking block"):
        client.messages.create(
            model=MODEL,
            max_tokens=4000,
            messages=[*USER, {"role": "assistant", "content": without}, result],
            tools=tools,
            thinking=THINKING,
        )
    # ... and one that rewrites the thinking text loses the signature's validity.
    forged = [{"type": "thinking", "thinking": "edited", "signature": first.content[0].signature}, *without]
    with pytest.raises(anthropic.BadRequestError, match="Invalid `signature`"):
        client.messages.create(
            model=MODEL,
            max_tokens=4000,
            messages=[*USER, {"role": "assistant", "content": forged}, result],
            tools=tools,
            thinking=THINKING,
        )


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ({"type": "auto"}, ["text", "tool_use", "tool_use"]),
        ({"type": "any"}, ["tool_use", "tool_use"]),
        ({"type": "any", "disable_parallel_tool_use": True}, ["tool_use"]),
        ({"type": "tool", "name": "get_time"}, ["tool_use"]),
        ({"type": "none"}, ["text"]),
    ],
)
def test_tool_choice(client: anthropic.Anthropic, tool_choice: dict, expected: list[str]) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=500, messages=USER, tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=tool_choice
    )
    assert expected == [b.type for b in message.content]
    if tool_choice["type"] == "tool":
        assert message.content[0].name == "get_time"


def test_max_tokens_and_stop_sequences(client: anthropic.Anthropic) -> None:
    short = client.messages.create(model=MODEL, max_tokens=3, messages=USER)
    assert (short.stop_reason, len(short.content[0].text.split())) == ("max_tokens", 3)

    full = client.messages.create(model=MODEL, max_tokens=500, messages=USER).content[0].text
    word = full.split()[4]
    cut = client.messages.create(model=MODEL, max_tokens=500, messages=USER, stop_sequences=[word])
    assert ("stop_sequence", word) == (cut.stop_reason, cut.stop_sequence)
    assert full.startswith(cut.content[0].text) and word not in cut.content[0].text


# ---------------------------------------------------------------------------------------------
# Errors, in Anthropic's shapes


def test_fault_markers(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model=MODEL, max_tokens=10, messages=_unique("go [[sim:429]]"))
    assert limited.value.response.headers["retry-after"] == "1"
    assert limited.value.body["error"]["type"] == "rate_limit_error"

    with pytest.raises(anthropic.InternalServerError) as failed:
        client.messages.create(model=MODEL, max_tokens=10, messages=_unique("go [[sim:500]]"))
    assert (failed.value.body) == {
        "type": "error",
        "error": {"type": "api_error", "message": "Internal server error (simulated)"},
    }

    with pytest.raises(anthropic.BadRequestError) as overflow:
        client.messages.create(model=MODEL, max_tokens=10, messages=_unique("go [[sim:context-overflow]]"))
    assert overflow.value.body["error"]["message"] == "prompt is too long: 210000 tokens > 200000 maximum"


def test_drop_after_cuts_the_stream(client: anthropic.Anthropic) -> None:
    # The client must see the cut as an error (never as a finished message) after exactly two deltas.
    # Which class it raises is the SDK's business: some releases surface the transport's
    # RemoteProtocolError, newer ones wrap it in APIConnectionError; the cause names the cut either way.
    seen: list[str] = []
    with (
        pytest.raises(Exception) as raised,
        client.messages.stream(model=MODEL, max_tokens=500, messages=_unique("go [[sim:drop-after=2]]")) as stream,
    ):
        for event in stream:
            if event.type == "content_block_delta":
                seen.append(event.delta.text)
    assert len(seen) == 2
    assert "incomplete" in _error_chain(raised.value)


def _error_chain(error: BaseException | None) -> str:
    """The messages of an exception and everything it was raised from, lower-cased."""
    parts = []
    while error is not None:
        parts.append(f"{type(error).__name__}: {error}".lower())
        error = error.__cause__ or error.__context__
    return " <- ".join(parts)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": MODEL, "messages": USER}, "max_tokens: Field required"),
        ({"model": MODEL, "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]}, 'role "system"'),
        ({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": ""}]}, "must be non-empty"),
        (
            {
                "model": MODEL,
                "max_tokens": 10,
                "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]}],
            },
            "unexpected `tool_use_id`",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 10,
                "messages": [
                    *USER,
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_a", "name": "t", "input": {}}]},
                    {"role": "user", "content": "and?"},
                ],
            },
            "without `tool_result` blocks immediately after: toolu_a",
        ),
        ({"model": MODEL, "max_tokens": 1000, "messages": USER, "thinking": THINKING}, "must be greater than"),
        (
            {"model": MODEL, "max_tokens": 5000, "messages": USER, "thinking": {"type": "enabled", "budget_tokens": 5}},
            "budget_tokens: Input should be greater than or equal to 1024",
        ),
    ],
)
def test_bad_requests_get_anthropic_400s(server: ServerHandle, body: dict, message: str) -> None:
    response = httpx.post(server.url + "/v1/messages", json=body, headers={"x-api-key": "sk-ant-sim"})
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


def test_auth_by_x_api_key_or_bearer(server: ServerHandle) -> None:
    ok = anthropic.Anthropic(base_url=server.url, api_key="sk-ant-sim", max_retries=0)
    assert ok.messages.create(model=MODEL, max_tokens=5, messages=USER).content
    bearer = anthropic.Anthropic(base_url=server.url, auth_token="sk-ant-sim", max_retries=0)
    assert bearer.messages.create(model=MODEL, max_tokens=5, messages=USER).content

    with pytest.raises(anthropic.AuthenticationError) as wrong:
        anthropic.Anthropic(base_url=server.url, api_key="sk-wrong", max_retries=0).messages.create(
            model=MODEL, max_tokens=5, messages=USER
        )
    assert wrong.value.body["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    assert "sk-wrong" not in wrong.value.response.text

    body = {"model": MODEL, "max_tokens": 5, "messages": USER}
    by_header = httpx.post(server.url + "/v1/messages", json=body, headers={"x-api-key": "sk-ant-sim"})
    assert by_header.status_code == 200
    wrong_header = httpx.post(server.url + "/v1/messages", json=body, headers={"x-api-key": "sk-nope"})
    assert (wrong_header.status_code, wrong_header.json()["error"]["message"]) == (401, "invalid x-api-key")
    missing = httpx.post(server.url + "/v1/messages", json=body)
    assert (missing.status_code, missing.json()["error"]["message"]) == (401, "x-api-key header is required")
    counted = httpx.post(server.url + "/v1/messages/count_tokens", json={"model": MODEL, "messages": USER})
    assert counted.status_code == 401


def test_recorded_with_anthropic_headers(server: ServerHandle, client: anthropic.Anthropic) -> None:
    httpx.delete(server.url + "/_sim/requests")
    client.messages.create(model=MODEL, max_tokens=5, messages=USER)
    [recorded] = httpx.get(server.url + "/_sim/requests").json()
    assert recorded["path"] == "/v1/messages"
    assert recorded["headers"]["anthropic-version"]
    # This SDK version sends its key as a bearer token; older ones (and curl users) use x-api-key.
    sent = recorded["headers"].get("x-api-key") or recorded["headers"]["authorization"].removeprefix("Bearer ")
    assert sent == "sk-ant-sim"


# ---------------------------------------------------------------------------------------------
# Raw bytes and the pure functions


def _events(writes: tuple[bytes, ...]) -> list[tuple[str, dict]]:
    out = []
    for frame in b"".join(writes).split(b"\n\n"):
        if not frame:
            continue
        name, data = frame.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        out.append((name[7:].decode(), orjson.loads(data[6:])))
    return out


def test_event_names_match_their_data_and_order_is_anthropics() -> None:
    raw = orjson.dumps(
        {
            "model": MODEL,
            "max_tokens": 4000,
            "stream": True,
            "messages": USER,
            "tools": [WEATHER_TOOL],
            "thinking": THINKING,
        }
    )
    reply = sim.build_reply(raw, cache=None, chunks=3)
    events = _events(reply.events)
    assert all(name == data["type"] for name, data in events)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    # Each block is started, receives deltas for its own index only, then stops, in order.
    open_index = None
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None
            open_index = data["index"]
        elif name == "content_block_delta":
            assert open_index == data["index"]
        elif name == "content_block_stop":
            assert open_index == data["index"]
            open_index = None
    tool_start = next(d for n, d in events if n == "content_block_start" and d["content_block"]["type"] == "tool_use")
    assert tool_start["content_block"]["input"] == {}
    first_fragment = next(d for n, d in events if n == "content_block_delta" and d["index"] == tool_start["index"])
    assert first_fragment["delta"]["partial_json"] == ""  # as the real API opens every input
    # One write per delta: the opening write, the delta writes, the closing write.
    deltas = sum(1 for name, _ in events if name == "content_block_delta")
    assert (deltas, deltas + 2) == (reply.delta_events, len(reply.events))


def test_usage_counts_by_hand() -> None:
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "system": "abcd" * 10,
        "messages": [{"role": "user", "content": "x" * 9}],
    }
    # system: ceil(40/4) = 10; message: 4 + ceil(9/4) = 7
    assert sim.input_tokens(body) == 17
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    body["messages"] = [{"role": "user", "content": [image, {"type": "text", "text": "what?"}]}]
    assert sim.input_tokens(body) == 10 + 4 + sim.IMAGE_TOKENS + 2


def test_prompt_cache_reads_the_longest_seen_breakpoint_and_writes_the_rest() -> None:
    cache = sim.PromptCache()
    system = [{"type": "text", "text": "a" * 400, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    turn1 = [{"role": "user", "content": [{"type": "text", "text": "b" * 80, "cache_control": {"type": "ephemeral"}}]}]
    body = {"model": MODEL, "max_tokens": 10, "system": system, "messages": turn1}
    assert sim.InputUsage(0, 100 + 24, 0, "5m") == sim.input_usage(body, cache)
    assert sim.InputUsage(0, 0, 124, "5m") == sim.input_usage(body, cache)
    # A later turn: the old prefix is read, the new breakpoint's extra is written.
    turn2 = {"role": "user", "content": [{"type": "text", "text": "c" * 8, "cache_control": {"type": "ephemeral"}}]}
    body["messages"] = [*turn1, {"role": "assistant", "content": "ok"}, turn2]
    assert sim.InputUsage(0, 5 + 6, 124, "5m") == sim.input_usage(body, cache)
    # Another model shares nothing; a 1h breakpoint reports its write under the 1h bucket.
    other = {
        "model": "claude-haiku-4-5",
        "max_tokens": 10,
        "system": system,
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert sim.InputUsage(5, 100, 0, "1h") == sim.input_usage(other, cache)
    answer = sim.plan_answer(other, sim.InputUsage(5, 100, 0, "1h"), chunks=2)
    assert answer.usage["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 100}


def test_count_tokens_needs_no_max_tokens() -> None:
    reply = sim.count_tokens_reply(orjson.dumps({"model": MODEL, "messages": USER, "tools": [WEATHER_TOOL]}))
    assert reply.status == 200
    assert {"input_tokens": sim.input_tokens({"messages": USER, "tools": [WEATHER_TOOL]})} == orjson.loads(reply.body)
