"""Event-stream frames: the simulator's encoder checked by botocore's decoder, and the provider's parser.

botocore has no event-stream encoder, so ``spendgate_simulator.bedrock.encode_frame`` is ours; every
frame it makes is decoded here by botocore's ``EventStreamBuffer`` (which checks both CRC32s and
the lengths) and, for Bedrock's frames, by botocore's rest-json parser with the ``bedrock-runtime``
service model, the code ``invoke_model_with_response_stream`` itself runs. The provider's parser is
then fed the same bytes cut at every size down to one byte.
"""

from __future__ import annotations

import base64
import random

import orjson
import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.parsers import EventStreamJSONParser

from spendgate_proxy.formats.canonical import (
    Finish,
    StreamError,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageEvent,
    collect_stream,
)
from spendgate_proxy.providers.bedrock import BedrockStreamParser
from spendgate_simulator.bedrock import chunk_frame, encode_frame, exception_frame

ANTHROPIC_EVENTS = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_bdrk_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 12, "cache_read_input_tokens": 100, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "the weather. ✓"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
    },
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city": '}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}},
    {
        "type": "message_stop",
        "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": 12,
            "outputTokenCount": 30,
            "invocationLatency": 900,
            "firstByteLatency": 300,
            "cacheReadInputTokenCount": 100,
        },
    },
]
STREAM = b"".join(chunk_frame(e) for e in ANTHROPIC_EVENTS)


def _decode_all(data: bytes, sizes: list[int]) -> list:
    buffer, messages, at = EventStreamBuffer(), [], 0
    for size in sizes:
        buffer.add_data(data[at : at + size])
        at += size
        messages.extend(buffer)
    assert at >= len(data)
    return messages


def _cuts(total: int, seed: int) -> list[int]:
    rng, sizes = random.Random(seed), []
    while sum(sizes) < total:
        sizes.append(rng.randint(1, 40))
    return sizes


# ---------------------------------------------------------------------------------------------
# Our encoder, botocore's decoder


@pytest.mark.parametrize(
    "headers, payload",
    [
        ({}, b""),
        ({}, b"{'foo':'bar'}"),
        ({"content-type": "application/json"}, b"{'foo':'bar'}"),
        ({"t": True, "f": False, "i": -1, "l": 2**40, "b": b"\x00\xff", "s": "ütf8"}, b"x" * 70_000),
        ({":message-type": "error", ":error-code": "code", ":error-message": "message"}, b""),
    ],
)
def test_botocore_decodes_encoded_frames(headers: dict, payload: bytes) -> None:
    frame = encode_frame(headers, payload)
    for sizes in ([len(frame)], [1] * len(frame), _cuts(len(frame), 7)):
        (message,) = _decode_all(frame, sizes)
        assert headers == message.headers
        assert payload == message.payload
        assert len(frame) == message.prelude.total_length


def test_botocore_rejects_a_flipped_bit() -> None:
    frame = bytearray(encode_frame({":event-type": "chunk"}, b'{"bytes":"e30="}'))
    frame[-6] ^= 0x01  # inside the payload: only the message CRC can tell
    with pytest.raises(ChecksumMismatch):
        _decode_all(bytes(frame), [len(frame)])


def test_botocore_bedrock_parser_reads_chunk_and_exception_frames() -> None:
    # The rest-json event parser with bedrock-runtime's ResponseStream shape: what boto3 users get.
    model = ServiceModel(Loader().load_service_model("bedrock-runtime", "service-2"), "bedrock-runtime")
    shape = model.operation_model("InvokeModelWithResponseStream").output_shape.members["body"]
    parser = EventStreamJSONParser()  # what botocore's EventStream runs on each message
    messages = _decode_all(STREAM + exception_frame("throttlingException", "slow down"), [1] * 50 + [10**6])
    parsed = [parser.parse(m.to_response_dict(), shape) for m in messages]
    assert [orjson.loads(p["chunk"]["bytes"]) for p in parsed[:-1]] == ANTHROPIC_EVENTS
    assert parsed[-1]["Error"] == {"Code": "throttlingException", "Message": "slow down"}
    assert messages[-1].to_response_dict()["status_code"] == 400  # raised as EventStreamError by botocore


