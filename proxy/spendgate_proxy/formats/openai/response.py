"""Whole (non-streamed) Chat Completions answers ↔ :class:`ChatResponse`, ``usage`` both ways, finish reasons."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from spendgate_proxy.formats._values import list_or_empty, mapping_or_empty
from spendgate_proxy.formats.canonical import (
    ChatResponse,
    FinishReason,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Usage,
)
from spendgate_proxy.formats.openai.request import parse_content, parse_tool_call

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",  # the legacy name for the same thing
}


def usage_from_openai(raw: Mapping[str, Any]) -> Usage:
    """An OpenAI ``usage`` object (Chat Completions or Responses naming) → :class:`Usage`."""
    pdet = mapping_or_empty(raw.get("prompt_tokens_details") or raw.get("input_tokens_details"))
    cdet = mapping_or_empty(raw.get("completion_tokens_details") or raw.get("output_tokens_details"))
    return Usage(
        _count(raw.get("prompt_tokens", raw.get("input_tokens"))),
        _count(raw.get("completion_tokens", raw.get("output_tokens"))),
        # Some compatible servers (DeepSeek, vLLM builds) report cache hits at the top level.
        _count(pdet.get("cached_tokens") or raw.get("prompt_cache_hit_tokens")),
        _count(pdet.get("cache_write_tokens") or pdet.get("cache_creation_tokens")),
        _count(cdet.get("reasoning_tokens")),
    )


def _count(value: object) -> int:
    """A token count from a provider's JSON: an int (or a whole float); anything else is 0."""
    if type(value) is int:  # the usual case, first: not a bool (its type is bool), no union check
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)


def usage_to_openai(usage: Usage) -> dict[str, Any]:
    """:class:`Usage` → Chat Completions ``usage`` (``cache_write_tokens`` only when there were any)."""
    prompt_details: dict[str, int] = {"cached_tokens": usage.cache_read_tokens}
    if usage.cache_write_tokens:
        # Not an OpenAI field; OpenRouter and LiteLLM use this name, and our own tap reads it.
        prompt_details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def finish_reason_from_openai(reason: object) -> FinishReason | None:
    """A Chat Completions ``finish_reason`` (or a compatible server's variant) → canonical."""
    if not isinstance(reason, str):
        return None
    return _FINISH_REASONS.get(reason, "stop")


def parse_response(obj: Mapping[str, Any]) -> ChatResponse:
    """A ``chat.completion`` object → :class:`ChatResponse` (choice 0)."""
    choices = list_or_empty(obj.get("choices"))
    choice = mapping_or_empty(choices[0] if choices else None)
    message = mapping_or_empty(choice.get("message"))
    parts: list[Part] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts.append(ThinkingPart(reasoning))
    content = message.get("content")
    if isinstance(content, str) and content:
        parts.append(TextPart(content))
    elif isinstance(content, list):
        parts.extend(parse_content(content))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append(TextPart(message["refusal"]))
    for call in list_or_empty(message.get("tool_calls")):
        part = parse_tool_call(call)
        if part is not None:
            parts.append(part)
    usage = obj.get("usage")
    return ChatResponse(
        id=str(obj.get("id") or ""),
        model=str(obj.get("model") or ""),
        content=tuple(parts),
        finish_reason=finish_reason_from_openai(choice.get("finish_reason")),
        usage=usage_from_openai(usage) if isinstance(usage, Mapping) else None,
        created=obj.get("created") if isinstance(obj.get("created"), int) else None,
    )


def render_response(resp: ChatResponse, *, reasoning_content: bool = True) -> dict[str, Any]:
    """:class:`ChatResponse` → a ``chat.completion`` object (thinking as ``reasoning_content``)."""
    text = "".join(p.text for p in resp.content if isinstance(p, TextPart))
    calls = [p for p in resp.content if isinstance(p, ToolCallPart)]
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    thinking = "".join(p.text for p in resp.content if isinstance(p, ThinkingPart) and not p.redacted)
    if reasoning_content and thinking:
        message["reasoning_content"] = thinking
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}} for c in calls
        ]
    finish = resp.finish_reason or ("tool_calls" if calls else "stop")
    out: dict[str, Any] = {
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created if resp.created is not None else int(time.time()),
        "model": resp.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
    }
    if resp.usage is not None:
        out["usage"] = usage_to_openai(resp.usage)
    return out


__all__ = [
    "finish_reason_from_openai",
    "parse_response",
    "render_response",
    "usage_from_openai",
    "usage_to_openai",
]
