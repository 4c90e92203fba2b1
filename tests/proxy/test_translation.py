"""Translation end to end: official SDKs through the proxy to simulated upstreams of the other format.

- the ``anthropic`` SDK on ``/v1/messages``, served by an Anthropic upstream (bytes passed through)
  and by an OpenAI-compatible one (translated), streamed with tools and thinking, and not;
- the ``openai`` SDK on ``/v1/chat/completions``, served by an Anthropic upstream.

Each checks what the client sees (well-formed objects, complete tool JSON, usage) and the span's
token fields, which the collector prices (provider name, cache reads and writes, reasoning).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from spendgate_semconv import attributes as A
from tests.proxy.conftest import PROVIDER_KEY, Gateway, start_gateway
from tests.support.aio_server import ServerHandle

PROVIDERS = {
    "sim": {"base_url": "{sim}/v1", "api_key_env": "SIM_KEY"},
    "claude": {"type": "anthropic", "base_url": "{sim}", "api_key_env": "SIM_KEY"},
}
MODELS = [
    {"name": "gpt-4.1", "provider": "sim"},
    {"name": "gpt-4.1-mini", "provider": "sim"},
    {"name": "o4-mini", "provider": "sim"},
    {"name": "claude-sonnet-4-5", "provider": "claude"},
    {"name": "sonnet", "provider": "claude", "upstream_model": "claude-sonnet-4-5"},
]
TOOLS_ANTHROPIC = [
    {
        "name": "edit_file",
        "description": "Apply an edit",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "line": {"type": "integer"}},
            "required": ["path"],
        },
    },
    {"name": "read_file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}},
]
TOOLS_OPENAI = [
    {"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}} for t in TOOLS_ANTHROPIC
]
SYSTEM = "You are a careful coding assistant. " * 20


def providers(sim: ServerHandle) -> dict[str, Any]:
    return {
        name: {k: v.format(sim=sim.url) if isinstance(v, str) else v for k, v in p.items()}
        for name, p in PROVIDERS.items()
    }


@pytest.fixture
def gw(tmp_path: Path, simulator: ServerHandle) -> Iterator[Gateway]:
    yield from start_gateway(tmp_path, simulator, providers=providers(simulator), models=MODELS)


def claude_client(gw: Gateway, user: str = "ana@acme.com") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.proxy.url, api_key=gw.keys[user], max_retries=0)


def sim_requests(gw: Gateway) -> list[dict[str, Any]]:
    return httpx.get(gw.upstream.url + "/_sim/requests").json()


def one_span(gw: Gateway) -> Any:
    spans = gw.wait_spans(1)
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def assert_span_usage(span: Any, *, prompt: int, completion: int, cache_read: int = 0, cache_write: int = 0) -> None:
    attrs = span.attributes
    assert attrs[A.LLM_TOKEN_COUNT_PROMPT] == attrs[A.GEN_AI_USAGE_INPUT_TOKENS] == prompt
    assert attrs[A.LLM_TOKEN_COUNT_COMPLETION] == attrs[A.GEN_AI_USAGE_OUTPUT_TOKENS] == completion
    assert attrs.get(A.LLM_TOKEN_COUNT_PROMPT_CACHE_READ, 0) == cache_read
    assert attrs.get(A.LLM_TOKEN_COUNT_PROMPT_CACHE_WRITE, 0) == cache_write
    assert attrs[A.SPENDGATE_USAGE_SOURCE] == A.UsageSource.PROVIDER


def anthropic_input(usage: Any) -> int:
    """Anthropic's usage as a total input count (what spans and OpenAI clients report)."""
    return usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)


