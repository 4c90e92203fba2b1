"""The format interface (``formats.WireFormat``, ``formats.RequestFormat``): every adapter has it, and it is enough.

mypy checks the signatures (``formats/__init__.py``); these tests check the members exist at run
time and that code knowing only the interface can carry a request, an answer and a stream through
each wire format and back.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from spendgate_proxy.formats import (
    RequestFormat,
    SSEParser,
    SSEWriter,
    WireFormat,
    anthropic,
    openai,
    responses_shaped,
)
from spendgate_proxy.formats.canonical import (
    ChatRequest,
    ChatResponse,
    Message,
    TextPart,
    ToolCallPart,
    Usage,
    collect_stream,
    response_events,
)

WIRE_FORMATS = [anthropic, openai]


def _wire(module: ModuleType) -> WireFormat:
    assert isinstance(module, WireFormat)
    return module


@pytest.mark.parametrize("module", [anthropic, openai, responses_shaped], ids=lambda m: m.__name__)
def test_every_adapter_parses_requests(module: ModuleType) -> None:
    assert isinstance(module, RequestFormat)


def test_responses_shaped_is_request_only() -> None:
    # Cursor's Responses-shaped bodies are answered in Chat Completions: nothing renders them.
    assert not isinstance(responses_shaped, WireFormat)


@pytest.mark.parametrize("module", WIRE_FORMATS, ids=lambda m: m.__name__)
def test_a_request_round_trips_through_the_interface(module: ModuleType) -> None:
    fmt = _wire(module)
    req = ChatRequest(
        model="m",
        system=(TextPart("Be brief."),),
        messages=(Message("user", (TextPart("What is 2 + 2?"),)), Message("assistant", (TextPart("4"),))),
        max_tokens=100,
    )
    back = fmt.parse_request(fmt.render_request(req))
    assert (req.model, req.system, req.messages, req.max_tokens) == (back.model, back.system, back.messages, 100)


@pytest.mark.parametrize("module", WIRE_FORMATS, ids=lambda m: m.__name__)
def test_an_answer_round_trips_through_the_interface(module: ModuleType) -> None:
    fmt = _wire(module)
    resp = ChatResponse(
        id="r1",
        model="m",
        content=(TextPart("Let me look."), ToolCallPart("call_1", "read_file", '{"path":"a.py"}')),
        finish_reason="tool_calls",
        usage=Usage(input_tokens=12, output_tokens=7),
    )
    back = fmt.parse_response(fmt.render_response(resp))
    assert (resp.id, resp.content, resp.finish_reason, resp.usage) == (
        back.id,
        back.content,
        back.finish_reason,
        back.usage,
    )


@pytest.mark.parametrize("module", WIRE_FORMATS, ids=lambda m: m.__name__)
def test_a_stream_round_trips_through_the_interface(module: ModuleType) -> None:
    fmt = _wire(module)
    resp = ChatResponse(
        id="r2",
        model="upstream-model",
        content=(TextPart("Hello"), ToolCallPart("call_1", "read_file", '{"path":"a.py"}')),
        finish_reason="tool_calls",
    )
    writer = fmt.sse_writer(model="client-model")
    parser = fmt.sse_parser()
    assert isinstance(writer, SSEWriter)
    assert isinstance(parser, SSEParser)
    events = parser.feed(writer.write_all(response_events(resp))) + parser.close()
    back = collect_stream(events)
    assert parser.done
    assert ("client-model", resp.content, "tool_calls") == (back.model, back.content, back.finish_reason)
