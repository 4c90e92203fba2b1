"""Token estimates, for calls whose usage the provider never reported (disconnects, cut streams) and for count_tokens.

The provider still bills a call the client abandoned, so the span must carry a number. When
``tiktoken`` is installed *and* its encoding file is already cached on disk, the estimate uses the
real ``o200k_base`` tokenizer; tiktoken downloads that file on first use, which fails without
internet, so the proxy never triggers a download. Otherwise it uses the documented heuristic of
one token per 4 characters (OpenAI's own rule of thumb for English and code), rounded up.
Spans carrying an estimate say so: ``spendgate.usage.source = estimate``.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import orjson

from spendgate_proxy.formats.anthropic.request import render_tool
from spendgate_proxy.formats.canonical import (
    ChatRequest,
    ImagePart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)

CHARS_PER_TOKEN = 4.0
MESSAGE_OVERHEAD_TOKENS = 4
"""Per-message framing tokens (role, separators) that chat formats add, as OpenAI documents."""
IMAGE_TOKENS = 1600
"""Estimated input tokens per image: Anthropic's cost of a ~1.15-megapixel image (width·height/750)."""


@functools.lru_cache(maxsize=1)
def _encoder() -> Any | None:
    try:
        import tiktoken
        import tiktoken_ext.openai_public  # noqa: F401  (registers the encodings)
    except ImportError:
        return None
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if not cache or not os.path.isdir(cache) or not os.listdir(cache):
        return None  # loading would try to download the encoding file
    try:
        return tiktoken.get_encoding("o200k_base")
    except Exception:  # any failure to load means: use the heuristic
        return None


def count_tokens(text: str) -> int:
    """Estimated tokens in ``text``."""
    if not text:
        return 0
    enc = _encoder()
    if enc is not None:
        return len(enc.encode(text, disallowed_special=()))
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prompt_tokens(body: dict[str, Any]) -> int:
    """Estimated input tokens of a Chat Completions body (text parts, tool calls and tools)."""
    total = 0
    pieces: list[str] = []
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        total += MESSAGE_OVERHEAD_TOKENS
        pieces.append(_content_text(message.get("content")))
        for call in message.get("tool_calls") or ():
            fn = call.get("function") or {} if isinstance(call, dict) else {}
            pieces.append(str(fn.get("arguments") or ""))
    if body.get("tools"):
        pieces.append(orjson.dumps(body["tools"]).decode())
    return total + count_tokens("\n".join(pieces))


def estimate_input_tokens(req: ChatRequest) -> int:
    """Estimated input tokens of a request, for ``count_tokens`` when no Anthropic upstream can answer.

    Uses :func:`count_tokens` (tiktoken when cached, else 4 characters a token), plus per-message
    framing and :data:`IMAGE_TOKENS` per image. Tools count as the Anthropic definitions they would
    be sent as (``count_tokens`` is Anthropic's endpoint). Thinking from earlier turns is left out,
    as Anthropic strips it from the context; only the last assistant turn's counts.
    """
    pieces: list[str] = [p.text for p in req.system]
    images = 0
    last_assistant = max((i for i, m in enumerate(req.messages) if m.role == "assistant"), default=-1)
    for i, message in enumerate(req.messages):
        for part in message.parts:
            if isinstance(part, TextPart):
                pieces.append(part.text)
            elif isinstance(part, ImagePart):
                images += 1
            elif isinstance(part, ToolCallPart):
                pieces.append(part.name + part.arguments_json)
            elif isinstance(part, ToolResultPart):
                if isinstance(part.content, str):
                    pieces.append(part.content)
                else:
                    pieces.extend(p.text for p in part.content if isinstance(p, TextPart))
                    images += sum(1 for p in part.content if isinstance(p, ImagePart))
            elif isinstance(part, ThinkingPart) and i == last_assistant and not part.redacted:
                pieces.append(part.text)
    if req.tools:
        pieces.append(orjson.dumps([render_tool(t) for t in req.tools]).decode())
    return count_tokens("\n".join(pieces)) + MESSAGE_OVERHEAD_TOKENS * len(req.messages) + IMAGE_TOKENS * images
