"""The Cursor route end to end: every Cursor body shape, both provider kinds, over real HTTP.

Each fixture in ``tests/fixtures/cursor/`` (and the generated 300-message history) is posted the
way Cursor posts it, to ``/cursor/v1/chat/completions``, and must come back as Chat Completions
SSE that the official ``openai`` SDK reads: role first, complete tool-call JSON, one finish reason,
usage when asked, ``[DONE]``. What reached the simulated provider (``GET /_sim/requests``) shows the
``max_tokens`` floor and the custom ``ApplyPatch`` tool travelling as a function.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from spendgate_semconv import attributes as A
from tests.formats.cursor_history import cursor_history
from tests.formats.support import load_fixture, openai_final, openai_stream
from tests.proxy.conftest import Gateway, start_gateway
from tests.proxy.test_translation import providers
from tests.support.aio_server import ServerHandle

MODELS = [
    {"name": "cursor-gpt", "provider": "sim", "upstream_model": "gpt-4.1"},
    {"name": "cursor-claude", "provider": "claude", "upstream_model": "claude-sonnet-4-5"},
]
UPSTREAMS = {"cursor-gpt": "/v1/chat/completions", "cursor-claude": "/v1/messages"}
BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "chat-mixed-tools": lambda: load_fixture("chat_ask_mixed_tools.json"),
    "responses-apply-patch": lambda: load_fixture("responses_agent_apply_patch.json"),
    "anthropic-shaped": lambda: load_fixture("anthropic_claude_agent.json"),
    "history-300-chat": lambda: cursor_history(300),
    "history-300-responses": lambda: cursor_history(300, shape="responses"),
}


@pytest.fixture
def gw(tmp_path: Path, simulator: ServerHandle) -> Iterator[Gateway]:
    yield from start_gateway(tmp_path, simulator, providers=providers(simulator), models=MODELS)


def post(gw: Gateway, body: dict[str, Any], path: str = "/cursor/v1/chat/completions") -> httpx.Response:
    headers = {"Authorization": f"Bearer {gw.keys['ana@acme.com']}"}
    return httpx.post(gw.proxy.url + path, json=body, headers=headers, timeout=30)


def last_sent(gw: Gateway) -> dict[str, Any]:
    return httpx.get(gw.upstream.url + "/_sim/requests").json()[-1]


def cursor_reads(sse: bytes, *, usage: bool) -> Any:
    chunks = openai_stream(sse)
    assert chunks[0].object == "chat.completion.chunk"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1 and finishes[0] in ("stop", "tool_calls", "length")
    assert (chunks[-1].usage is not None) is usage
    assert sse.endswith(b"data: [DONE]\n\n")
    return openai_final(sse)


@pytest.mark.parametrize("model", list(UPSTREAMS))
@pytest.mark.parametrize("name", list(BODIES))
def test_each_cursor_body_streams_back_as_chat_completions(gw: Gateway, name: str, model: str) -> None:
    body = {**BODIES[name](), "model": model, "stream": True}
    resp = post(gw, body)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    wants_usage = (body.get("stream_options") or {}).get("include_usage") is True or name == "anthropic-shaped"
    final = cursor_reads(resp.content, usage=wants_usage)
    assert final.model == model  # Cursor sees the id it asked for
    for call in final.choices[0].message.tool_calls or []:
        json.loads(call.function.arguments)  # complete JSON (no custom tool was called)
    sent = last_sent(gw)
    assert sent["path"] == UPSTREAMS[model]
    assert sent["body"]["stream"] is True
    span = gw.wait_spans(1)[0]
    attrs = span.attributes
    assert attrs[A.SPENDGATE_MODEL_REQUESTED] == model
    assert attrs[A.GEN_AI_PROVIDER_NAME] == ("anthropic" if model == "cursor-claude" else "openai")
    assert attrs[A.SPENDGATE_USAGE_SOURCE] == A.UsageSource.PROVIDER
    assert attrs[A.LLM_TOKEN_COUNT_PROMPT] > 0 and attrs[A.LLM_TOKEN_COUNT_COMPLETION] > 0
    # The generated history ends with "Now summarise ...", whatever the shape it arrives in.
    assert attrs[A.SPENDGATE_FEATURE] == (A.Feature.SUMMARISE if name.startswith("history") else A.Feature.AGENT)


@pytest.mark.parametrize("model", list(UPSTREAMS))
def test_max_tokens_floor_for_tool_turns(gw: Gateway, model: str) -> None:
    body = {**load_fixture("chat_ask_mixed_tools.json"), "model": model}
    assert body["max_tokens"] == 512
    assert post(gw, body).status_code == 200
    sent = last_sent(gw)["body"]
    assert sent["max_tokens"] == 8192
    # Duplicate and flat tools arrive as one clean list the provider accepts.
    names = [t["name"] if "name" in t else t["function"]["name"] for t in sent["tools"]]
    assert names == ["read_file", "run_terminal_cmd", "codebase_search", "grep_search"]


def test_max_tokens_floor_is_configurable(tmp_path: Path, simulator: ServerHandle) -> None:
    for gw in start_gateway(
        tmp_path, simulator, providers=providers(simulator), models=MODELS, cursor={"max_tokens_floor": 2000}
    ):
        body = {**load_fixture("chat_ask_mixed_tools.json"), "model": "cursor-gpt"}
        assert post(gw, body).status_code == 200
        assert last_sent(gw)["body"]["max_tokens"] == 2000


@pytest.mark.parametrize("model", list(UPSTREAMS))
def test_apply_patch_round_trip(gw: Gateway, model: str) -> None:
    body = {
        **load_fixture("responses_agent_apply_patch.json"),
        "model": model,
        "tool_choice": {"type": "custom", "name": "ApplyPatch"},
    }
    resp = post(gw, body)
    assert resp.status_code == 200, resp.text
    final = cursor_reads(resp.content, usage=True)
    (call,) = final.choices[0].message.tool_calls
    assert (call.type, call.function.name) == ("function", "ApplyPatch")
    patch = call.function.arguments
    assert patch.isalpha()  # the raw input text (the simulator writes one word), not {"input": ...}
    sent = last_sent(gw)["body"]
    if model == "cursor-gpt":
        tool = next(t for t in sent["tools"] if t["function"]["name"] == "ApplyPatch")
        assert tool["function"]["parameters"]["required"] == ["input"]
    else:
        tool = next(t for t in sent["tools"] if t["name"] == "ApplyPatch")
        assert tool["input_schema"]["required"] == ["input"]

    # Cursor replays the call with the raw text as arguments; the provider gets it as JSON again.
    replay = {
        **load_fixture("responses_agent_apply_patch.json"),
        "model": model,
    }
    replay["input"] = [
        *replay["input"],
        {"type": "function_call", "call_id": call.id, "name": "ApplyPatch", "arguments": patch},
        {"type": "function_call_output", "call_id": call.id, "output": "Done."},
    ]
    resp = post(gw, replay)
    assert resp.status_code == 200, resp.text
    cursor_reads(resp.content, usage=True)
    sent = last_sent(gw)["body"]
    if model == "cursor-gpt":
        (replayed,) = [c for m in sent["messages"] for c in m.get("tool_calls") or [] if c["id"] == call.id]
        assert json.loads(replayed["function"]["arguments"]) == {"input": patch}
    else:
        blocks = [b for m in sent["messages"] if isinstance(m["content"], list) for b in m["content"]]
        (replayed,) = [b for b in blocks if b.get("type") == "tool_use" and b["name"] == "ApplyPatch"]
        assert replayed["input"] == {"input": patch}


@pytest.mark.parametrize("model", list(UPSTREAMS))
def test_context_overflow_becomes_context_length_exceeded(gw: Gateway, model: str) -> None:
    body = load_fixture("chat_ask_mixed_tools.json")
    body["messages"].append({"role": "user", "content": "Continue. [[sim:context-overflow]]"})
    client = openai.OpenAI(base_url=gw.proxy.url + "/cursor/v1", api_key=gw.keys["ana@acme.com"], max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=model, messages=body["messages"], stream=True, stream_options={"include_usage": True}
        )
    assert err.value.code == "context_length_exceeded"
    assert "maximum context length" in err.value.message
    span = gw.wait_spans(1)[0]
    assert span.attributes[A.ERROR_TYPE] == "context_length_exceeded"


def test_models_and_verify(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.proxy.url + "/cursor/v1", api_key=gw.keys["ana@acme.com"], max_retries=0)
    assert sorted(m.id for m in client.models.list()) == ["cursor-claude", "cursor-gpt"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gw.proxy.url + "/cursor/v1", api_key="sg-wrong", max_retries=0).models.list()


def test_non_streamed_and_prefixed(gw: Gateway) -> None:
    body = {**load_fixture("anthropic_claude_agent.json"), "model": "cursor-gpt", "stream": False}
    resp = post(gw, body, "/t/repo=billing,branch=main/cursor/v1/chat/completions")
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["object"] == "chat.completion" and out["model"] == "cursor-gpt"
    for call in out["choices"][0]["message"].get("tool_calls") or []:
        json.loads(call["function"]["arguments"])
    span = gw.wait_spans(1)[0]
    assert span.attributes[A.VCS_REPOSITORY_NAME] == "billing"


def test_bad_bodies_get_openai_errors(gw: Gateway) -> None:
    resp = post(gw, {"messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "model"
    resp = post(gw, {"model": "cursor-gpt", "input": []})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "input"
    resp = post(gw, {"model": "nope", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
