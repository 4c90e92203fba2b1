"""What a developer sees when a budget verdict pauses their call.

Two forms, chosen by ``proxy.pause_response``:

``error`` (default)
    HTTP 402 with an OpenAI-style error body (``type: budget_exceeded``, ``code: budget_paused``)
    naming the budget, the spend, the limit, when it resets and how to get an override. 402, not
    429: Cursor shows every 429 as "rate limit exceeded" and clients retry 429s, which only repeats
    the refusal.
``message``
    HTTP 200 with an ordinary assistant message carrying the same text (streamed as Chat
    Completions SSE when the client asked to stream), so the reason shows up in the chat pane of
    tools that do not display error bodies well. Nothing is sent to a provider either way.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from spendgate_proxy.errors import error_body

BUDGET_ERROR_STATUS = 402


def pause_text(verdict: Any) -> str:
    """The one message, from the verdict's reason, reset time and override hint."""
    text = f"spendgate paused this request: {verdict.reason.rstrip('.')}."
    if verdict.until_ms:
        reset = datetime.fromtimestamp(verdict.until_ms / 1000, UTC)
        text += f" The budget resets at {reset.strftime('%Y-%m-%d %H:%M UTC')}."
    hint = verdict.override_hint.strip().rstrip(".")
    if hint:
        text += f" {hint[0].upper()}{hint[1:]}."
    return text


def _headers(verdict: Any) -> dict[str, str]:
    headers = {
        "Access-Control-Allow-Origin": "*",
        "x-spendgate-budget": verdict.budget_id,
        "x-spendgate-budget-state": "paused",
        "x-spendgate-budget-spend-usd": f"{verdict.spend_usd:.6f}",
        "x-spendgate-budget-limit-usd": f"{verdict.limit_usd:.6f}",
    }
    if verdict.until_ms:
        headers["x-spendgate-budget-reset"] = datetime.fromtimestamp(verdict.until_ms / 1000, UTC).isoformat()
    return headers


def pause_response(verdict: Any, *, form: str, model: str, stream: bool) -> web.Response:
    """The refusal for a paused call, in the configured form."""
    text = pause_text(verdict)
    headers = _headers(verdict)
    if form != "message":
        return web.Response(
            status=BUDGET_ERROR_STATUS,
            body=error_body(text, "budget_exceeded", code="budget_paused"),
            content_type="application/json",
            headers=headers,
        )
    ident, created = f"chatcmpl-spendgate-{verdict.budget_id}", int(time.time())
    if not stream:
        body = {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json", headers=headers)
    base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
    events = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    payload = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    return web.Response(body=payload, headers={**headers, "Content-Type": "text/event-stream"})
