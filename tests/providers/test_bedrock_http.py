"""The Bedrock provider against the simulated Bedrock endpoint, over real HTTP on loopback.

The simulator checks every SigV4 signature with botocore and answers in Bedrock's shapes, so these
tests cover signing on the wire (aiohttp must send the path and body that were signed), the
incremental event-stream decoding, and the error statuses the fallback logic acts on. The same
simulator is also driven by botocore's own client, which shows it speaks Bedrock as botocore does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.session import get_session

from spendgate_proxy.formats.canonical import (
    ChatRequest,
    Finish,
    Message,
    StreamError,
    StreamEvent,
    StreamStart,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    UsageEvent,
    collect_stream,
)
from spendgate_proxy.providers.bedrock import BedrockProvider
from spendgate_simulator import SimulatorConfig, create_app
from spendgate_simulator.bedrock import SIM_ACCESS_KEY_ID, SIM_SECRET_ACCESS_KEY
from tests.providers.support import MODEL_ID, REGION, bedrock_provider
from tests.support.aio_server import ServerHandle, serve_app

WEATHER = Tool(
    "get_weather",
    "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]},
)

TIME = Tool("get_time", None, {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with serve_app(lambda: create_app(SimulatorConfig(chunks=5))) as handle:
        yield handle


def _request(text: str, *, stream: bool, tools: tuple[Tool, ...] = (), model: str = MODEL_ID) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=(Message("user", (TextPart(text),)),),
        system=(TextPart("Be brief."),),
        tools=tools,
        max_tokens=256,
        stream=stream,
        include_usage=stream,
        source_format="chat",
    )


async def _stream(provider: BedrockProvider, req: ChatRequest) -> tuple[int, list[StreamEvent], int]:
    """(status, events, number of reads that produced events)."""
    try:
        reply = await provider.send(req)
        try:
            assert reply.streaming, (reply.status, await reply.read())
            events: list[StreamEvent] = []
            reads = 0
            async for batch in reply.events():
                reads += 1
                events.extend(batch)
            return reply.status, events, reads
        finally:
            reply.close()
    finally:
        await provider.close()


async def _error(provider: BedrockProvider, req: ChatRequest) -> tuple[int, dict[str, Any]]:
    try:
        reply = await provider.send(req)
        try:
            assert not reply.streaming
            return await reply.error()
        finally:
            reply.release()
    finally:
        await provider.close()


def _recorded(server: ServerHandle) -> list[dict[str, Any]]:
    return httpx.get(server.url + "/_sim/requests").json()


def test_streaming_tool_use(server: ServerHandle) -> None:
    httpx.delete(server.url + "/_sim/requests")
    provider = bedrock_provider(server.url)
    status, events, reads = asyncio.run(
        # [[sim:slow=5]] spaces the frames out, so "decoded as they arrive" does not depend on how
        # the kernel happens to coalesce a fast local stream into one read.
        _stream(provider, _request("Weather and time in Paris? [[sim:slow=5]]", stream=True, tools=(WEATHER, TIME)))
    )

    assert status == 200
    assert isinstance(events[0], StreamStart) and events[0].model == MODEL_ID
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(s.index, s.name) for s in starts] == [(0, "get_weather"), (1, "get_time")]  # parallel calls
    answer = collect_stream(events)
    calls = [p for p in answer.content if isinstance(p, ToolCallPart)]
    for call in calls:
        assert "city" in orjson.loads(call.arguments_json)  # complete, valid JSON
    assert any(isinstance(e, ToolCallDelta) for e in events)
    assert Finish("tool_calls") in events
    assert isinstance(events[-1], UsageEvent) and events[-1].usage.input_tokens > 0
    assert reads > 1  # decoded as the frames arrived, not after the whole body

    (sent,) = _recorded(server)
    assert sent["path"] == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream"
    assert sent["body"]["anthropic_version"] == "bedrock-2023-05-31"
    assert "model" not in sent["body"] and "stream" not in sent["body"]
    assert sent["headers"]["x-amzn-bedrock-accept"] == "application/json"


def test_non_streamed_matches_streamed(server: ServerHandle) -> None:
    streamed = asyncio.run(_stream(bedrock_provider(server.url), _request("Say hello", stream=True)))[1]

    async def invoke() -> Any:
        provider = bedrock_provider(server.url)
        try:
            reply = await provider.send(_request("Say hello", stream=False))
            try:
                assert (reply.status, reply.streaming) == (200, False)
                return await reply.response()
            finally:
                reply.release()
        finally:
            await provider.close()

    whole = asyncio.run(invoke())
    assert collect_stream(streamed).content == whole.content
    assert whole.finish_reason == "stop"
    assert whole.usage == collect_stream(streamed).usage


def test_inference_profile_arn_in_path(server: ServerHandle) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    status, events, _ = asyncio.run(_stream(bedrock_provider(server.url), _request("Hi", stream=True, model=arn)))
    assert status == 200 and isinstance(events[-1], UsageEvent)


def test_throttling_is_retryable(server: ServerHandle) -> None:
    status, body = asyncio.run(_error(bedrock_provider(server.url), _request("Hi [[sim:429]]", stream=True)))
    assert status == 429
    assert (body["error"]["type"], body["error"]["code"]) == ("requests", "rate_limit_exceeded")


def test_server_error_is_5xx(server: ServerHandle) -> None:
    status, body = asyncio.run(_error(bedrock_provider(server.url), _request("Hi [[sim:500]]", stream=False)))
    assert status == 500 and "unexpected error" in body["error"]["message"]


def test_context_overflow(server: ServerHandle) -> None:
    status, body = asyncio.run(
        _error(bedrock_provider(server.url), _request("Hi [[sim:context-overflow]]", stream=True))
    )
    assert status == 400
    assert body["error"]["code"] == "context_length_exceeded"
    assert "Input is too long for requested model." in body["error"]["message"]


@pytest.mark.parametrize(
    "credentials, message",
    [
        (Credentials(SIM_ACCESS_KEY_ID, "wrong-secret"), "signature we calculated does not match"),
        (Credentials("AKIAUNKNOWN000000000", SIM_SECRET_ACCESS_KEY), "security token included in the request"),
    ],
    ids=["bad-secret", "unknown-key"],
)
def test_bad_credentials_403(server: ServerHandle, credentials: Credentials, message: str) -> None:
    provider = bedrock_provider(server.url, credentials)
    status, body = asyncio.run(_error(provider, _request("Hi", stream=True)))
    assert status == 403
    assert body["error"]["code"] == "invalid_api_key" and message in body["error"]["message"]


def test_cut_mid_stream_raises_or_ends_with_error(server: ServerHandle) -> None:
    async def run() -> list[StreamEvent]:
        provider = bedrock_provider(server.url)
        events: list[StreamEvent] = []
        try:
            reply = await provider.send(_request("Tell me [[sim:drop-after=2]]", stream=True))
            try:
                async for batch in reply.events():
                    events.extend(batch)
            except aiohttp.ClientPayloadError:
                events.append(StreamError("cut", "server_error"))
            finally:
                reply.close()
        finally:
            await provider.close()
        return events

    events = asyncio.run(run())
    assert isinstance(events[0], StreamStart)
    assert isinstance(events[-1], StreamError)
    assert not any(isinstance(e, Finish) for e in events)


# ---------------------------------------------------------------------------------------------
# The simulator through botocore's own client


def _botocore_client(server: ServerHandle, secret: str = SIM_SECRET_ACCESS_KEY) -> Any:
    return get_session().create_client(
        "bedrock-runtime",
        region_name=REGION,
        endpoint_url=server.url,
        aws_access_key_id=SIM_ACCESS_KEY_ID,
        aws_secret_access_key=secret,
        config=_no_retries(),
    )


def _no_retries() -> Config:
    return Config(retries={"max_attempts": 1, "mode": "standard"})


def _body(text: str) -> bytes:
    return orjson.dumps(
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 128, "messages": [{"role": "user", "content": text}]}
    )


def test_botocore_client_streams_from_simulator(server: ServerHandle) -> None:
    response = _botocore_client(server).invoke_model_with_response_stream(modelId=MODEL_ID, body=_body("Hello"))
    events = [orjson.loads(part["chunk"]["bytes"]) for part in response["body"]]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] > 0
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    whole = _botocore_client(server).invoke_model(modelId=MODEL_ID, body=_body("Hello"))
    assert text == orjson.loads(whole["body"].read())["content"][0]["text"]


@pytest.mark.parametrize(
    "text, secret, code",
    [
        ("Hi [[sim:429]]", SIM_SECRET_ACCESS_KEY, "ThrottlingException"),
        ("Hi", "wrong-secret", "InvalidSignatureException"),
    ],
)
def test_botocore_client_sees_bedrock_errors(server: ServerHandle, text: str, secret: str, code: str) -> None:
    with pytest.raises(ClientError) as caught:
        _botocore_client(server, secret).invoke_model(modelId=MODEL_ID, body=_body(text))
    assert code == caught.value.response["Error"]["Code"]


def test_simulator_refuses_anthropic_only_fields(server: ServerHandle) -> None:
    body = orjson.loads(_body("Hi"))
    with pytest.raises(ClientError) as caught:
        _botocore_client(server).invoke_model(modelId=MODEL_ID, body=orjson.dumps({**body, "model": "x"}))
    assert "extraneous key [model] is not permitted" in caught.value.response["Error"]["Message"]
