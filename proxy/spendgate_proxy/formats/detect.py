"""Which request shape a body posted to ``/chat/completions`` has: Chat Completions, Responses or Anthropic.

Cursor picks the shape by model name and mode (docs/cursor-facts.md, request bodies), so the Cursor route
detects it from the fields instead of trusting the path. The rules, first match wins:

1. ``input``, or ``instructions`` → ``"responses"`` (no other shape has either field).
2. A field or value only Anthropic Messages uses → ``"anthropic"``: ``system`` as a list of
   blocks, content blocks typed ``tool_use`` / ``tool_result`` / ``thinking`` /
   ``redacted_thinking`` / ``document``, an ``image`` block with a ``source``, a tool with
   ``input_schema``, a ``tool_choice`` object typed ``any`` / ``tool`` (or ``auto``/``none`` as an
   object), a ``thinking`` object, ``stop_sequences``.
3. A top-level string ``system`` or ``top_k`` → ``"anthropic"``, unless the body also has something only
   Chat Completions uses (``tool``/``system``/``developer`` messages, ``tool_calls``,
   ``image_url`` parts, nested ``function`` tools), because a chat body with a stray ``system``
   field parses fine as chat and would lose its tool turns as Anthropic (and vLLM-style chat
   clients send ``top_k``).
4. Otherwise ``"chat"``: plain ``messages`` with string or ``text`` content are valid in both
   Chat Completions and Anthropic, and the chat parser is the more tolerant one.

``cache_control`` on text parts is not a signal: OpenRouter-style chat bodies carry it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

from spendgate_proxy.formats._values import list_or_empty

Shape: TypeAlias = Literal["chat", "responses", "anthropic"]

_ANTHROPIC_BLOCKS = frozenset({"tool_use", "tool_result", "thinking", "redacted_thinking", "document"})
_CHAT_ONLY_ROLES = frozenset({"tool", "system", "developer", "function"})


def detect_shape(body: Mapping[str, Any]) -> Shape:
    """The request shape of a parsed JSON body; see the module docstring for the rules."""
    if "input" in body or "instructions" in body:
        return "responses"
    if _anthropic_only(body):
        return "anthropic"
    if (isinstance(body.get("system"), str) or "top_k" in body) and not _chat_only(body):
        return "anthropic"
    return "chat"


def _anthropic_only(body: Mapping[str, Any]) -> bool:
    if isinstance(body.get("system"), list):
        return True
    if isinstance(body.get("thinking"), Mapping) or "stop_sequences" in body:
        return True
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") in ("any", "tool", "auto", "none"):
        return True
    for tool in list_or_empty(body.get("tools")):
        if isinstance(tool, Mapping) and "input_schema" in tool:
            return True
    for message in list_or_empty(body.get("messages")):
        if not isinstance(message, Mapping):
            continue
        for block in list_or_empty(message.get("content")):
            if not isinstance(block, Mapping):
                continue
            kind = block.get("type")
            if kind in _ANTHROPIC_BLOCKS or (kind == "image" and "source" in block):
                return True
    return False


def _chat_only(body: Mapping[str, Any]) -> bool:
    for tool in list_or_empty(body.get("tools")):
        if isinstance(tool, Mapping) and isinstance(tool.get("function"), Mapping):
            return True
    for message in list_or_empty(body.get("messages")):
        if not isinstance(message, Mapping):
            continue
        if message.get("role") in _CHAT_ONLY_ROLES or message.get("tool_calls"):
            return True
        for block in list_or_empty(message.get("content")):
            if isinstance(block, Mapping) and block.get("type") == "image_url":
                return True
    return False
