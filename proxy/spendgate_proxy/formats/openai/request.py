"""Chat Completions request bodies ↔ :class:`ChatRequest`.

Leading ``system``/``developer`` messages become ``system``; ``max_completion_tokens`` and
``max_tokens`` are both read; nested and flat tools are both accepted (Cursor mixes them).

Content parts other than text and images, built-in tools and a message's legacy
``function_call`` are dropped when parsing; valid Chat Completions fields without a canonical slot
(``seed``, ``response_format``, ...) ride in ``ChatRequest.extra`` and are rendered back only for a
request parsed from Chat Completions. The full list, for users: docs/translation.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from spendgate_proxy.formats._values import list_or_empty, number_or_none
from spendgate_proxy.formats.canonical import (
    ChatRequest,
    ImagePart,
    Message,
    Part,
    Reasoning,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolChoiceTool,
    ToolResultPart,
    custom_tool,
)

# Fields parse_request maps onto the canonical model; everything else goes to ``extra``.
_KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "stream_options",
        "reasoning_effort",
        "metadata",
        "user",
    }
)

# OpenAI's reasoning models reject ``max_tokens`` and want ``max_completion_tokens``.
_REASONING_MODEL_RE = re.compile(r"^(o\d|gpt-5)")
_DATA_URL_RE = re.compile(r"^data:([^;,]+)?(?:;[^,]*)?;base64,(.*)$", re.DOTALL)


# ---------------------------------------------------------------------------------------------
# Requests


def parse_request(body: Mapping[str, Any]) -> ChatRequest:
    """A Chat Completions request body (as Cursor and SDKs send it) → :class:`ChatRequest`.

    Leading ``system``/``developer`` messages become ``system``; later ones stay in ``messages``
    with role ``system`` (a renderer for a format without mid-conversation system turns decides
    what to do with them).
    """
    system: list[TextPart] = []
    messages: list[Message] = []
    for raw in list_or_empty(body.get("messages")):
        if not isinstance(raw, Mapping):
            continue
        message = _parse_message(raw)
        if message is None:
            continue
        if message.role == "system" and not messages:
            system.extend(p for p in message.parts if isinstance(p, TextPart))
        else:
            messages.append(message)

    stream_options = body.get("stream_options")
    extra = {k: v for k, v in body.items() if k not in _KNOWN_FIELDS}
    if isinstance(stream_options, Mapping):
        rest = {k: v for k, v in stream_options.items() if k != "include_usage"}
        if rest:
            extra["stream_options"] = rest

    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    effort = body.get("reasoning_effort")
    stop = body.get("stop")
    return ChatRequest(
        model=str(body.get("model") or ""),
        messages=tuple(messages),
        system=tuple(system),
        tools=tuple(_parse_tools(body.get("tools"))),
        tool_choice=parse_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=_bool_or_none(body.get("parallel_tool_calls")),
        max_tokens=max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None,
        temperature=number_or_none(body.get("temperature")),
        top_p=number_or_none(body.get("top_p")),
        stop=(stop,) if isinstance(stop, str) else tuple(s for s in list_or_empty(stop) if isinstance(s, str)),
        stream=body.get("stream") is True,
        include_usage=isinstance(stream_options, Mapping) and stream_options.get("include_usage") is True,
        reasoning=Reasoning(effort=effort) if isinstance(effort, str) else None,
        metadata=body.get("metadata") if isinstance(body.get("metadata"), Mapping) else None,
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        extra=extra,
        source_format="chat",
    )


def _bool_or_none(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _parse_message(raw: Mapping[str, Any]) -> Message | None:
    role = raw.get("role")
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    if role in ("system", "developer"):
        return Message("system", tuple(p for p in parse_content(raw.get("content")) if isinstance(p, TextPart)), name)
    if role == "user":
        return Message("user", tuple(parse_content(raw.get("content"))), name)
    if role == "assistant":
        parts: list[Part] = []
        # DeepSeek-style reasoning echoed back; Cursor drops it on replay, others may not.
        reasoning = raw.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            parts.append(ThinkingPart(reasoning))
        parts.extend(parse_content(raw.get("content")))
        for call in list_or_empty(raw.get("tool_calls")):
            part = parse_tool_call(call)
            if part is not None:
                parts.append(part)
        return Message("assistant", tuple(parts), name)
    if role == "tool":
        content = raw.get("content")
        result: str | tuple[TextPart | ImagePart, ...]
        if isinstance(content, str) or content is None:
            result = content or ""
        else:
            result = tuple(p for p in parse_content(content) if isinstance(p, TextPart | ImagePart))
        return Message("tool", (ToolResultPart(str(raw.get("tool_call_id") or ""), result),))
    return None


def parse_content(content: object) -> list[Part]:
    """A message's ``content`` (a string or a list of parts) → text and image parts; others are dropped."""
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    parts: list[Part] = []
    if not isinstance(content, list):
        return parts
    for item in content:
        if isinstance(item, str):  # some clients send bare strings in the parts list
            parts.append(TextPart(item))
            continue
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        cache_control = item.get("cache_control") if isinstance(item.get("cache_control"), Mapping) else None
        if kind == "text" and isinstance(item.get("text"), str):
            parts.append(TextPart(item["text"], cache_control))
        elif kind == "refusal" and isinstance(item.get("refusal"), str):
            parts.append(TextPart(item["refusal"]))
        elif kind == "image_url":
            image = item.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            detail = image.get("detail") if isinstance(image, Mapping) else None
            if isinstance(url, str):
                parts.append(image_from_url(url, detail, cache_control))
    return parts


