"""The simulated provider over HTTP, driven by the official ``openai`` client (and httpx for raw bytes)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest

from spendgate_simulator import SimulatorConfig, create_app
from spendgate_simulator.config import DEFAULT_MODELS
from tests.support.aio_server import ServerHandle, serve_app

USER = [{"role": "user", "content": "Explain what this function does."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with serve_app(lambda: create_app(SimulatorConfig(chunks=5))) as handle:
        yield handle


@pytest.fixture
def client(server: ServerHandle) -> openai.OpenAI:
    # No retries: a 429 or 500 must reach the test, not be retried away.
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


def _accumulate(stream: openai.Stream) -> tuple[str, list, str | None, object]:
    """Text, tool calls (as {index: [id, name, args]}), finish reason and usage of a stream."""
    text, calls, finish, usage = "", {}, None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, [None, None, ""])
                if call.id:
                    entry[0], entry[1] = call.id, call.function.name
                entry[2] += call.function.arguments or ""
            finish = choice.finish_reason or finish
    return text, [calls[i] for i in sorted(calls)], finish, usage


def test_non_streaming_answer(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="some-unlisted-model", messages=USER)
    assert completion.object == "chat.completion"
    assert completion.model == "some-unlisted-model"
    assert completion.id.startswith("chatcmpl-sim")
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content.endswith(".")
    assert completion.usage.completion_tokens == len(choice.message.content.split())
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_stream_with_usage_matches_the_non_streamed_answer(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model="gpt-4.1", messages=USER)
    stream = client.chat.completions.create(
        model="gpt-4.1", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    text, calls, finish, usage = _accumulate(stream)
    assert (text, calls, finish) == (full.choices[0].message.content, [], "stop")
    assert usage == full.usage


def test_stream_without_include_usage_has_no_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="gpt-4.1", messages=USER, stream=True)
    chunks = list(stream)
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len(chunks) == 1 + 5 + 1  # role, five content deltas, finish


def test_raw_stream_is_byte_identical_across_calls_and_key_orders(server: ServerHandle) -> None:
    url = server.url + "/v1/chat/completions"
    one = (
        b'{"model":"gpt-5","stream":true,"stream_options":{"include_usage":true},'
        b'"messages":[{"role":"user","content":"hi"}]}'
    )
    two = (
        b'{"messages":[{"content":"hi","role":"user"}],'
        b'"stream_options":{"include_usage":true},"model":"gpt-5","stream":true}'
    )
    with httpx.Client() as http:
        bodies = []
        for raw in (one, one, two):
            response = http.post(url, content=raw, headers={"content-type": "application/json"})
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            bodies.append(response.content)
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0].endswith(b"data: [DONE]\n\n")


def test_each_event_arrives_as_its_own_chunk(server: ServerHandle) -> None:
    body = {"model": "gpt-4.1", "messages": USER, "stream": True}
    with (
        httpx.Client() as http,
        http.stream("POST", server.url + "/v1/chat/completions", json=body) as response,
    ):
        pieces = list(response.iter_raw())
    # Loopback may coalesce the separate writes, so count events rather than pieces.
    joined = b"".join(pieces)
    assert joined.count(b"data: ") == 8  # role, five deltas, finish, [DONE]
    assert joined.endswith(b"data: [DONE]\n\n")


def test_nested_tool_without_parallel_calls_one_tool(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4.1", messages=USER, tools=[WEATHER_TOOL, TIME_TOOL], parallel_tool_calls=False
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    arguments = orjson.loads(call.function.arguments)
    assert set(arguments) == {"city", "days"} and arguments["days"] == 1


def test_parallel_tool_calls_stream_like_openai(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model="gpt-4.1", messages=USER, tools=[WEATHER_TOOL, TIME_TOOL])
    expected = [[c.id, c.function.name, c.function.arguments] for c in full.choices[0].message.tool_calls]
    assert [e[1] for e in expected] == ["get_weather", "get_time"]
    stream = client.chat.completions.create(
        model="gpt-4.1", messages=USER, tools=[WEATHER_TOOL, TIME_TOOL], stream=True
    )
    text, calls, finish, _ = _accumulate(stream)
    assert (text, calls, finish) == ("", expected, "tool_calls")
    assert full.usage.completion_tokens == sum(-(-len(e[2]) // 4) for e in expected)


def test_tool_result_last_gets_text(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="gpt-4.1", messages=USER, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    messages = [
        *USER,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    second = client.chat.completions.create(model="gpt-4.1", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content


def test_max_tokens_truncates(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4.1", messages=USER, max_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    assert len(completion.choices[0].message.content.split()) == 3
    assert completion.usage.completion_tokens == 3


def test_reasoning_model_reports_reasoning_tokens(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="o4-mini", messages=USER)
    visible = len(completion.choices[0].message.content.split())
    assert completion.usage.completion_tokens_details.reasoning_tokens == 2 * visible
    assert completion.usage.completion_tokens == 3 * visible


def test_rate_limit_marker(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "go [[sim:429]]"}])
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.code == "rate_limit_exceeded"


def test_server_error_marker_also_when_streaming(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "[[sim:500]]"}], stream=True
        )
    assert info.value.type == "server_error"


def test_context_overflow_marker(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "huge [[sim:context-overflow]]"}]
        )
    assert info.value.code == "context_length_exceeded"
    assert "maximum context length" in info.value.message


def test_drop_after_cuts_the_stream_after_n_content_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": "[[sim:drop-after=2]] tell me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    received = []
    with pytest.raises(openai.APIError):  # APIConnectionError: the body ends mid-message
        for chunk in stream:
            received.append(chunk)
    assert received[0].choices[0].delta.role == "assistant"
    assert len(received) == 3  # role chunk + two content chunks; no finish, no usage
    assert all(c.choices[0].finish_reason is None for c in received)


def test_drop_after_on_a_non_streamed_request_closes_without_answer(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "[[sim:drop-after=0]]"}])
    # The server itself is fine afterwards.
    assert client.chat.completions.create(model="gpt-4.1", messages=USER).choices[0].finish_reason == "stop"


def test_slow_marker_delays_between_events(client: openai.OpenAI) -> None:
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "[[sim:slow=40]]"}], stream=True
    )
    assert len(list(stream)) == 7
    # Seven events reach the client (role, five deltas, finish), and [DONE] after one more gap.
    assert time.monotonic() - started >= 7 * 0.040 * 0.9


def test_ttft_and_chunk_delay() -> None:
    config = SimulatorConfig(chunks=2, ttft_ms=150, chunk_delay_ms=30)
    with serve_app(lambda: create_app(config)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        started = time.monotonic()
        stream = client.chat.completions.create(model="gpt-4.1", messages=USER, stream=True)
        arrivals = [time.monotonic() - started for _ in stream]
    # Small slack: the client's clock starts before the request leaves and the loop may wake early.
    assert arrivals[0] >= 0.150
    assert arrivals[-1] - arrivals[0] >= 3 * 0.030 * 0.8  # role, 2 deltas, finish: three gaps


def test_api_key_is_enforced() -> None:
    with serve_app(lambda: create_app(SimulatorConfig(api_key="sk-sim-secret"))) as server:
        wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as info:
            wrong.chat.completions.create(model="gpt-4.1", messages=USER)
        assert "sk-sim-secret" not in info.value.response.text
        assert "nope" not in info.value.response.text
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        missing = httpx.post(server.url + "/v1/chat/completions", json={"model": "m", "messages": USER})
        assert missing.status_code == 401
        assert missing.json()["error"]["type"] == "invalid_request_error"
        right = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-sim-secret", max_retries=0)
        assert right.chat.completions.create(model="gpt-4.1", messages=USER).choices[0].message.content
        # Health needs no key.
        assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"{oops", None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "gpt-4.1", "messages": []}', "messages"),
        (b'{"model": "gpt-4.1"}', "messages"),
    ],
)
def test_bad_input_is_a_400_with_an_openai_error(server: ServerHandle, raw: bytes, param: str | None) -> None:
    response = httpx.post(
        server.url + "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


def test_bad_input_through_the_openai_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4.1", messages=[])
    assert info.value.param == "messages"


def test_models_are_listed_on_both_paths(server: ServerHandle, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == list(DEFAULT_MODELS)
    listing = httpx.get(server.url + "/models").json()
    assert listing["object"] == "list"
    assert listing["data"][0] == {
        "id": "gpt-4.1",
        "object": "model",
        "created": 1767225600,
        "owned_by": "spendgate-simulator",
    }


def test_chat_completions_without_v1_prefix(server: ServerHandle) -> None:
    client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
    assert client.chat.completions.create(model="gpt-4.1", messages=USER).choices[0].finish_reason == "stop"


def test_recorded_requests_show_what_arrived(server: ServerHandle) -> None:
    assert httpx.delete(server.url + "/_sim/requests").status_code == 200
    assert httpx.get(server.url + "/_sim/requests").json() == []
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-provider-key", max_retries=0)
    list(
        client.chat.completions.create(
            model="gpt-4.1", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    (recorded,) = httpx.get(server.url + "/_sim/requests").json()
    assert recorded["path"] == "/v1/chat/completions"
    assert recorded["headers"]["authorization"] == "Bearer sk-provider-key"  # names are lower-cased
    assert recorded["body"]["stream_options"] == {"include_usage": True}
    assert recorded["body"]["messages"] == USER


def test_recording_keeps_only_the_last_n() -> None:
    with serve_app(lambda: create_app(SimulatorConfig(record_requests=2))) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        for i in range(3):
            client.chat.completions.create(model=f"m{i}", messages=USER)
        recorded = httpx.get(server.url + "/_sim/requests").json()
    assert [r["body"]["model"] for r in recorded] == ["m1", "m2"]


def test_random_faults_are_reproducible_with_a_seed() -> None:
    def outcomes() -> list[int]:
        config = SimulatorConfig(error_rate_429=0.3, error_rate_500=0.3, seed=7)
        with serve_app(lambda: create_app(config)) as server, httpx.Client() as http:
            body = {"model": "gpt-4.1", "messages": USER}
            return [http.post(server.url + "/v1/chat/completions", json=body).status_code for _ in range(30)]

    first = outcomes()
    assert first == outcomes()
    assert {200, 429, 500} == set(first)


def test_cached_ratio_is_reported(server: ServerHandle) -> None:
    with serve_app(lambda: create_app(SimulatorConfig(cached_ratio=0.5))) as cached:
        client = openai.OpenAI(base_url=cached.url + "/v1", api_key="x", max_retries=0)
        usage = client.chat.completions.create(model="gpt-4.1", messages=USER).usage
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens // 2


def test_unknown_routes_get_an_openai_style_404(server: ServerHandle) -> None:
    response = httpx.get(server.url + "/v1/nope")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (GET /v1/nope)"
