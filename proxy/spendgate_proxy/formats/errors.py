"""Provider errors in OpenAI's vocabulary, the proxy's canonical error form: context overflows above all.

Errors travel inside the proxy as OpenAI's error object (:func:`openai_error`); a route answering
in another format translates from it. Every provider words a full context window its own way,
while clients act only on OpenAI's ``context_length_exceeded`` (Cursor summarises the
conversation on it, docs/cursor-facts.md), so :func:`context_overflow` recognises the wordings and
:func:`map_context_overflow` and :func:`map_stream_error` turn them into that code, with OpenAI's
wording first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from spendgate_proxy.formats.canonical import StreamError

CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
"""OpenAI's error code for a prompt over the context window: the one code clients act on."""


def openai_error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object ``{message, type, param, code}`` (a response body wraps it as ``{"error": ...}``)."""
    return {"message": message, "type": type_, "param": param, "code": code}


def overflow_error(used: int | None, limit: int | None, original: str = "") -> dict[str, Any]:
    """OpenAI's ``context_length_exceeded`` error object, worded by :func:`context_overflow_message`."""
    message = context_overflow_message(used, limit, original)
    return openai_error(message, "invalid_request_error", CONTEXT_LENGTH_EXCEEDED, param="messages")


_OVERFLOW_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Anthropic (and Bedrock's Anthropic models): "prompt is too long: 201234 tokens > 200000 maximum".
    re.compile(r"prompt is too long: (?P<used>\d+) tokens > (?P<limit>\d+) maximum", re.I),
    # Anthropic, when input + max_tokens do not fit: "... exceed context limit: 188240 + 21333 > 200000".
    re.compile(r"exceed context limit: (?P<used>\d+) \+ \d+ > (?P<limit>\d+)", re.I),
    # OpenAI, Azure, vLLM, DeepSeek, Groq: "This model's maximum context length is 128000 tokens. However, ...".
    re.compile(r"maximum context length is (?P<limit>\d+) tokens.*?(?P<used>\d+) tokens", re.I | re.S),
    # Gemini's OpenAI-compatible endpoint.
    re.compile(
        r"input token count \((?P<used>\d+)\) exceeds the maximum number of tokens allowed \((?P<limit>\d+)\)", re.I
    ),
    # Mistral: "Prompt contains 140000 tokens ..., too large for model with 131072 maximum context length".
    re.compile(r"prompt contains (?P<used>\d+) tokens.*?too large for model with (?P<limit>\d+) maximum", re.I | re.S),
    # Bedrock's ValidationException, any model.
    re.compile(r"input is too long for requested model", re.I),
    # Wordings without numbers (OpenAI Responses: "Your input exceeds the context window of this model").
    re.compile(
        r"context[ _](?:length|window)[ _](?:exceeded|limit)|exceeds the context window|prompt is too long", re.I
    ),
)


def _error_fields(body: object) -> tuple[str, str | None, str | None]:
    """``(message, code, type)`` of an error body in any provider's shape (bytes, text or parsed)."""
    parsed: Any = body
    if isinstance(body, bytes | bytearray | str):
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return (body.decode(errors="replace") if isinstance(body, bytes | bytearray) else body), None, None
    if isinstance(parsed, list) and parsed:
        parsed = parsed[0]  # Gemini wraps its error object in a list
    if not isinstance(parsed, Mapping):
        return "", None, None
    error = parsed.get("error")
    if isinstance(error, Mapping):
        code, kind = error.get("code"), error.get("type")
        return (
            str(error.get("message") or ""),
            str(code) if code is not None else None,
            str(kind) if kind is not None else None,
        )
    if isinstance(error, str):
        return error, None, None
    for key in ("message", "Message", "detail"):  # Bedrock: {"message": ...}; others: FastAPI's detail
        if isinstance(parsed.get(key), str):
            return parsed[key], None, None
    return "", None, None


def context_overflow(status: int, body: object) -> tuple[int | None, int | None] | None:
    """``(tokens used, token limit)`` if this provider error is a context overflow, else None.

    Only client errors count (400, 413, 422, ...), never 429: OpenAI's "Request too large ... on
    tokens per min" is a rate limit, and summarising would not help it. Either number may be None
    when the provider does not say. Anthropic's 413 ``request_too_large`` (the body itself is too
    big, usually images) counts too: a summary shrinks it as well.
    """
    if not 400 <= status < 500 or status == 429:
        return None
    message, code, kind = _error_fields(body)
    if code == CONTEXT_LENGTH_EXCEEDED or (status == 413 and kind == "request_too_large"):
        return _numbers(message)
    for pattern in _OVERFLOW_PATTERNS:
        if pattern.search(message):
            return _numbers(message)
    return None


def _numbers(message: str) -> tuple[int | None, int | None]:
    for pattern in _OVERFLOW_PATTERNS:
        match = pattern.search(message)
        if match and match.groupdict():
            return int(match["used"]), int(match["limit"])
    return None, None


def context_overflow_message(used: int | None, limit: int | None, original: str = "") -> str:
    """OpenAI's overflow wording (the text Cursor and SDKs recognise), with the provider's own after it."""
    if limit is not None and used is not None:
        text = (
            f"This model's maximum context length is {limit} tokens. However, your messages resulted in "
            f"{used} tokens. Please reduce the length of the messages."
        )
    else:
        text = "This model's maximum context length was exceeded. Please reduce the length of the messages."
    return f"{text} (upstream: {original})" if original and original != text else text


def map_context_overflow(status: int, body: bytes | str | Mapping[str, Any]) -> tuple[int, bytes]:
    """A provider's error → OpenAI's ``context_length_exceeded`` 400 when it is a context overflow.

    Cursor summarises the conversation only on that error (docs/cursor-facts.md, what Cursor expects back);
    any other error is returned as it came (the body as bytes).
    """
    found = context_overflow(status, body)
    as_bytes = (
        orjson.dumps(body) if isinstance(body, Mapping) else body.encode() if isinstance(body, str) else bytes(body)
    )
    if found is None:
        return status, as_bytes
    message, code, _ = _error_fields(body)
    if status == 400 and code == CONTEXT_LENGTH_EXCEEDED:
        return status, as_bytes  # already OpenAI's own error: nothing to improve
    return 400, orjson.dumps({"error": overflow_error(*found, original=message)})


def map_stream_error(error: StreamError) -> StreamError:
    """A mid-stream provider error, as ``context_length_exceeded`` when it is an overflow (Bedrock
    can report one as a stream exception); anything else unchanged."""
    if error.code == CONTEXT_LENGTH_EXCEEDED:
        return error
    found = context_overflow(400, {"error": {"message": error.message, "code": error.code}})
    if found is None:
        return error
    rendered = overflow_error(*found, original=error.message)
    return StreamError(rendered["message"], rendered["type"], rendered["code"])


__all__ = [
    "CONTEXT_LENGTH_EXCEEDED",
    "context_overflow",
    "context_overflow_message",
    "map_context_overflow",
    "map_stream_error",
    "openai_error",
    "overflow_error",
]