def image_from_url(url: str, detail: str | None = None, cache_control: Mapping[str, Any] | None = None) -> ImagePart:
    """An :class:`ImagePart` from an image URL; a ``data:`` URL is split into base64 data + media type.

    Splitting lets an Anthropic renderer send it as a base64 source; :func:`image_url` joins it back.
    """
    match = _DATA_URL_RE.match(url)
    if match:
        return ImagePart(data=match.group(2), media_type=match.group(1), detail=detail, cache_control=cache_control)
    return ImagePart(url=url, detail=detail, cache_control=cache_control)


def image_url(part: ImagePart) -> str:
    """The URL of an image part: its own, or a ``data:`` URL built from its base64 data."""
    if part.url is not None:
        return part.url
    return f"data:{part.media_type or 'image/png'};base64,{part.data or ''}"


def parse_tool_call(call: object) -> ToolCallPart | None:
    """One ``tool_calls`` entry (function or custom) → :class:`ToolCallPart`; None when it has no function."""
    if not isinstance(call, Mapping):
        return None
    call_id = str(call.get("id") or "")
    if call.get("type") == "custom" and isinstance(call.get("custom"), Mapping):
        # A custom tool call travels as the function form of the tool: one string ``input``.
        spec = call["custom"]
        args = orjson.dumps({"input": spec.get("input") if isinstance(spec.get("input"), str) else ""}).decode()
        return ToolCallPart(call_id, str(spec.get("name") or ""), args)
    function = call.get("function")
    if not isinstance(function, Mapping):
        return None
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
    return ToolCallPart(call_id, str(function.get("name") or ""), arguments or "{}")


def _parse_tools(tools: object) -> list[Tool]:
    found: list[Tool] = []
    if not isinstance(tools, list):
        return found
    for raw in tools:
        tool = parse_tool(raw)
        if tool is not None:
            found.append(tool)
    return found


def parse_tool(raw: object) -> Tool | None:
    """One tool entry, nested ``{type, function: {...}}`` or flat ``{type, name, parameters}``.

    Cursor mixes both forms in one request (docs/cursor-facts.md, item 1). Custom (grammar) tools become
    function tools through :func:`~spendgate_proxy.formats.canonical.custom_tool`. Other built-in
    tool types return None: no provider we render for could run them.
    """
    if not isinstance(raw, Mapping):
        return None
    kind = raw.get("type", "function")
    if kind == "custom":
        tool = custom_tool(raw)
        return tool if tool.name else None
    if kind != "function":
        return None
    spec = raw["function"] if isinstance(raw.get("function"), Mapping) else raw
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        return None
    parameters = spec.get("parameters")
    if not isinstance(parameters, Mapping):
        parameters = {"type": "object", "properties": {}}
    description = spec.get("description")
    return Tool(
        name=name,
        description=description if isinstance(description, str) else None,
        parameters=parameters,
        strict=_bool_or_none(spec.get("strict")),
        cache_control=raw.get("cache_control") if isinstance(raw.get("cache_control"), Mapping) else None,
    )


def parse_tool_choice(choice: object) -> ToolChoice | None:
    """``"auto" | "none" | "required"``, ``{type: function, function: {name}}``, flat or custom forms."""
    if choice in ("auto", "none", "required"):
        return choice
    if choice == "any":  # Anthropic's word, seen in hybrid bodies
        return "required"
    if not isinstance(choice, Mapping):
        return None
    kind: object = choice.get("type")  # object, not Any: the ``in`` tests below narrow it to a literal
    if kind in ("function", "custom", "tool"):
        nested = choice.get(kind)
        spec = nested if isinstance(nested, Mapping) else choice
        name = spec.get("name")
        return ToolChoiceTool(name) if isinstance(name, str) and name else "required"
    if kind == "allowed_tools":
        # Restricting the tool list is not expressible in every format; keep the mode only.
        nested = choice.get("allowed_tools")
        spec = nested if isinstance(nested, Mapping) else choice
        return "required" if spec.get("mode") == "required" else "auto"
    if kind in ("auto", "none", "required"):
        return kind
    if kind == "any":
        return "required"
    return None