# ---------------------------------------------------------------------------------------------
# anthropic SDK → /v1/messages


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "o4-mini"], ids=["anthropic-upstream", "openai-upstream"])
def test_messages_stream_with_tools_and_thinking(gw: Gateway, model: str) -> None:
    kwargs: dict[str, Any] = dict(
        model=model,
        max_tokens=4096,
        system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Rename parse_config to load_config."}],
        tools=TOOLS_ANTHROPIC,
        thinking={"type": "enabled", "budget_tokens": 2048},
    )
    with claude_client(gw).messages.stream(**kwargs) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert events and final.role == "assistant"
    assert final.stop_reason == "tool_use"
    calls = [b for b in final.content if b.type == "tool_use"]
    assert [c.name for c in calls] == ["edit_file", "read_file"]
    assert all(isinstance(c.input, dict) for c in calls)
    assert calls[0].input["path"]
    if model.startswith("claude"):
        thinking = [b for b in final.content if b.type == "thinking"]
        assert thinking and thinking[0].thinking and thinking[0].signature
        assert final.content[0].type == "thinking"

    span = one_span(gw)
    u = final.usage
    prompt = anthropic_input(u)
    assert_span_usage(
        span,
        prompt=prompt,
        completion=u.output_tokens,
        cache_read=u.cache_read_input_tokens or 0,
        cache_write=u.cache_creation_input_tokens or 0,
    )
    attrs = span.attributes
    assert attrs[A.GEN_AI_PROVIDER_NAME] == ("anthropic" if model.startswith("claude") else "openai")
    assert attrs[A.SPENDGATE_MODEL_REQUESTED] == model
    assert list(attrs[A.GEN_AI_RESPONSE_FINISH_REASONS]) == ["tool_calls"]
    assert attrs[A.SPENDGATE_FEATURE] == A.Feature.AGENT
    assert attrs[A.USER_ID] == "ana@acme.com"
    sent = sim_requests(gw)[-1]
    if model.startswith("claude"):
        # Passed through: Anthropic body, cache_control and thinking as the client sent them.
        assert sent["path"] == "/v1/messages"
        assert sent["headers"]["x-api-key"] == PROVIDER_KEY
        assert sent["body"]["system"][0]["cache_control"] == {"type": "ephemeral"}
        assert sent["body"]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
        assert (u.cache_creation_input_tokens or 0) > 0  # the first call with this prefix writes
    else:
        assert sent["path"] == "/v1/chat/completions"
        assert sent["body"]["stream_options"] == {"include_usage": True}
        assert [t["function"]["name"] for t in sent["body"]["tools"]] == ["edit_file", "read_file"]
        # Thinking becomes OpenAI reasoning: its tokens are part of the output and on the span.
        assert sent["body"]["reasoning_effort"]
        assert attrs[A.LLM_TOKEN_COUNT_COMPLETION_REASONING] > 0


@pytest.mark.parametrize("model", ["sonnet", "gpt-4.1"], ids=["anthropic-upstream", "openai-upstream"])
def test_messages_not_streamed(gw: Gateway, model: str) -> None:
    msg = claude_client(gw).messages.create(
        model=model, max_tokens=256, messages=[{"role": "user", "content": "Say something about Python."}]
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.stop_reason == "end_turn"
    assert msg.content[0].type == "text" and msg.content[0].text.endswith(".")
    assert msg.usage.output_tokens > 0
    span = one_span(gw)
    assert_span_usage(
        span,
        prompt=anthropic_input(msg.usage),
        completion=msg.usage.output_tokens,
        cache_read=msg.usage.cache_read_input_tokens or 0,
        cache_write=msg.usage.cache_creation_input_tokens or 0,
    )
    attrs = span.attributes
    assert attrs[A.SPENDGATE_MODEL_REQUESTED] == model
    assert attrs[A.SPENDGATE_MODEL_SERVED] == ("claude-sonnet-4-5" if model == "sonnet" else "gpt-4.1")
    assert attrs[A.SPENDGATE_STREAM] is False
    assert list(attrs[A.GEN_AI_RESPONSE_FINISH_REASONS]) == ["stop"]


def test_messages_count_tokens(gw: Gateway) -> None:
    client = claude_client(gw)
    body = dict(messages=[{"role": "user", "content": "How many tokens is this?"}], tools=TOOLS_ANTHROPIC)
    forwarded = client.messages.count_tokens(model="claude-sonnet-4-5", **body)
    estimated = client.messages.with_raw_response.count_tokens(model="gpt-4.1", **body)
    assert forwarded.input_tokens > 0
    assert estimated.headers["x-spendgate-estimate"] == "true"
    assert estimated.parse().input_tokens > 0
    assert sim_requests(gw)[-1]["path"] == "/v1/messages/count_tokens"
    assert gw.spans() == []  # counting is free: no span


def test_messages_errors_are_anthropic_shaped(gw: Gateway) -> None:
    client = claude_client(gw)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gw.proxy.url, api_key="sg-nope", max_retries=0).messages.create(
            model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="sonnet", max_tokens=0, messages=[{"role": "user", "content": "hi"}])
    assert "max_tokens" in str(bad.value)
    # An OpenAI upstream's overflow reaches an Anthropic client in Anthropic's words.
    with pytest.raises(anthropic.BadRequestError) as overflow:
        client.messages.create(
            model="gpt-4.1", max_tokens=10, messages=[{"role": "user", "content": "hi [[sim:context-overflow]]"}]
        )
    assert "prompt is too long" in str(overflow.value)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="gpt-4.1", max_tokens=10, messages=[{"role": "user", "content": "[[sim:429]]"}])


