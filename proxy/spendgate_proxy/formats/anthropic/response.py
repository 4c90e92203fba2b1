"""Whole (non-streamed) Anthropic answers ↔ :class:`ChatResponse`, and ``usage`` both ways."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from spendgate_proxy.formats.anthropic.request import tool_id, tool_input
from spendgate_proxy.formats.canonical import (
    ChatResponse,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Usage,
    finish_reason_from_anthropic,
    finish_reason_to_anthropic,
)


def _count(value: object) -> int:
    """A token count from a provider's JSON: a non-negative int, 0 for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, int(value))


def usage_from_anthropic(raw: Mapping[str, Any]) -> Usage:
    """An Anthropic ``usage`` object → :class:`Usage` (input includes both cache counts)."""
    written = _count(raw.get("cache_creation_input_tokens"))
    read = _count(raw.get("cache_read_input_tokens"))
    details = raw.get("output_tokens_details")
    return Usage(
        input_tokens=_count(raw.get("input_tokens")) + written + read,
        output_tokens=_count(raw.get("output_tokens")),
        cache_read_tokens=read,
        cache_write_tokens=written,
        reasoning_tokens=_count(details.get("thinking_tokens")) if isinstance(details, Mapping) else 0,
    )


def usage_to_anthropic(usage: Usage) -> dict[str, Any]:
    """:class:`Usage` → Anthropic ``usage`` (``input_tokens`` without the cache counts)."""
    uncached = max(0, usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens)
    out: dict[str, Any] = {
        "input_tokens": uncached,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
    }
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out


def parse_response(obj: Mapping[str, Any]) -> ChatResponse:
    """An Anthropic ``message`` object → :class:`ChatResponse` (server-tool blocks are skipped)."""
    parts: list[Part] = []
    content = obj.get("content")
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(TextPart(block["text"]))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") if isinstance(block.get("input"), Mapping) else {}).decode()
            parts.append(ToolCallPart(str(block.get("id") or ""), str(block.get("name") or ""), arguments))
        elif kind == "thinking":
            signature = block.get("signature")
            parts.append(ThinkingPart(str(block.get("thinking") or ""), signature if signature else None))
        elif kind == "redacted_thinking":
            parts.append(ThinkingPart(str(block.get("data") or ""), redacted=True))
    usage, stop_reason = obj.get("usage"), obj.get("stop_reason")
    return ChatResponse(
        id=str(obj.get("id") or ""),
        model=str(obj.get("model") or ""),
        content=tuple(parts),
        finish_reason=finish_reason_from_anthropic(stop_reason if isinstance(stop_reason, str) else None),
        usage=usage_from_anthropic(usage) if isinstance(usage, Mapping) else None,
    )


def render_response(resp: ChatResponse, *, stop_sequence: str | None = None) -> dict[str, Any]:
    """:class:`ChatResponse` → an Anthropic ``message`` object.

    Thinking from a provider without signatures is shown with ``signature: ""`` (the SDK reads it;
    the real API would refuse it if sent back, so :func:`render_request` never does).
    """
    content: list[dict[str, Any]] = []
    for part in resp.content:
        if isinstance(part, ThinkingPart):
            if part.redacted:
                content.append({"type": "redacted_thinking", "data": part.text})
            else:
                content.append({"type": "thinking", "thinking": part.text, "signature": part.signature or ""})
        elif isinstance(part, TextPart):
            if part.text:
                content.append({"type": "text", "text": part.text})
        elif isinstance(part, ToolCallPart):
            content.append(
                {
                    "type": "tool_use",
                    "id": tool_id(part.id),
                    "name": part.name,
                    "input": tool_input(part.arguments_json),
                }
            )
    has_calls = any(b["type"] == "tool_use" for b in content)
    stop_reason = finish_reason_to_anthropic(resp.finish_reason) or ("tool_use" if has_calls else "end_turn")
    if stop_sequence is not None and stop_reason == "end_turn":
        stop_reason = "stop_sequence"
    return {
        "id": resp.id,
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_to_anthropic(resp.usage or Usage()),
    }


def count_tokens_response(input_tokens: int) -> dict[str, Any]:
    """The ``/v1/messages/count_tokens`` answer."""
    return {"input_tokens": input_tokens}


__all__ = ["count_tokens_response", "parse_response", "render_response", "usage_from_anthropic", "usage_to_anthropic"]
