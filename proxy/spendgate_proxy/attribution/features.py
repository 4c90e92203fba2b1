"""Classify what a chat call is for (``spendgate.feature``) from the shape of its request.

The rules, first match wins, cheap enough for the request path (no tokenising, only the last
message and the tools are looked at):

1. ``summarise``: the last user message asks to summarise, compact or condense (how Cursor and
   coding agents shrink long contexts).
2. ``agent``: the request offers tools, or the conversation carries tool calls or tool results.
3. ``summarise``: a tool-less call whose system prompt asks for a summary. (Agent system prompts
   mention summaries in passing, so this rule comes after the tools rule.)
4. ``chat``: a conversation with at least one user message.
5. ``other``: anything else (no messages at all, e.g. a Responses-style ``input`` string).
"""

from __future__ import annotations

import re
from typing import Any

from spendgate_semconv.attributes import Feature

_SUMMARISE = re.compile(
    r"\b(summari[sz]e|summary of (the|this) conversation|compact (the|this) conversation|condense)\b",
    re.IGNORECASE,
)
_HEAD = 2000  # characters of a message inspected: the ask sits at the start, bodies can be 100K+


def _asks_to_summarise(text: str) -> bool:
    """``_SUMMARISE.search(text)``, skipping the regex when it cannot match.

    The regex tries its alternatives at every position (~1 µs for a short message). For ASCII text,
    ``lower()`` folds case exactly as ``IGNORECASE`` does, so a text without any of the words cannot
    match. Non-ASCII text always goes to the regex: ``IGNORECASE`` also equates a few non-ASCII
    letters with ASCII ones (the long s, the Kelvin sign) that ``lower()`` leaves alone.
    """
    if text.isascii():
        lowered = text.lower()
        # Every alternative of _SUMMARISE contains one of these words (spelled out: no generator).
        if "summar" not in lowered and "compact" not in lowered and "condense" not in lowered:
            return False
    return _SUMMARISE.search(text) is not None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content[:_HEAD]
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str))[:_HEAD]
    return ""


def classify(body: dict[str, Any]) -> str:
    """The feature value for a Chat Completions-shaped body."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return Feature.AGENT if body.get("tools") else Feature.OTHER
    last_user = None
    for m in reversed(messages):  # a plain loop: a generator costs more than the search on short bodies
        if isinstance(m, dict) and m.get("role") == "user":
            last_user = m
            break
    if last_user is not None and _asks_to_summarise(_text(last_user.get("content"))):
        return Feature.SUMMARISE
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    if body.get("tools") or last.get("role") == "tool" or last.get("tool_calls"):
        return Feature.AGENT
    first = messages[0] if isinstance(messages[0], dict) else {}
    if first.get("role") in ("system", "developer") and _asks_to_summarise(_text(first.get("content"))):
        return Feature.SUMMARISE
    if last_user is not None:
        return Feature.CHAT
    return Feature.OTHER
