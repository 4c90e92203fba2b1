"""The SSE tap: bytes pass through unchanged whatever the chunking; usage is found; strip mode
returns exactly what the provider sends when usage was not asked for."""

from __future__ import annotations

import orjson
import pytest

from spendgate_proxy.call.openai_tap import OpenAITap as StreamTap
from spendgate_proxy.formats.openai import usage_from_openai


def _event(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _chunk(i: int, delta: dict, finish: str | None = None, usage: bool = True) -> dict:
    obj = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4.1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        obj["usage"] = None
    return obj


def _stream(with_usage: bool) -> bytes:
    events = [_event(_chunk(0, {"role": "assistant", "content": ""}, usage=with_usage))]
    events += [_event(_chunk(i, {"content": f"word{i} "}, usage=with_usage)) for i in range(1, 6)]
    events.append(_event(_chunk(6, {}, "stop", usage=with_usage)))
    if with_usage:
        usage = {
            "prompt_tokens": 100,
            "completion_tokens": 5,
            "total_tokens": 105,
            "prompt_tokens_details": {"cached_tokens": 60},
            "completion_tokens_details": {"reasoning_tokens": 2},
        }
        events.append(
            _event(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "gpt-4.1",
                    "choices": [],
                    "usage": usage,
                }
            )
        )
    events.append(b"data: [DONE]\n\n")
    return b"".join(events)


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 64, 1000, 100_000])
def test_passthrough_is_unchanged_and_taps_usage_at_any_chunking(size: int) -> None:
    data = _stream(with_usage=True)
    tap = StreamTap(strip_usage=False)
    out = b"".join(tap.feed(c) for c in _split(data, size)) + tap.flush()
    tap.finish()
    assert out == data
    assert tap.usage is not None
    assert (tap.usage.input_tokens, tap.usage.output_tokens) == (100, 5)
    assert (tap.usage.cache_read_tokens, tap.usage.reasoning_tokens) == (60, 2)
    assert tap.finish_reasons == ["stop"]
    assert (tap.response_id, tap.response_model) == ("chatcmpl-1", "gpt-4.1")
    assert tap.done


@pytest.mark.parametrize("size", [1, 13, 100_000])
def test_strip_mode_returns_the_stream_the_client_would_have_had(size: int) -> None:
    tap = StreamTap(strip_usage=True)
    out = b"".join(tap.feed(c) for c in _split(_stream(with_usage=True), size)) + tap.flush()
    assert out == _stream(with_usage=False)
    assert tap.usage is not None and tap.usage.output_tokens == 5


@pytest.mark.parametrize("size", [1, 13, 100_000])
def test_strip_mode_notes_each_event_once_at_any_chunking(size: int) -> None:
    # Strip mode reads whole blocks of events at once: whatever the chunking, the first event
    # gives id and model, each finish reason is noted once, and the text is there for estimates.
    tap = StreamTap(strip_usage=True)
    b"".join(tap.feed(c) for c in _split(_stream(with_usage=True), size)) + tap.flush()
    assert tap.finish_reasons == ["stop"]
    assert (tap.response_id, tap.response_model) == ("chatcmpl-1", "gpt-4.1")
    assert tap.done
    text, scale = tap.streamed_text()
    assert text and scale == 1.0


def test_crlf_separated_events_are_understood() -> None:
    data = _stream(with_usage=True).replace(b"\n\n", b"\r\n\r\n")
    tap = StreamTap(strip_usage=True)
    out = b"".join(tap.feed(c) for c in _split(data, 50)) + tap.flush()
    assert b'"usage":{' not in out
    assert out.endswith(b"data: [DONE]\r\n\r\n")
    assert tap.usage is not None


def test_streamed_text_collects_content_and_tool_arguments() -> None:
    tap = StreamTap(strip_usage=False)
    tap.feed(_event(_chunk(0, {"role": "assistant", "content": "Hello "})))
    tap.feed(
        _event(
            _chunk(
                1,
                {
                    "tool_calls": [
                        {"index": 0, "id": "c1", "type": "function", "function": {"name": "edit", "arguments": '{"pa'}}
                    ]
                },
            )
        )
    )
    tap.feed(_event(_chunk(2, {"tool_calls": [{"index": 0, "function": {"arguments": 'th": "a"}'}}]})))
    text, scale = tap.streamed_text()
    tap.finish()
    assert text == 'Hello edit{"path": "a"}'
    assert scale == 1.0
    assert tap.usage is None


def test_usage_reader_accepts_responses_naming_and_cache_writes() -> None:
    u = usage_from_openai(
        {
            "input_tokens": 50,
            "output_tokens": 9,
            "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5},
            "output_tokens_details": {"reasoning_tokens": 3},
        }
    )
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens) == (
        50,
        9,
        10,
        5,
        3,
    )


def test_error_event_is_noticed() -> None:
    tap = StreamTap(strip_usage=False)
    tap.feed(_event({"error": {"message": "overloaded", "type": "server_error", "code": "overloaded"}}))
    tap.finish()
    assert tap.error == {"message": "overloaded", "type": "server_error", "code": "overloaded"}


def test_passthrough_finds_usage_past_the_kept_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    import spendgate_proxy.call.openai_tap as stream

    monkeypatch.setattr(stream, "MAX_KEPT_BYTES", 600)
    data = _stream(with_usage=True)
    tap = StreamTap(strip_usage=False)
    out = b"".join(tap.feed(c) for c in _split(data, 40))
    tap.finish()
    assert out == data
    assert tap.usage is not None and tap.usage.input_tokens == 100
    assert tap.done
    text, scale = tap.streamed_text()
    assert text.startswith("word1 ")
    assert scale > 1  # what was not kept is extrapolated


def test_crlf_passthrough() -> None:
    data = _stream(with_usage=True).replace(b"\n\n", b"\r\n\r\n")
    tap = StreamTap(strip_usage=False)
    for c in _split(data, 33):
        tap.feed(c)
    tap.finish()
    assert tap.usage is not None and tap.finish_reasons == ["stop"] and tap.response_id == "chatcmpl-1"
