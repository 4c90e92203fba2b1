"""OpenAI Chat Completions ↔ the canonical model: request and response bodies, and SSE both ways.

Parsing is tolerant (clients and Cursor send variants: nested and flat tools, ``developer``
messages, ``max_completion_tokens``); rendering is strict, the shape OpenAI's own API documents,
so any OpenAI-compatible upstream accepts it. Only choice 0 is translated: nothing we serve asks
for ``n > 1``.

Dropped when parsing, because the canonical model has no slot and no other format could use
them: content parts other than text and images (``input_audio``, ``file``), built-in tool types
other than ``function``/``custom``, and a message's legacy ``function_call``. Fields that are
not part of the canonical model but are valid Chat Completions (``seed``, ``response_format``,
``n``, penalties, ``logit_bias``, ...) ride in ``ChatRequest.extra`` and are rendered back only for
a request that was itself parsed from Chat Completions.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from spendgate_proxy.formats._values import list_or_empty, mapping_or_empty, number_or_none
from spendgate_proxy.formats.canonical import (
    ChatRequest,
    ChatResponse,
    Finish,
    FinishReason,
    ImagePart,
    Message,
    Part,
    Reasoning,
    StreamError,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolChoiceTool,
    ToolResultPart,
    Usage,
    UsageEvent,
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

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",  # the legacy name for the same thing
}

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
        return Message("system", tuple(p for p in _parse_content(raw.get("content")) if isinstance(p, TextPart)), name)
    if role == "user":
        return Message("user", tuple(_parse_content(raw.get("content"))), name)
    if role == "assistant":
        parts: list[Part] = []
        # DeepSeek-style reasoning echoed back; Cursor drops it on replay, others may not.
        reasoning = raw.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            parts.append(ThinkingPart(reasoning))
        parts.extend(_parse_content(raw.get("content")))
        for call in list_or_empty(raw.get("tool_calls")):
            part = _parse_tool_call(call)
            if part is not None:
                parts.append(part)
        return Message("assistant", tuple(parts), name)
    if role == "tool":
        content = raw.get("content")
        result: str | tuple[TextPart | ImagePart, ...]
        if isinstance(content, str) or content is None:
            result = content or ""
        else:
            result = tuple(p for p in _parse_content(content) if isinstance(p, TextPart | ImagePart))
        return Message("tool", (ToolResultPart(str(raw.get("tool_call_id") or ""), result),))
    return None


def _parse_content(content: object) -> list[Part]:
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


def _parse_tool_call(call: object) -> ToolCallPart | None:
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
        return choice  # type: ignore[return-value]
    if choice == "any":  # Anthropic's word, seen in hybrid bodies
        return "required"
    if not isinstance(choice, Mapping):
        return None
    kind = choice.get("type")
    if kind in ("function", "custom", "tool"):
        spec = choice.get(kind) if isinstance(choice.get(kind), Mapping) else choice
        name = spec.get("name")
        return ToolChoiceTool(name) if isinstance(name, str) and name else "required"
    if kind == "allowed_tools":
        # Restricting the tool list is not expressible in every format; keep the mode only.
        spec = choice.get("allowed_tools") if isinstance(choice.get("allowed_tools"), Mapping) else choice
        return "required" if spec.get("mode") == "required" else "auto"
    if kind in ("auto", "none", "required"):
        return kind  # type: ignore[return-value]
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


# ---------------------------------------------------------------------------------------------
# Responses (non-streamed)


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
        parts.extend(_parse_content(content))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append(TextPart(message["refusal"]))
    for call in list_or_empty(message.get("tool_calls")):
        part = _parse_tool_call(call)
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


# ---------------------------------------------------------------------------------------------
# Streaming: canonical events → Chat Completions SSE


class ChatCompletionsSSEWriter:
    """Canonical stream events → Chat Completions SSE bytes, the way Cursor and the SDK read them.

    One writer per response. :meth:`write` returns the bytes for one event (possibly ``b""``);
    :meth:`close` returns the tail: a finish chunk if none was written, the usage chunk if the
    client asked (``include_usage``), and ``data: [DONE]``. After a :class:`StreamError` only
    ``[DONE]`` follows. Usage is always recorded in :attr:`usage` (the last one seen), for the
    span, even when the client does not see it.

    The first chunk carries ``role: "assistant"``; tool calls open with ``index``, ``id``,
    ``type`` and ``function.name`` (and empty ``arguments``), then send argument fragments. The
    usage chunk has ``choices: []`` and is written once, at :meth:`close`, after the finish
    chunk as OpenAI sends it: providers report usage before the stop reason (Anthropic) or on
    every chunk (vLLM's continuous usage), and a client must see exactly one. ``model``, when
    given, replaces the provider's model name in every chunk (e.g. with the id Cursor asked for).
    """

    def __init__(
        self,
        *,
        include_usage: bool = False,
        model: str | None = None,
        reasoning_content: bool = True,
        created: int | None = None,
    ) -> None:
        self.include_usage = include_usage
        self.model_override = model
        self.reasoning_content = reasoning_content
        self._created = created
        self._head = b""
        self._envelope = b""
        self._started = False
        self._finished = False
        self._errored = False
        self._closed = False
        self._tool_calls = 0
        self.usage: Usage | None = None
        self.finish_reason: FinishReason | None = None

    def _start(self, id_: str, model: str, created: int | None) -> bytes:
        self._started = True
        created = created if created is not None else self._created
        if created is None:
            created = int(time.time())
        model = self.model_override or model
        # Pre-encode the envelope once: each chunk is then one small dumps() of its delta.
        self._envelope = (
            b'{"id":'
            + orjson.dumps(id_)
            + b',"object":"chat.completion.chunk","created":'
            + str(created).encode()
            + b',"model":'
            + orjson.dumps(model)
        )
        self._head = b"data: " + self._envelope + b',"choices":[{"index":0,"delta":'
        return self._chunk({"role": "assistant", "content": ""})

    def _chunk(self, delta: Mapping[str, Any]) -> bytes:
        return self._head + orjson.dumps(delta) + b',"logprobs":null,"finish_reason":null}]}\n\n'

    def _ensure_started(self) -> bytes:
        return b"" if self._started else self._start("chatcmpl-spendgate", "", None)

    def _usage_chunk(self, usage: Usage) -> bytes:
        return b"data: " + self._envelope + b',"choices":[],"usage":' + orjson.dumps(usage_to_openai(usage)) + b"}\n\n"

    def _finish_chunk(self, reason: FinishReason) -> bytes:
        self._finished = True
        self.finish_reason = reason
        return self._head + b'{},"logprobs":null,"finish_reason":' + orjson.dumps(reason) + b"}]}\n\n"

    def write(self, event: StreamEvent) -> bytes:
        """The SSE bytes for one event (``b""`` when it has nothing to show the client)."""
        if self._closed or self._errored:
            return b""
        if isinstance(event, StreamStart):
            return b"" if self._started else self._start(event.id, event.model, event.created)
        out = self._ensure_started()
        if isinstance(event, TextDelta):
            if event.text:
                out += self._chunk({"content": event.text})
        elif isinstance(event, ToolCallStart):
            self._tool_calls += 1
            call = {"index": event.index, "id": event.id, "type": "function"}
            out += self._chunk({"tool_calls": [{**call, "function": {"name": event.name, "arguments": ""}}]})
        elif isinstance(event, ToolCallDelta):
            if event.arguments_fragment:
                fragment = {"index": event.index, "function": {"arguments": event.arguments_fragment}}
                out += self._chunk({"tool_calls": [fragment]})
        elif isinstance(event, ThinkingDelta):
            # De-facto field (DeepSeek, vLLM, OpenRouter); signatures have no place in Chat Completions.
            if self.reasoning_content and event.text and not event.redacted:
                out += self._chunk({"reasoning_content": event.text})
        elif isinstance(event, Finish):
            if not self._finished:
                out += self._finish_chunk(event.reason)
        elif isinstance(event, UsageEvent):
            self.usage = event.usage
        elif isinstance(event, StreamError):
            self._errored = True
            error = {"message": event.message, "type": event.type, "param": None, "code": event.code}
            out += b"data: " + orjson.dumps({"error": error}) + b"\n\n"
        return out

    def close(self) -> bytes:
        """The end of the stream: any missing finish, the usage chunk if asked for, then ``[DONE]``.

        A stream that ended without a finish reason (some compatible servers omit it) gets one:
        ``tool_calls`` when tools were called, else ``stop``, because Cursor waits for it.
        """
        if self._closed:
            return b""
        self._closed = True
        out = b""
        if not self._errored:
            out += self._ensure_started()
            if not self._finished:
                out += self._finish_chunk("tool_calls" if self._tool_calls else "stop")
            if self.include_usage and self.usage is not None:
                out += self._usage_chunk(self.usage)
        return out + b"data: [DONE]\n\n"

    def write_all(self, events: Iterable[StreamEvent]) -> bytes:
        """Every event and the tail, joined: for tests and non-incremental callers."""
        return b"".join(self.write(e) for e in events) + self.close()


# ---------------------------------------------------------------------------------------------
# Streaming: Chat Completions SSE → canonical events


class ChatCompletionsSSEParser:
    """Chat Completions SSE bytes, cut anywhere, → canonical stream events.

    :meth:`feed` takes whatever bytes arrived and returns the events completed by them;
    :meth:`close` flushes a final event that lacked its blank line. Tool calls are renumbered
    0, 1, ... in order of appearance (some servers start at 1 or reuse positions), and a call is
    opened once even when a server repeats its id and name on every fragment. ``data: {"error":
    ...}`` becomes a :class:`StreamError`. :attr:`done` turns true at ``[DONE]``.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False
        self._finished = False
        self._calls: dict[int | str, int] = {}  # upstream index (or stand-in key) → canonical index
        self._ids: dict[str, int | str] = {}  # call id → key in _calls
        self.done = False

    def feed(self, data: bytes) -> list[StreamEvent]:
        if self.done:
            return []
        buffer = self._buffer + data
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[StreamEvent] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            self._event(buffer[start:end], events)
            start = end + 2
            if self.done:
                break
        self._buffer = b"" if self.done else buffer[start:]
        return events

    def close(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._buffer.strip() and not self.done:
            self._event(self._buffer, events)
        self._buffer = b""
        return events

    def _event(self, raw: bytes, events: list[StreamEvent]) -> None:
        lines = [line[5:].lstrip(b" ") for line in raw.split(b"\n") if line.startswith(b"data:")]
        if not lines:
            return  # a comment (": keep-alive") or an event without data
        payload = b"\n".join(lines).strip()
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return  # a server's stray non-JSON line; the stream may still be fine
        if not isinstance(chunk, dict):
            return
        self.chunk_to_events(chunk, events)

    def chunk_to_events(self, chunk: Mapping[str, Any], events: list[StreamEvent]) -> None:
        """One parsed ``chat.completion.chunk`` → events (appended to ``events``)."""
        error = chunk.get("error")
        if isinstance(error, Mapping):
            events.append(
                StreamError(
                    str(error.get("message") or "upstream error"),
                    str(error.get("type") or "server_error"),
                    str(error["code"]) if error.get("code") is not None else None,
                )
            )
            return
        if not self._started:
            self._started = True
            created = chunk.get("created")
            events.append(
                StreamStart(
                    str(chunk.get("id") or ""),
                    str(chunk.get("model") or ""),
                    created if isinstance(created, int) else None,
                )
            )
        for choice in list_or_empty(chunk.get("choices")):
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                self._delta(delta, events)
            reason = finish_reason_from_openai(choice.get("finish_reason"))
            if reason is not None and not self._finished:
                self._finished = True
                events.append(Finish(reason))
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            events.append(UsageEvent(usage_from_openai(usage)))

    def _delta(self, delta: Mapping[str, Any], events: list[StreamEvent]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.append(ThinkingDelta(reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            events.append(TextDelta(content))
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            events.append(TextDelta(refusal))
        for position, call in enumerate(list_or_empty(delta.get("tool_calls"))):
            if isinstance(call, Mapping):
                self._tool_call(call, position, events)

    def _tool_call(self, call: Mapping[str, Any], position: int, events: list[StreamEvent]) -> None:
        function = call.get("function") if isinstance(call.get("function"), Mapping) else {}
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        key: int | str
        if isinstance(call.get("index"), int):
            key = call["index"]
        elif call_id is not None:
            # No index (some Gemini-compatible servers): the id names the call.
            key = self._ids.get(call_id, f"id:{call_id}")
        elif self._calls:
            key = next(reversed(self._calls))  # an anonymous fragment continues the latest call
        else:
            key = f"position:{position}"
        index = self._calls.get(key)
        if index is None:
            index = len(self._calls)
            self._calls[key] = index
            name = function.get("name") if isinstance(function.get("name"), str) else ""
            call_id = call_id or f"call_{index}"
            self._ids[call_id] = key
            events.append(ToolCallStart(index, call_id, name))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(ToolCallDelta(index, arguments))


def parse_sse(data: bytes) -> list[StreamEvent]:
    """All events of a complete Chat Completions SSE body (for tests and non-streamed upstreams)."""
    parser = ChatCompletionsSSEParser()
    return parser.feed(data) + parser.close()