# ---------------------------------------------------------------------------------------------
# The provider's parser


def _parse(data: bytes, sizes: list[int]) -> list:
    parser, events, at = BedrockStreamParser(), [], 0
    for size in sizes:
        events += parser.feed(data[at : at + size])
        at += size
    return events + parser.close()


EXPECTED = [
    StreamStart("msg_bdrk_1", "claude-sonnet-4-5-20250929"),
    TextDelta("Checking "),
    TextDelta("the weather. ✓"),
    ToolCallStart(0, "toolu_1", "get_weather"),
    ToolCallDelta(0, '{"city": '),
    ToolCallDelta(0, '"Paris"}'),
    Finish("tool_calls"),
    UsageEvent(Usage(input_tokens=112, output_tokens=30, cache_read_tokens=100)),
]


@pytest.mark.parametrize("seed", range(5))
def test_parser_any_cut(seed: int) -> None:
    assert _parse(STREAM, _cuts(len(STREAM), seed)) == EXPECTED


def test_parser_one_byte_at_a_time() -> None:
    assert _parse(STREAM, [1] * len(STREAM)) == EXPECTED


def test_parser_is_incremental() -> None:
    # Each frame's events come out as soon as its last byte is in, not at the end of the body.
    parser = BedrockStreamParser()
    first = chunk_frame(ANTHROPIC_EVENTS[0])
    assert parser.feed(first[:-1]) == []
    assert [EXPECTED[0]] == parser.feed(first[-1:])


def test_usage_from_invocation_metrics_when_events_have_none() -> None:
    events = [
        {"type": "message_start", "message": {"id": "m", "model": "claude"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 7, "outputTokenCount": 3}},
    ]
    parsed = _parse(b"".join(chunk_frame(e) for e in events), [10**6])
    assert UsageEvent(Usage(input_tokens=7, output_tokens=3)) == parsed[-1]


@pytest.mark.parametrize(
    "exception, message, expected",
    [
        ("throttlingException", "Too many tokens", StreamError("Too many tokens", "requests", "rate_limit_exceeded")),
        ("modelStreamErrorException", "model broke", StreamError("model broke", "server_error", None)),
        ("modelTimeoutException", "took too long", StreamError("took too long", "server_error", "timeout")),
        ("serviceUnavailableException", "busy", StreamError("busy", "server_error", "overloaded")),
    ],
)
def test_exception_frames_end_the_stream(exception: str, message: str, expected: StreamError) -> None:
    data = b"".join(chunk_frame(e) for e in ANTHROPIC_EVENTS[:3]) + exception_frame(exception, message)
    events = _parse(data + chunk_frame(ANTHROPIC_EVENTS[3]), [1] * (len(data) + 10) + [10**6])
    assert [*EXPECTED[:2], expected] == events


def test_overflow_in_stream_is_context_length_exceeded() -> None:
    events = _parse(exception_frame("validationException", "Input is too long for requested model."), [10**6])
    (error,) = events
    assert (error.type, error.code) == ("invalid_request_error", "context_length_exceeded")


def test_cut_stream_and_corrupt_frame_give_errors() -> None:
    cut = _parse(STREAM[: len(STREAM) // 2], [10**6])
    assert isinstance(cut[-1], StreamError) and "middle of a frame" in cut[-1].message
    corrupt = bytearray(STREAM)
    corrupt[20] ^= 0xFF
    events = _parse(bytes(corrupt), [10**6])
    assert [StreamError("Bedrock sent a corrupt event-stream frame (ChecksumMismatch)", "server_error")] == events


def test_padding_and_unknown_events_are_ignored() -> None:
    padded = encode_frame(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
        orjson.dumps({"bytes": base64.b64encode(orjson.dumps(ANTHROPIC_EVENTS[0])).decode(), "p": "abcdefgh"}),
    )
    other = encode_frame({":event-type": "initial-response", ":message-type": "event"}, b"{}")
    assert [EXPECTED[0]] == BedrockStreamParser().feed(other + padded)


def test_collected_answer() -> None:
    answer = collect_stream(_parse(STREAM, [10**6]))
    assert (answer.finish_reason, answer.content[1].arguments_json) == ("tool_calls", '{"city": "Paris"}')
