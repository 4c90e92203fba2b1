"""Attribution on spans made by the real OpenInference instrumentor driving the real ``openai`` client.

The provider is spendgate's simulated OpenAI-compatible server on a loopback port, so requests go
over real HTTP. ``spendgate.instrument_openai()`` enables the instrumentor on the provider that
``spendgate.configure()`` attached to.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytest.importorskip("openinference.instrumentation.openai")
import openai
from openinference.instrumentation import using_metadata, using_user

import spendgate
from spendgate_semconv import attributes as sc
from spendgate_simulator import SimulatorConfig, create_app
from tests.sdk.conftest import Traced, attribution_of
from tests.support.aio_server import ServerHandle, serve_app

MESSAGE_CONTENT = "llm.input_messages.0.message.content"


@pytest.fixture(scope="module")
def simulator() -> Iterator[ServerHandle]:
    with serve_app(lambda: create_app(SimulatorConfig(chunks=5))) as server:
        yield server


@pytest.fixture
def instrumented(traced: Traced) -> Iterator[Traced]:
    # Content on: the concurrency tests tell spans apart by the message each call sent.
    instrumentor = spendgate.instrument_openai(capture_content=True)
    try:
        yield traced
    finally:
        instrumentor.uninstrument()


def _client(simulator: ServerHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=simulator.url + "/v1", api_key="sk-test", max_retries=0)


def _chat(client: openai.OpenAI, content: str, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4.1-mini", messages=[{"role": "user", "content": content}], **kwargs
    )


def _llm_spans(traced: Traced) -> list[dict[str, Any]]:
    return [dict(s.attributes or {}) for s in traced.spans() if (s.attributes or {}).get(sc.OPENINFERENCE_SPAN_KIND)]


def test_attribution_lands_on_openinference_spans(instrumented: Traced, simulator: ServerHandle) -> None:
    client = _client(simulator)
    spendgate.configure(team="search", cost_center="cc-42")
    with spendgate.attribute(user="ana@acme.com", repo="acme-api", branch="main", feature="rag", tags=["eval"]):
        _chat(client, "plain")
        for _ in _chat(client, "streamed", stream=True, stream_options={"include_usage": True}):
            pass
    _chat(client, "outside")

    plain, streamed, outside = _llm_spans(instrumented)
    expected = {
        sc.USER_ID: "ana@acme.com",
        sc.VCS_REPOSITORY_NAME: "acme-api",
        sc.SPENDGATE_REPO_SOURCE: "sdk",
        sc.VCS_REF_HEAD_NAME: "main",
        sc.SPENDGATE_TEAM: "search",
        sc.SPENDGATE_COST_CENTER: "cc-42",
        sc.SPENDGATE_FEATURE: "rag",
        sc.TAG_TAGS: ["eval"],
    }
    for span in (plain, streamed):
        assert expected == attribution_of(span)
        assert span[sc.OPENINFERENCE_SPAN_KIND] == "LLM"
        assert span[sc.LLM_MODEL_NAME] == "gpt-4.1-mini"
        assert span[sc.LLM_TOKEN_COUNT_PROMPT] > 0
        assert span[sc.LLM_TOKEN_COUNT_COMPLETION] > 0
        assert json.loads(span[sc.METADATA])["user"] == "ana@acme.com"
    # Outside the block only the configure() defaults apply.
    assert attribution_of(outside) == {sc.SPENDGATE_TEAM: "search", sc.SPENDGATE_COST_CENTER: "cc-42"}
    assert instrumented.handle.stats().spans_stamped == 3


def test_concurrent_async_tasks_keep_their_attribution(instrumented: Traced, simulator: ServerHandle) -> None:
    async def one(client: openai.AsyncOpenAI, i: int) -> None:
        async with spendgate.attribute(user=f"dev{i}@acme.com", feature=f"f{i % 3}"):
            await asyncio.sleep(0.001 * (i % 4))  # interleave the tasks' requests
            await client.chat.completions.create(
                model="gpt-4.1-mini", messages=[{"role": "user", "content": f"task {i}"}]
            )

    async def main() -> None:
        client = openai.AsyncOpenAI(base_url=simulator.url + "/v1", api_key="sk-test", max_retries=0)
        async with client:
            await asyncio.gather(*(one(client, i) for i in range(12)))

    asyncio.run(main())
    spans = _llm_spans(instrumented)
    assert len(spans) == 12
    for span in spans:
        i = int(span[MESSAGE_CONTENT].split()[-1])
        assert (f"dev{i}@acme.com", f"f{i % 3}") == (span[sc.USER_ID], span[sc.SPENDGATE_FEATURE])


def test_threads_with_copied_context_keep_their_attribution(instrumented: Traced, simulator: ServerHandle) -> None:
    client = _client(simulator)

    def call(i: int) -> None:
        _chat(client, f"thread {i}")

    with ThreadPoolExecutor(4) as pool:
        futures = []
        for i in range(8):
            with spendgate.attribute(user=f"dev{i}@acme.com"):
                # The documented way into a thread pool: run in a copy of the caller's context.
                futures.append(pool.submit(contextvars.copy_context().run, call, i))
        with spendgate.attribute(user="never@acme.com"):
            futures.append(pool.submit(call, 99))  # no copied context: the worker sees none
        for f in futures:
            f.result()

    users = {int(s[MESSAGE_CONTENT].split()[-1]): s.get(sc.USER_ID) for s in _llm_spans(instrumented)}
    assert {**{i: f"dev{i}@acme.com" for i in range(8)}, 99: None} == users


def test_openinference_using_user_wins_and_metadata_is_theirs(instrumented: Traced, simulator: ServerHandle) -> None:
    # OpenInference sets its context attributes at start and again at the end of the span: what the
    # application set there explicitly is kept, spendgate fills the other fields (docs/sdk.md).
    client = _client(simulator)
    with (
        spendgate.attribute(user="ana@acme.com", team="search"),
        using_user("explicit-user"),
        using_metadata({"run": 7}),
    ):
        _chat(client, "explicit")
    (span,) = _llm_spans(instrumented)
    assert span[sc.USER_ID] == "explicit-user"
    assert span[sc.SPENDGATE_TEAM] == "search"
    assert json.loads(span[sc.METADATA]) == {"run": 7}


def test_instrument_openai_is_idempotent(instrumented: Traced, simulator: ServerHandle) -> None:
    again = spendgate.instrument_openai()
    with spendgate.attribute(user="ana@acme.com"):
        _chat(_client(simulator), "once")
    assert len(_llm_spans(instrumented)) == 1  # not two spans from a double wrap
    assert again.is_instrumented_by_opentelemetry


def test_content_is_off_by_default(traced: Traced, simulator: ServerHandle) -> None:
    instrumentor = spendgate.instrument_openai()
    try:
        with spendgate.attribute(user="ana@acme.com"):
            _chat(_client(simulator), "a secret prompt")
    finally:
        instrumentor.uninstrument()
    (span,) = _llm_spans(traced)
    assert span[sc.USER_ID] == "ana@acme.com"
    assert span[sc.LLM_TOKEN_COUNT_PROMPT] > 0
    assert not [k for k, v in span.items() if "secret prompt" in str(v)]
    assert not [k for k in span if k.startswith(("llm.output_messages", "llm.input_messages"))]
