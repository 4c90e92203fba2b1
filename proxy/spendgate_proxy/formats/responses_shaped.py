"""Responses-API-shaped request bodies → the canonical model (what Cursor posts for GPT models in Agent mode).

Cursor sends these to ``/chat/completions`` and still expects Chat Completions back (docs/cursor-facts.md,
request bodies item 2), so only the request side exists here: answers are rendered by
``openai``. Parsing is tolerant: chat-style message content (``text``, ``image_url``) and
nested function tools are accepted too, since the shapes Cursor sends drift between releases.

The Responses-only fields all stay in ``ChatRequest.extra`` (``previous_response_id`` too, so a
route can log when it is set); :func:`chat_extra` picks the ones Chat Completions also has. What
happens to each, and why: docs/translation.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from spendgate_proxy.formats._values import list_or_empty, number_or_none
from spendgate_proxy.formats.canonical import (
    CUSTOM_TOOL_INPUT,
    ChatRequest,
    ImagePart,
    Message,
    Part,
    Reasoning,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)
from spendgate_proxy.formats.openai.request import image_from_url, parse_tool, parse_tool_choice

_KNOWN_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "stream_options",
        "reasoning",
        "reasoning_effort",
        "metadata",
        "user",
    }
)

# Responses fields with a Chat Completions field of the same name and meaning.
_SAME_NAME_IN_CHAT = ("prompt_cache_key", "safety_identifier", "service_tier")


def parse_request(body: Mapping[str, Any]) -> ChatRequest:
    """A Responses-shaped body → :class:`ChatRequest` (``source_format="responses"``)."""
    system: list[TextPart] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        system.append(TextPart(instructions))

    items = body.get("input")
    if items is None:
        items = body.get("messages")  # a hybrid body: chat messages next to ``instructions``
    messages = _parse_input(items)
    # Leading system/developer items join the instructions, as in Chat Completions parsing.
    while messages and messages[0].role == "system":
        system.extend(p for p in messages.pop(0).parts if isinstance(p, TextPart))

    tools = [t for t in (parse_tool(raw) for raw in list_or_empty(body.get("tools"))) if t is not None]
    stream_options = body.get("stream_options")
    max_tokens = next(
        (body[k] for k in ("max_output_tokens", "max_completion_tokens", "max_tokens") if _is_int(body.get(k))),
        None,
    )
    stop = body.get("stop")
    return ChatRequest(
        model=str(body.get("model") or ""),
        messages=tuple(messages),
        system=tuple(system),
        tools=tuple(tools),
        tool_choice=parse_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=body.get("parallel_tool_calls")
        if isinstance(body.get("parallel_tool_calls"), bool)
        else None,
        max_tokens=max_tokens,
        temperature=number_or_none(body.get("temperature")),
        top_p=number_or_none(body.get("top_p")),
        stop=(stop,) if isinstance(stop, str) else tuple(s for s in list_or_empty(stop) if isinstance(s, str)),
        stream=body.get("stream") is True,
        include_usage=isinstance(stream_options, Mapping) and stream_options.get("include_usage") is True,
        reasoning=_parse_reasoning(body),
        metadata=body.get("metadata") if isinstance(body.get("metadata"), Mapping) else None,
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        extra={k: v for k, v in body.items() if k not in _KNOWN_FIELDS},
        source_format="responses",
    )


def chat_extra(req: ChatRequest) -> dict[str, Any]:
    """The fields of a Responses-shaped request's ``extra`` that Chat Completions also has.

    Pass the result as ``extra=`` to ``openai.render_request`` when the upstream is OpenAI
    (or claims full compatibility); leave it out for servers that reject unknown fields.
    """
    extra = req.extra
    out: dict[str, Any] = {k: extra[k] for k in _SAME_NAME_IN_CHAT if k in extra}
    text = extra.get("text")
    if isinstance(text, Mapping):
        if isinstance(text.get("verbosity"), str):
            out["verbosity"] = text["verbosity"]
        fmt = text.get("format")
        if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
            # Responses flattens the schema into ``format``; Chat Completions nests it.
            schema = {k: v for k, v in fmt.items() if k != "type"}
            out["response_format"] = {"type": "json_schema", "json_schema": schema}
        elif isinstance(fmt, Mapping) and fmt.get("type") == "json_object":
            out["response_format"] = {"type": "json_object"}
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_reasoning(body: Mapping[str, Any]) -> Reasoning | None:
    raw = body.get("reasoning")
    if isinstance(raw, Mapping):
        effort = raw.get("effort") if isinstance(raw.get("effort"), str) else None
        summary = raw.get("summary") if isinstance(raw.get("summary"), str) else None
        if effort is None and summary is None:
            return None
        # effort "none" (GPT-5.1+) is an explicit off switch.
        return Reasoning(effort=effort, summary=summary, enabled=effort != "none")
    effort = body.get("reasoning_effort")
    return Reasoning(effort=effort) if isinstance(effort, str) else None


# ---------------------------------------------------------------------------------------------
# Input items


def _parse_input(items: object) -> list[Message]:
    """Input items → canonical messages.

    Consecutive assistant-side items (``reasoning``, assistant ``message``, ``function_call``)
    merge into one assistant message, because Chat Completions and Anthropic both want parallel
    tool calls in a single assistant turn, followed by their results.
    """
    if isinstance(items, str):
        return [Message("user", (TextPart(items),))] if items else []
    messages: list[Message] = []
    if not isinstance(items, list):
        return messages

    def assistant_part(part: Part) -> None:
        last = messages[-1] if messages else None
        if last is not None and last.role == "assistant" and not _ends_with_call_before_text(last, part):
            messages[-1] = Message("assistant", (*last.parts, part), last.name)
        else:
            messages.append(Message("assistant", (part,)))

    for item in items:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            parts = _parse_content(item.get("content"))
            if role == "assistant":
                for part in parts:
                    assistant_part(part)
            elif role in ("system", "developer"):
                messages.append(Message("system", tuple(p for p in parts if isinstance(p, TextPart))))
            elif role == "user":
                messages.append(Message("user", tuple(parts)))
        elif kind == "function_call":
            arguments = item.get("arguments")
            if not isinstance(arguments, str):
                arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
            assistant_part(ToolCallPart(_call_id(item), str(item.get("name") or ""), arguments or "{}"))
        elif kind == "custom_tool_call":
            raw_input = item.get("input") if isinstance(item.get("input"), str) else ""
            arguments = orjson.dumps({CUSTOM_TOOL_INPUT: raw_input}).decode()
            assistant_part(ToolCallPart(_call_id(item), str(item.get("name") or ""), arguments))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            messages.append(Message("tool", (ToolResultPart(_call_id(item), _parse_output(item.get("output"))),)))
        elif kind == "reasoning":
            summary = item.get("summary")
            text = "".join(
                s.get("text", "")
                for s in list_or_empty(summary)
                if isinstance(s, Mapping) and isinstance(s.get("text"), str)
            )
            signature = item.get("encrypted_content") if isinstance(item.get("encrypted_content"), str) else None
            if text or signature:
                assistant_part(ThinkingPart(text, signature))
        # item_reference and built-in tool items (web_search_call, ...) have no counterpart: dropped.
    return messages


def _ends_with_call_before_text(message: Message, part: Part) -> bool:
    """True when appending ``part`` would put text or thinking after a tool call in one turn.

    Tool results must follow the calls, so an assistant message after a call starts a new turn.
    """
    return not isinstance(part, ToolCallPart) and bool(message.parts) and isinstance(message.parts[-1], ToolCallPart)


def _call_id(item: Mapping[str, Any]) -> str:
    # ``call_id`` links a call to its output; ``id`` is the item's own id (fc_...), a fallback only.
    return str(item.get("call_id") or item.get("id") or "")


def _parse_content(content: object) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    parts: list[Part] = []
    if not isinstance(content, list):
        return parts
    for item in content:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        cache_control = item.get("cache_control") if isinstance(item.get("cache_control"), Mapping) else None
        if kind in ("input_text", "output_text", "text") and isinstance(item.get("text"), str):
            parts.append(TextPart(item["text"], cache_control))
        elif kind == "refusal" and isinstance(item.get("refusal"), str):
            parts.append(TextPart(item["refusal"]))
        elif kind in ("input_image", "image_url"):
            url = item.get("image_url")
            if isinstance(url, Mapping):  # the chat form {"image_url": {"url": ...}}
                url = url.get("url")
            detail = item.get("detail") if isinstance(item.get("detail"), str) else None
            if isinstance(url, str):
                parts.append(image_from_url(url, detail, cache_control))
            # An uploaded ``file_id`` image cannot be fetched by another provider: dropped.
    return parts


def _parse_output(output: object) -> str | tuple[TextPart | ImagePart, ...]:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return tuple(p for p in _parse_content(output) if isinstance(p, TextPart | ImagePart))
    return "" if output is None else orjson.dumps(output).decode()
