"""Context overflows: every provider's wording becomes OpenAI's ``context_length_exceeded``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from spendgate_proxy.formats.canonical import StreamError
from spendgate_proxy.formats.errors import map_context_overflow, map_stream_error

ANTHROPIC_OVERFLOW = {
    "type": "error",
    "error": {"type": "invalid_request_error", "message": "prompt is too long: 208310 tokens > 200000 maximum"},
}

OVERFLOWS: list[tuple[str, int, Any, tuple[int | None, int | None]]] = [
    ("anthropic", 400, ANTHROPIC_OVERFLOW, (208310, 200000)),
    (
        "anthropic input + max_tokens",
        400,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000, "
                "decrease input length or `max_tokens` and try again",
            },
        },
        (188240, 200000),
    ),
    (
        "anthropic 413",
        413,
        {"type": "error", "error": {"type": "request_too_large", "message": "Request exceeds the maximum size"}},
        (None, None),
    ),
    ("bedrock", 400, {"message": "Input is too long for requested model."}, (None, None)),
    (
        "bedrock anthropic",
        400,
        {"message": "prompt is too long: 210000 tokens > 200000 maximum"},
        (210000, 200000),
    ),
    (
        "vllm",
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 32768 tokens. However, you requested 40000 tokens "
            "(39000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.",
            "type": "BadRequestError",
            "code": 400,
        },
        (40000, 32768),
    ),
    (
        "openai responses wording without a code",
        400,
        {"error": {"message": "Your input exceeds the context window of this model.", "type": "invalid_request_error"}},
        (None, None),
    ),
    (
        "gemini",
        400,
        [
            {
                "error": {
                    "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
                }
            }
        ],
        (1200000, 1048576),
    ),
    (
        "mistral",
        400,
        {
            "object": "error",
            "message": "Prompt contains 140000 tokens and 0 draft tokens, too large for model with 131072 "
            "maximum context length",
        },
        (140000, 131072),
    ),
    (
        "rate limit mentioning tokens is not overflow",
        429,
        {"error": {"message": "Request too large for gpt-4o on tokens per min (TPM)"}},
        None,
    ),
    ("server error", 500, {"error": {"message": "prompt is too long"}}, None),
    ("other 400", 400, {"error": {"message": "messages: roles must alternate"}}, None),
]


@pytest.mark.parametrize(("status", "body", "numbers"), [c[1:] for c in OVERFLOWS], ids=[c[0] for c in OVERFLOWS])
def test_map_context_overflow(status: int, body: Any, numbers: tuple[int | None, int | None] | None) -> None:
    raw = json.dumps(body).encode()
    new_status, new_body = map_context_overflow(status, raw)
    if numbers is None:
        assert (new_status, new_body) == (status, raw)
        return
    error = json.loads(new_body)["error"]
    assert new_status == 400
    assert (error["code"], error["type"], error["param"]) == (
        "context_length_exceeded",
        "invalid_request_error",
        "messages",
    )
    used, limit = numbers
    if limit is not None:
        assert error["message"].startswith(
            f"This model's maximum context length is {limit} tokens. However, your messages resulted in {used} tokens."
        )
    else:
        assert error["message"].startswith("This model's maximum context length was exceeded.")


def test_openai_overflow_passes_through_unchanged() -> None:
    body = json.dumps(
        {
            "error": {
                "message": "Your input exceeds the context window.",
                "type": None,
                "code": "context_length_exceeded",
            }
        }
    ).encode()
    assert map_context_overflow(400, body) == (400, body)


def test_map_context_overflow_accepts_parsed_and_text_bodies() -> None:
    assert map_context_overflow(400, ANTHROPIC_OVERFLOW)[0] == 400
    assert json.loads(map_context_overflow(400, ANTHROPIC_OVERFLOW)[1])["error"]["code"] == "context_length_exceeded"
    assert map_context_overflow(400, "plain text: prompt is too long")[0] == 400
    assert map_context_overflow(502, "Bad gateway") == (502, b"Bad gateway")


def test_overflow_reads_as_the_openai_sdk_error() -> None:
    import httpx
    import openai

    status, body = map_context_overflow(400, json.dumps(ANTHROPIC_OVERFLOW).encode())
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    client = openai.OpenAI(
        api_key="k", base_url="http://x/v1", http_client=httpx.Client(transport=transport), max_retries=0
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "context_length_exceeded"


def test_map_stream_error() -> None:
    overflow = map_stream_error(StreamError("Input is too long for requested model.", "validationException"))
    assert (overflow.code, overflow.type) == ("context_length_exceeded", "invalid_request_error")
    other = StreamError("throttled", "throttlingException")
    assert map_stream_error(other) is other
