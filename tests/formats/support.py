"""Helpers for format tests: the Cursor fixtures, a strict Chat Completions request check, and the
official ``openai`` SDK reading our SSE bytes through ``httpx.MockTransport`` (no sockets)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import TypeAdapter

from spendgate_proxy.formats.canonical import StreamEvent
from spendgate_simulator.responses import build_reply

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "cursor"


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@cache
def _adapters() -> tuple[TypeAdapter[Any], TypeAdapter[Any]]:
    return TypeAdapter(list[ChatCompletionMessageParam]), TypeAdapter(list[ChatCompletionToolParam])


def assert_valid_chat_request(body: dict[str, Any]) -> None:
    """Fail unless ``body`` is a Chat Completions request OpenAI would accept.

    Messages and tools are checked against the ``openai`` SDK's own request types (through
    pydantic), and the ordering rule the types cannot express: every ``tool`` message answers a
    call of the assistant turn just before it, and every such call is answered before the next turn.
    """
    assert isinstance(body.get("model"), str) and body["model"]
    messages, tools = _adapters()
    messages.validate_python(body["messages"])
    if "tools" in body:
        tools.validate_python(body["tools"])
        names = [t["function"]["name"] for t in body["tools"]]
        assert len(names) == len(set(names)), f"duplicate tool names: {names}"
    assert "parallel_tool_calls" not in body or "tools" in body  # OpenAI rejects it without tools
    open_calls: set[str] = set()
    for i, message in enumerate(body["messages"]):
        role = message["role"]
        if role == "tool":
            assert message["tool_call_id"] in open_calls, f"messages[{i}] answers no pending call"
            open_calls.discard(message["tool_call_id"])
            continue
        assert not open_calls, f"messages[{i}] ({role}) comes before results for {sorted(open_calls)}"
        if role == "assistant":
            open_calls = {c["id"] for c in message.get("tool_calls") or ()}
            for call in message.get("tool_calls") or ():
                json.loads(call["function"]["arguments"])


def simulated_stream(body: dict[str, Any], **kwargs: Any) -> bytes:
    """What the simulated provider streams for a Chat Completions request body."""
    reply = build_reply(json.dumps({**body, "stream": True}).encode(), **kwargs)
    assert reply.status == 200, reply.body
    return b"".join(reply.events)


def chunked(data: bytes, sizes: tuple[int, ...] = (1, 7, 3, 64, 2, 500)) -> Iterator[bytes]:
    """``data`` cut at awkward places (inside ``data:``, JSON and ``\\n\\n``), cycling through ``sizes``."""
    at = 0
    i = 0
    while at < len(data):
        size = sizes[i % len(sizes)]
        yield data[at : at + size]
        at += size
        i += 1


def _client(handler: Any) -> openai.OpenAI:
    http_client = httpx.Client(transport=httpx.MockTransport(handler))
    return openai.OpenAI(api_key="sk-test", base_url="http://gateway.test/v1", http_client=http_client)


def openai_stream(sse: bytes, **create: Any) -> list[ChatCompletionChunk]:
    """The chunks the official SDK yields for an SSE body served as a streamed completion."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse)

    stream = _client(handler).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True, **create
    )
    return list(stream)


def openai_final(sse: bytes) -> Any:
    """The SDK's own accumulation of a stream (``chat.completions.stream``): the final completion."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse)

    with _client(handler).chat.completions.stream(model="m", messages=[{"role": "user", "content": "hi"}]) as stream:
        for _ in stream:
            pass
        return stream.get_final_completion()


def openai_completion(body: dict[str, Any]) -> ChatCompletion:
    """The SDK's parsed object for a non-streamed ``chat.completion`` body."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    return _client(handler).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def event_types(events: list[StreamEvent]) -> list[str]:
    return [type(e).__name__ for e in events]