def render_request(
    req: ChatRequest,
    *,
    max_tokens_param: str | None = None,
    cache_control: bool | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:class:`ChatRequest` → a Chat Completions body for an OpenAI-compatible upstream.

    ``max_tokens_param`` names the limit field; by default ``max_completion_tokens`` for OpenAI's
    reasoning models (which reject ``max_tokens``) and ``max_tokens`` otherwise, which every
    compatible server knows. ``cache_control`` keeps Anthropic's markers on text parts (OpenRouter
    and LiteLLM forward them to Claude); by default only when the request came in as Chat
    Completions with them, since OpenAI itself does not document them. ``extra`` is merged last;
    by default ``req.extra`` when the request came in as Chat Completions, else nothing.
    """
    keep_cache = req.source_format in (None, "chat") if cache_control is None else cache_control
    body: dict[str, Any] = {"model": req.model, "messages": _render_messages(req, keep_cache)}
    if req.tools:
        body["tools"] = [render_tool(t) for t in req.tools]
        if req.tool_choice is not None:
            body["tool_choice"] = render_tool_choice(req.tool_choice)
        # OpenAI rejects parallel_tool_calls when no tools are given.
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    elif req.tool_choice == "none":
        body["tool_choice"] = "none"
    if req.max_tokens is not None:
        param = max_tokens_param or (
            "max_completion_tokens" if _REASONING_MODEL_RE.match(req.model.rsplit("/", 1)[-1]) else "max_tokens"
        )
        body[param] = req.max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop"] = list(req.stop)
    if req.reasoning is not None and req.reasoning.effort and req.reasoning.enabled:
        body["reasoning_effort"] = req.reasoning.effort
    if req.metadata is not None and req.source_format in (None, "chat"):
        body["metadata"] = dict(req.metadata)
    if req.user is not None:
        body["user"] = req.user
    if req.stream:
        body["stream"] = True
        if req.include_usage:
            body["stream_options"] = {"include_usage": True}
    if extra is None:
        extra = req.extra if req.source_format in (None, "chat") else {}
    for key, value in extra.items():
        if key == "stream_options" and isinstance(value, Mapping):
            if req.stream:
                body["stream_options"] = {**value, **body.get("stream_options", {})}
        elif key not in body:
            body[key] = value
    return body


def _text_part(part: TextPart, keep_cache: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "text", "text": part.text}
    if keep_cache and part.cache_control is not None:
        out["cache_control"] = dict(part.cache_control)
    return out


def _render_content(parts: Iterable[TextPart | ImagePart], keep_cache: bool) -> str | list[dict[str, Any]]:
    """A plain string when the parts are one unmarked text, else a list of content parts."""
    parts = list(parts)
    if len(parts) == 1 and isinstance(parts[0], TextPart) and (parts[0].cache_control is None or not keep_cache):
        return parts[0].text
    rendered: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            rendered.append(_text_part(part, keep_cache))
        else:
            image: dict[str, Any] = {"url": image_url(part)}
            if part.detail:
                image["detail"] = part.detail
            rendered.append({"type": "image_url", "image_url": image})
    return rendered


def _render_messages(req: ChatRequest, keep_cache: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if req.system:
        out.append({"role": "system", "content": _render_content(req.system, keep_cache)})
    for message in req.messages:
        out.extend(_render_message(message, keep_cache))
    return out


def _render_message(message: Message, keep_cache: bool) -> list[dict[str, Any]]:
    """One canonical message → one or more Chat Completions messages.

    Tool results become ``tool`` messages, first, because OpenAI wants them right after the
    assistant turn that called the tools; whatever else shared the (Anthropic) user turn follows as
    a user message. Images inside a tool result move to that user message too: tool messages are
    text only.
    """
    named = {"name": message.name} if message.name else {}
    if message.role == "assistant":
        text = "".join(p.text for p in message.parts if isinstance(p, TextPart))
        calls = [p for p in message.parts if isinstance(p, ToolCallPart)]
        # Thinking is not sent back: Chat Completions has no field for it, and providers that
        # show it (reasoning_content) reject or ignore it on input.
        rendered: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, **named}
        if calls:
            rendered["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
                for c in calls
            ]
        return [rendered]
    if message.role == "system":
        parts = [p for p in message.parts if isinstance(p, TextPart)]
        return [{"role": "system", "content": _render_content(parts, keep_cache), **named}]

    out: list[dict[str, Any]] = []
    rest: list[TextPart | ImagePart] = []
    for part in message.parts:
        if isinstance(part, ToolResultPart):
            if isinstance(part.content, str):
                content: str | list[dict[str, Any]] = part.content
            else:
                texts = [p for p in part.content if isinstance(p, TextPart)]
                rest.extend(p for p in part.content if isinstance(p, ImagePart))
                content = texts[0].text if len(texts) == 1 else [_text_part(t, keep_cache) for t in texts]
            out.append({"role": "tool", "tool_call_id": part.tool_call_id, "content": content})
        elif isinstance(part, TextPart | ImagePart):
            rest.append(part)
    if rest or not out:
        out.append({"role": "user", "content": _render_content(rest, keep_cache) if rest else "", **named})
    return out


def render_tool(tool: Tool) -> dict[str, Any]:
    """A tool in the nested form every OpenAI-compatible server accepts (custom tools as functions)."""
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = dict(tool.parameters)
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def render_tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if isinstance(choice, ToolChoiceTool):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


__all__ = [
    "image_from_url",
    "image_url",
    "parse_content",
    "parse_request",
    "parse_tool",
    "parse_tool_call",
    "parse_tool_choice",
    "render_request",
    "render_tool",
    "render_tool_choice",
]