# ---------------------------------------------------------------------------------------------
# openai SDK → /v1/chat/completions → Anthropic upstream


def test_chat_completions_stream_served_by_anthropic(gw: Gateway) -> None:
    client = gw.client()
    messages = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "Rename parse_config to load_config."},
    ]
    kwargs: dict[str, Any] = dict(
        model="claude-sonnet-4-5",
        messages=messages,
        tools=TOOLS_OPENAI,
        stream=True,
        stream_options={"include_usage": True},
    )
    list(client.chat.completions.create(**kwargs))  # writes the cache
    gw.clear()
    chunks = list(client.chat.completions.create(**kwargs))
    assert chunks[0].choices[0].delta.role == "assistant"
    args: dict[int, str] = {}
    names: dict[int, str] = {}
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            if tc.function.name:
                names[tc.index] = tc.function.name
            args[tc.index] = args.get(tc.index, "") + (tc.function.arguments or "")
    assert names == {0: "edit_file", 1: "read_file"}
    parsed = {i: json.loads(a) for i, a in args.items()}  # complete JSON
    assert parsed[0]["path"]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    assert usage.prompt_tokens_details.cached_tokens > 0  # the second call reads the cache
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    span = one_span(gw)
    assert_span_usage(
        span,
        prompt=usage.prompt_tokens,
        completion=usage.completion_tokens,
        cache_read=usage.prompt_tokens_details.cached_tokens,
    )
    attrs = span.attributes
    assert attrs[A.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert list(attrs[A.GEN_AI_RESPONSE_FINISH_REASONS]) == ["tool_calls"]
    assert attrs[A.SPENDGATE_TTFT_MS] >= 0
    sent = sim_requests(gw)[-1]
    assert sent["path"] == "/v1/messages" and sent["body"]["stream"] is True
    assert sent["body"]["system"][0]["cache_control"] == {"type": "ephemeral"}


def test_chat_completions_without_usage_option_hides_usage(gw: Gateway) -> None:
    chunks = list(
        gw.client().chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hello"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).endswith(".")
    span = one_span(gw)
    assert span.attributes[A.LLM_TOKEN_COUNT_COMPLETION] > 0  # the span still has the provider's count


def test_chat_completions_json_served_by_anthropic(gw: Gateway) -> None:
    resp = gw.client().chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": "hello"}], tools=TOOLS_OPENAI, tool_choice="required"
    )
    assert resp.object == "chat.completion" and resp.model == "sonnet"
    call = resp.choices[0].message.tool_calls[0]
    json.loads(call.function.arguments)
    assert resp.choices[0].finish_reason == "tool_calls"
    span = one_span(gw)
    assert_span_usage(span, prompt=resp.usage.prompt_tokens, completion=resp.usage.completion_tokens)


def test_chat_completions_anthropic_overflow_is_context_length_exceeded(gw: Gateway) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as err:
        gw.client().chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi [[sim:context-overflow]]"}]
        )
    assert err.value.code == "context_length_exceeded"
    assert "maximum context length is 200000 tokens" in err.value.message
    span = one_span(gw)
    assert span.attributes[A.ERROR_TYPE] == "context_length_exceeded"
