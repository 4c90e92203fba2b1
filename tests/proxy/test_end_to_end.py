"""End to end: the official ``openai`` SDK through the proxy to a simulated provider over real HTTP.

Each test checks two things: the client sees exactly what a direct call returns, and the one
exported span carries the right principal, repo, usage and cost-relevant fields.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from spendgate_semconv import attributes as A
from tests.proxy.conftest import PROVIDER_KEY, Gateway

MESSAGES = [
    {"role": "system", "content": "You are a careful coding assistant."},
    {"role": "user", "content": "Rename the function parse_config to load_config across the repo."},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "edit_file",
            "description": "Apply an edit",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "line": {"type": "integer"}},
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "read_file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}},
    },
]


def _one_span(gw: Gateway):
    # The handler records its span as the response ends, so the client may see the end first.
    spans = gw.wait_spans(1)
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def test_streaming_with_tools_matches_direct_call_and_records_usage(gateway: Gateway) -> None:
    kwargs = dict(model="gpt-4.1", messages=MESSAGES, tools=TOOLS, stream=True, stream_options={"include_usage": True})
    direct = [c.model_dump() for c in gateway.direct().chat.completions.create(**kwargs)]
    proxied = [c.model_dump() for c in gateway.client().chat.completions.create(**kwargs)]
    assert direct == proxied
    calls = [tc for c in proxied if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    args = {}
    for tc in calls:
        args[tc["index"]] = args.get(tc["index"], "") + (tc["function"]["arguments"] or "")
    assert all(json.loads(a) for a in args.values())  # tool-call arguments arrive complete
    usage = proxied[-1]["usage"]

    span = _one_span(gateway)
    attrs = span.attributes
    assert span.name == "chat gpt-4.1"
    assert attrs[A.USER_ID] == "ana@acme.com"
    assert attrs[A.SPENDGATE_TEAM] == "platform"
    assert attrs[A.SPENDGATE_COST_CENTER] == "CC-100"
    assert attrs[A.VCS_REPOSITORY_NAME] == "acme-api"
    assert attrs[A.SPENDGATE_REPO_SOURCE] == A.RepoSource.KEY_DEFAULT
    assert attrs[A.SPENDGATE_FEATURE] == A.Feature.AGENT
    assert attrs[A.LLM_TOKEN_COUNT_PROMPT] == usage["prompt_tokens"]
    assert attrs[A.GEN_AI_USAGE_INPUT_TOKENS] == usage["prompt_tokens"]
    assert attrs[A.LLM_TOKEN_COUNT_COMPLETION] == usage["completion_tokens"]
    assert attrs[A.LLM_TOKEN_COUNT_PROMPT_CACHE_READ] == usage["prompt_tokens_details"]["cached_tokens"] > 0
    assert attrs[A.SPENDGATE_USAGE_SOURCE] == A.UsageSource.PROVIDER
    assert list(attrs[A.GEN_AI_RESPONSE_FINISH_REASONS]) == ["tool_calls"]
    assert attrs[A.SPENDGATE_STREAM] is True
    assert attrs[A.SPENDGATE_TTFT_MS] >= 0
    assert attrs[A.OPENINFERENCE_SPAN_KIND] == "LLM"
    assert attrs[A.GEN_AI_PROVIDER_NAME] == "openai"
    assert A.ERROR_TYPE not in attrs


def test_streaming_without_include_usage_is_byte_identical_to_direct(gateway: Gateway) -> None:
    body = {"model": "gpt-4.1-mini", "messages": MESSAGES, "stream": True}
    direct = httpx.post(
        gateway.upstream.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {PROVIDER_KEY}"}
    ).content
    proxied = httpx.post(
        gateway.proxy.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {gateway.keys['bo@acme.com']}"},
    ).content
    assert b'"usage"' not in direct
    assert proxied == direct
    # ... yet the proxy asked upstream for usage and recorded it.
    seen = httpx.get(gateway.upstream.url + "/_sim/requests").json()[-1]
    assert seen["body"]["stream_options"] == {"include_usage": True}
    assert seen["headers"]["authorization"] == f"Bearer {PROVIDER_KEY}"
    attrs = _one_span(gateway).attributes
    assert attrs[A.USER_ID] == "bo@acme.com"
    assert attrs[A.LLM_TOKEN_COUNT_COMPLETION] > 0
    assert attrs[A.SPENDGATE_USAGE_SOURCE] == A.UsageSource.PROVIDER
    assert attrs[A.SPENDGATE_REPO_SOURCE] == A.RepoSource.NONE
    assert A.VCS_REPOSITORY_NAME not in attrs


def test_non_streaming_matches_direct_and_records_usage(gateway: Gateway) -> None:
    direct = gateway.direct().chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    proxied = gateway.client("cy@acme.com").chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert proxied.model_dump() == direct.model_dump()
    attrs = _one_span(gateway).attributes
    assert attrs[A.USER_ID] == "cy@acme.com"
    assert attrs[A.SPENDGATE_TEAM] == "mobile"
    assert attrs[A.LLM_TOKEN_COUNT_PROMPT] == proxied.usage.prompt_tokens
    assert attrs[A.LLM_TOKEN_COUNT_COMPLETION] == proxied.usage.completion_tokens
    assert attrs[A.SPENDGATE_FEATURE] == A.Feature.CHAT
    assert attrs[A.SPENDGATE_STREAM] is False


def test_models_list_shows_configured_models_for_the_key(gateway: Gateway) -> None:
    ids = [m.id for m in gateway.client().models.list()]
    assert ids == ["gpt-4.1", "gpt-4.1-mini", "o4-mini", "fast"]


def test_model_alias_maps_to_upstream_model(gateway: Gateway) -> None:
    gateway.client().chat.completions.create(model="fast", messages=MESSAGES)
    seen = httpx.get(gateway.upstream.url + "/_sim/requests").json()[-1]
    assert seen["body"]["model"] == "gpt-4.1-mini"
    attrs = _one_span(gateway).attributes
    assert attrs[A.SPENDGATE_MODEL_REQUESTED] == "fast"
    assert attrs[A.GEN_AI_REQUEST_MODEL] == "fast"
    assert attrs[A.LLM_MODEL_NAME] == "gpt-4.1-mini"


def test_reasoning_tokens_recorded(gateway: Gateway) -> None:
    out = gateway.client().chat.completions.create(model="o4-mini", messages=MESSAGES)
    attrs = _one_span(gateway).attributes
    reasoning = out.usage.completion_tokens_details.reasoning_tokens
    assert reasoning > 0
    assert attrs[A.LLM_TOKEN_COUNT_COMPLETION_REASONING] == reasoning


def test_headers_and_path_prefix_override_repo(gateway: Gateway) -> None:
    client = gateway.client(
        default_headers={
            "x-spendgate-repo": "web-app",
            "x-spendgate-branch": "feat/x",
            "x-spendgate-tags": "ci,nightly",
        }
    )
    client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    attrs = _one_span(gateway).attributes
    assert (attrs[A.VCS_REPOSITORY_NAME], attrs[A.SPENDGATE_REPO_SOURCE]) == ("web-app", A.RepoSource.HEADER)
    assert attrs[A.VCS_REF_HEAD_NAME] == "feat/x"
    assert list(attrs[A.TAG_TAGS]) == ["ci", "nightly"]
    gateway.clear()

    prefixed = openai.OpenAI(
        base_url=gateway.proxy.url + "/t/repo=billing,branch=main/v1",
        api_key=gateway.keys["ana@acme.com"],
        max_retries=0,
    )
    list(prefixed.chat.completions.create(model="gpt-4.1", messages=MESSAGES, stream=True))
    attrs = _one_span(gateway).attributes
    assert (attrs[A.VCS_REPOSITORY_NAME], attrs[A.SPENDGATE_REPO_SOURCE]) == ("billing", A.RepoSource.PATH_PREFIX)
    assert attrs[A.VCS_REF_HEAD_NAME] == "main"


def test_traceparent_is_continued(gateway: Gateway) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    client = gateway.client(default_headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    span = _one_span(gateway)
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.parent.span_id, "016x") == parent


def test_no_secret_reaches_spans(gateway: Gateway) -> None:
    list(gateway.client().chat.completions.create(model="gpt-4.1", messages=MESSAGES, stream=True))
    dumped = _one_span(gateway).to_json()
    assert PROVIDER_KEY not in dumped
    assert gateway.keys["ana@acme.com"] not in dumped
    assert "Rename the function" not in dumped  # content capture is off by default


@pytest.mark.parametrize("stream", [True, False])
def test_upstream_errors_pass_through_with_status_and_body(gateway: Gateway, stream: bool) -> None:
    messages = [{"role": "user", "content": "hi [[sim:429]]"}]
    with pytest.raises(openai.RateLimitError) as direct:
        gateway.direct().chat.completions.create(model="gpt-4.1", messages=messages, stream=stream)
    with pytest.raises(openai.RateLimitError) as proxied:
        gateway.client().chat.completions.create(model="gpt-4.1", messages=messages, stream=stream)
    assert proxied.value.body == direct.value.body
    assert proxied.value.response.headers["retry-after"] == "1"
    attrs = _one_span(gateway).attributes
    assert attrs[A.ERROR_TYPE] == "429"
    assert attrs[A.SPENDGATE_HTTP_STATUS] == 429
    assert A.LLM_TOKEN_COUNT_PROMPT not in attrs  # nothing billed, nothing invented
