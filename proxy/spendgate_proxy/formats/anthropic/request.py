"""Anthropic Messages ↔ the canonical model: request and response bodies, SSE both ways, errors, count_tokens.

Serves two directions: Anthropic-shaped bodies coming in (``/v1/messages``, Cursor's Claude-named
models) and an Anthropic upstream going out. Parsing checks structure and raises
:class:`AnthropicFormatError` naming the field (``messages.2.content.0.type``), because a block
the canonical model cannot hold (``document``, server-tool results) would otherwise vanish from a
conversation silently. Rendering produces what the real API accepts: tool results first in user
turns, consecutive same-role turns merged, no empty text blocks, only signed thinking sent back.

Token counts follow the canonical convention: Anthropic's ``input_tokens`` excludes cache reads
and writes, so ``Usage.input_tokens = input_tokens + cache_creation_input_tokens +
cache_read_input_tokens`` (and the reverse when rendering).

Dropped when parsing, since no other format could use them: typed (server / Anthropic-defined)
tools such as ``web_search_20250305``, text ``citations``. Fields without a canonical slot
(``top_k``, ``output_config``, ``service_tier``, top-level ``cache_control``, ...) ride in
``ChatRequest.extra`` and are rendered back only for a request parsed from this format.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from spendgate_proxy.formats.canonical import (
    ChatRequest,
    ChatResponse,
    Finish,
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
    finish_reason_from_anthropic,
    finish_reason_to_anthropic,
)
from spendgate_proxy.formats.cursor import context_overflow, context_overflow_message
from spendgate_proxy.formats.estimate import MESSAGE_OVERHEAD_TOKENS, count_tokens

DEFAULT_MAX_TOKENS = 8192
"""``max_tokens`` sent when the request had none (Anthropic requires it); every current Claude model allows it."""

MAX_OUTPUT_TOKENS = 32_000
"""Ceiling for a ``max_tokens`` we make up (default + thinking budget): the smallest current model maximum."""

MIN_THINKING_BUDGET = 1024
"""Anthropic's smallest ``thinking.budget_tokens``."""

EFFORT_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16_384,
    "xhigh": 24_000,
    "max": 24_000,
}
"""OpenAI ``reasoning_effort`` → Anthropic thinking budget, for requests that came in another format."""

IMAGE_TOKENS = 1600
"""Estimated input tokens per image: Anthropic's cost of a ~1.15-megapixel image (width·height/750)."""

# Fields parse_request maps onto the canonical model; everything else goes to ``extra``.
_KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "max_tokens",
        "temperature",
        "top_p",
        "stop_sequences",
        "stream",
        "thinking",
        "metadata",
    }
)
# Anthropic's tool ids must match ^[a-zA-Z0-9_-]+$; other providers' ids sometimes do not.
_TOOL_ID_BAD = re.compile(r"[^a-zA-Z0-9_-]")
_DATA_URL_RE = re.compile(r"^data:([^;,]+)?(?:;[^,]*)?;base64,(.*)$", re.DOTALL)


class AnthropicFormatError(ValueError):
    """The body is not a Messages request we can translate; ``param`` names the field (dotted path)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(f"{param}: {message}" if param else message)
        self.param = param


# ---------------------------------------------------------------------------------------------
# Requests: Anthropic → canonical


def parse_request(body: Mapping[str, Any], *, require_max_tokens: bool = True) -> ChatRequest:
    """An Anthropic Messages request body → :class:`ChatRequest`.

    ``require_max_tokens=False`` accepts bodies without ``max_tokens`` (count_tokens, Cursor's
    Anthropic-shaped bodies, which are answered in another format anyway).
    """
    if not isinstance(body, Mapping):
        raise AnthropicFormatError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise AnthropicFormatError("Field required", "model")
    max_tokens = body.get("max_tokens")
    if max_tokens is None and require_max_tokens:
        raise AnthropicFormatError("Field required", "max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise AnthropicFormatError("Input should be an integer greater than or equal to 1", "max_tokens")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise AnthropicFormatError(
            "Field required" if raw_messages is None else "Input should be a valid list", "messages"
        )

    tools, choice, parallel = _parse_tools(body.get("tools")), None, None
    raw_choice = body.get("tool_choice")
    if isinstance(raw_choice, Mapping):
        choice = _parse_tool_choice(raw_choice)
        if raw_choice.get("disable_parallel_tool_use") is True:
            parallel = False
    metadata = body.get("metadata") if isinstance(body.get("metadata"), Mapping) else None
    user = metadata.get("user_id") if metadata is not None else None
    stop = body.get("stop_sequences")
    extra = {k: v for k, v in body.items() if k not in _KNOWN_FIELDS}
    reasoning = _parse_thinking(body.get("thinking"), body.get("output_config"))
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") not in ("enabled", "disabled"):
        # "adaptive" and newer modes have no canonical slot; an Anthropic renderer sends them back.
        extra["thinking"] = dict(thinking)
    return ChatRequest(
        model=model,
        messages=tuple(_parse_message(m, i) for i, m in enumerate(raw_messages)),
        system=tuple(_parse_system(body.get("system"))),
        tools=tuple(tools),
        tool_choice=choice,
        parallel_tool_calls=parallel,
        max_tokens=max_tokens,
        temperature=_number_or_none(body.get("temperature")),
        top_p=_number_or_none(body.get("top_p")),
        stop=tuple(s for s in stop if isinstance(s, str)) if isinstance(stop, list) else (),
        stream=body.get("stream") is True,
        # Anthropic streams always carry usage; a client of this format expects it.
        include_usage=body.get("stream") is True,
        reasoning=reasoning,
        metadata=metadata,
        user=user if isinstance(user, str) else None,
        extra=extra,
        source_format="anthropic",
    )


def parse_count_tokens_request(body: Mapping[str, Any]) -> ChatRequest:
    """A ``/v1/messages/count_tokens`` body (a Messages body without ``max_tokens``) → :class:`ChatRequest`."""
    return parse_request(body, require_max_tokens=False)


def _number_or_none(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _cache_control(block: Mapping[str, Any]) -> Mapping[str, Any] | None:
    value = block.get("cache_control")
    return value if isinstance(value, Mapping) else None


def _parse_system(system: object) -> list[TextPart]:
    if isinstance(system, str):
        return [TextPart(system)] if system else []
    if system is None:
        return []
    if not isinstance(system, list):
        raise AnthropicFormatError("Input should be a valid string or list of text blocks", "system")
    parts = []
    for i, block in enumerate(system):
        if not isinstance(block, Mapping) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise AnthropicFormatError("system blocks must be text blocks", f"system.{i}")
        parts.append(TextPart(block["text"], _cache_control(block)))
    return parts


def _parse_message(raw: object, i: int) -> Message:
    where = f"messages.{i}"
    if not isinstance(raw, Mapping):
        raise AnthropicFormatError("Input should be a valid dictionary", where)
    role = raw.get("role")
    if role not in ("user", "assistant"):
        raise AnthropicFormatError("Input should be 'user' or 'assistant'", f"{where}.role")
    content = raw.get("content")
    if isinstance(content, str):
        return Message(role, (TextPart(content),) if content else ())
    if not isinstance(content, list):
        raise AnthropicFormatError("Input should be a valid string or list", f"{where}.content")
    return Message(role, tuple(_parse_block(b, f"{where}.content.{j}") for j, b in enumerate(content)))


def _parse_block(block: object, where: str) -> Part:
    if not isinstance(block, Mapping):
        raise AnthropicFormatError("Input should be a valid dictionary", where)
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return TextPart(block["text"], _cache_control(block))
    if kind == "image":
        return _parse_image(block, where)
    if kind == "tool_use":
        arguments = orjson.dumps(block.get("input") if isinstance(block.get("input"), Mapping) else {}).decode()
        return ToolCallPart(str(block.get("id") or ""), str(block.get("name") or ""), arguments, _cache_control(block))
    if kind == "tool_result":
        content = block.get("content")
        result: str | tuple[TextPart | ImagePart, ...]
        if isinstance(content, str) or content is None:
            result = content or ""
        elif isinstance(content, list):
            items = []
            for j, item in enumerate(content):
                part = _parse_block(item, f"{where}.content.{j}")
                if not isinstance(part, TextPart | ImagePart):
                    raise AnthropicFormatError(
                        "tool results may hold only text and image blocks", f"{where}.content.{j}"
                    )
                items.append(part)
            result = tuple(items)
        else:
            raise AnthropicFormatError("Input should be a valid string or list", f"{where}.content")
        return ToolResultPart(
            str(block.get("tool_use_id") or ""), result, block.get("is_error") is True, _cache_control(block)
        )
    if kind == "thinking":
        signature = block.get("signature")
        return ThinkingPart(str(block.get("thinking") or ""), signature if isinstance(signature, str) else None)
    if kind == "redacted_thinking":
        return ThinkingPart(str(block.get("data") or ""), redacted=True)
    raise AnthropicFormatError(f"{kind!r} blocks cannot be translated to another format", f"{where}.type")


def _parse_image(block: Mapping[str, Any], where: str) -> ImagePart:
    source = block.get("source")
    if isinstance(source, Mapping):
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            media_type = source.get("media_type")
            return ImagePart(
                data=source["data"],
                media_type=media_type if isinstance(media_type, str) else None,
                cache_control=_cache_control(block),
            )
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return ImagePart(url=source["url"], cache_control=_cache_control(block))
    raise AnthropicFormatError("only base64 and url image sources can be translated", f"{where}.source")


def _parse_tools(tools: object) -> list[Tool]:
    found: list[Tool] = []
    if not isinstance(tools, list):
        return found
    for raw in tools:
        # Typed tools (web_search_20250305, bash_20250124, ...) run on Anthropic's side or have a
        # schema only Anthropic knows: no other provider could use them.
        if not isinstance(raw, Mapping) or raw.get("type") not in (None, "custom"):
            continue
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            continue
        schema = raw.get("input_schema")
        description = raw.get("description")
        found.append(
            Tool(
                name=name,
                description=description if isinstance(description, str) else None,
                parameters=schema if isinstance(schema, Mapping) else {"type": "object", "properties": {}},
                strict=raw.get("strict") if isinstance(raw.get("strict"), bool) else None,
                cache_control=_cache_control(raw),
            )
        )
    return found


def _parse_tool_choice(choice: Mapping[str, Any]) -> ToolChoice | None:
    kind = choice.get("type")
    if kind == "tool" and isinstance(choice.get("name"), str):
        return ToolChoiceTool(choice["name"])
    return {"auto": "auto", "any": "required", "none": "none"}.get(str(kind))  # type: ignore[return-value]


def _parse_thinking(thinking: object, output_config: object) -> Reasoning | None:
    effort = output_config.get("effort") if isinstance(output_config, Mapping) else None
    effort = effort if isinstance(effort, str) else None
    if isinstance(thinking, Mapping):
        kind = thinking.get("type")
        if kind == "disabled":
            return Reasoning(effort=effort, enabled=False)
        budget = thinking.get("budget_tokens")
        if kind == "enabled" and isinstance(budget, int) and not isinstance(budget, bool):
            return Reasoning(effort=effort, budget_tokens=budget)
        return Reasoning(effort=effort)
    return Reasoning(effort=effort) if effort else None


# ---------------------------------------------------------------------------------------------
# Requests: canonical → Anthropic


def render_request(
    req: ChatRequest,
    *,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:class:`ChatRequest` → an Anthropic Messages body for an Anthropic upstream.

    ``system``, ``cache_control`` and signed thinking are kept. A request that came in another
    format is also made acceptable to Anthropic: ``reasoning_effort`` becomes a thinking budget
    (:data:`EFFORT_BUDGETS`) that fits under ``max_tokens``, thinking is left off where Anthropic
    would refuse it (a forced tool choice, or a tool loop whose assistant turn lost its signed
    thinking, as Cursor's replays do), sampling settings thinking forbids are dropped, and
    ``temperature`` is capped at Anthropic's 1. ``extra`` is merged last; by default
    ``req.extra`` when the request came in as Anthropic Messages, else nothing.
    """
    native = req.source_format == "anthropic"
    if extra is None:
        extra = req.extra if native else {}
    system = list(req.system)
    # Anthropic has no system role in the conversation: mid-conversation system turns join the
    # system prompt (their position is lost, their content is not).
    system.extend(p for m in req.messages if m.role == "system" for p in m.parts if isinstance(p, TextPart))
    messages = _render_messages(req, keep_signed_thinking=req.source_format in (None, "anthropic"))

    body: dict[str, Any] = {"model": req.model, "max_tokens": req.max_tokens or default_max_tokens}
    rendered_system = _render_system(system)
    if rendered_system:
        body["system"] = rendered_system
    body["messages"] = messages
    if req.tools:
        body["tools"] = [render_tool(t, native) for t in req.tools]
        choice = render_tool_choice(req.tool_choice, req.parallel_tool_calls)
        if choice is not None:
            body["tool_choice"] = choice

    thinking = None if "thinking" in extra else _render_thinking(req, messages, body)
    if thinking is not None:
        body["thinking"] = thinking
    chosen = thinking if thinking is not None else extra.get("thinking")
    thinking_on = isinstance(chosen, Mapping) and chosen.get("type") not in (None, "disabled")
    temperature, top_p = req.temperature, req.top_p
    if not native:
        temperature = None if temperature is None else min(temperature, 1.0)
        if thinking_on:
            # Anthropic refuses thinking with a changed temperature or a top_p below 0.95.
            temperature = None
            top_p = top_p if top_p is not None and top_p >= 0.95 else None
    if temperature is not None:
        body["temperature"] = temperature
    if top_p is not None:
        body["top_p"] = top_p
    # Anthropic refuses whitespace-only stop sequences (OpenAI clients often send "\n").
    stop = list(req.stop) if native else [s for s in req.stop if s.strip()]
    if stop:
        body["stop_sequences"] = stop
    if native and req.metadata is not None:
        # Only Anthropic's own metadata: another format's ``user`` may be an email, which
        # Anthropic asks never to send.
        body["metadata"] = dict(req.metadata)
    if req.stream:
        body["stream"] = True
    for key, value in extra.items():
        body.setdefault(key, value)
    return body


def render_count_tokens_request(req: ChatRequest) -> dict[str, Any]:
    """:class:`ChatRequest` → a ``/v1/messages/count_tokens`` body (no ``max_tokens``, sampling or stream)."""
    body = render_request(req)
    allowed = ("model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers", "output_config")
    return {k: v for k, v in body.items() if k in allowed}


def _render_system(system: list[TextPart]) -> str | list[dict[str, Any]]:
    parts = [p for p in system if p.text.strip()]
    if len(parts) == 1 and parts[0].cache_control is None:
        return parts[0].text
    return [_text_block(p) for p in parts]


def _text_block(part: TextPart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": part.text}
    if part.cache_control is not None:
        block["cache_control"] = dict(part.cache_control)
    return block


def render_image(part: ImagePart) -> dict[str, Any]:
    """An :class:`ImagePart` as an Anthropic image block (base64 source for data and ``data:`` URLs)."""
    data, media_type = part.data, part.media_type
    if data is None and part.url is not None:
        match = _DATA_URL_RE.match(part.url)
        if match:
            data, media_type = match.group(2), match.group(1)
    if data is not None:
        source: dict[str, Any] = {"type": "base64", "media_type": media_type or "image/png", "data": data}
    else:
        source = {"type": "url", "url": part.url or ""}
    block: dict[str, Any] = {"type": "image", "source": source}
    if part.cache_control is not None:
        block["cache_control"] = dict(part.cache_control)
    return block


def tool_id(raw: str) -> str:
    """A tool call id Anthropic accepts (``^[a-zA-Z0-9_-]+$``), the same for a call and its result."""
    return _TOOL_ID_BAD.sub("_", raw) or "toolu_unnamed"


def _tool_input(arguments_json: str) -> dict[str, Any]:
    # Anthropic wants an object. Arguments cut short by a length limit, or a non-object, cannot be
    # sent as they are; an empty input keeps the turn valid rather than failing the whole request.
    try:
        value = orjson.loads(arguments_json or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _render_block(part: Part, role: str, keep_signed_thinking: bool) -> dict[str, Any] | None:
    """One part as a content block, or None when Anthropic would refuse it in this role."""
    if isinstance(part, TextPart):
        # Anthropic rejects empty and whitespace-only text blocks.
        return _text_block(part) if part.text.strip() else None
    if isinstance(part, ImagePart):
        return render_image(part) if role == "user" else None
    if isinstance(part, ToolCallPart):
        if role != "assistant":
            return None
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": tool_id(part.id),
            "name": part.name,
            "input": _tool_input(part.arguments_json),
        }
        if part.cache_control is not None:
            block["cache_control"] = dict(part.cache_control)
        return block
    if isinstance(part, ToolResultPart):
        if role != "user":
            return None
        block = {"type": "tool_result", "tool_use_id": tool_id(part.tool_call_id)}
        if isinstance(part.content, str):
            if part.content:
                block["content"] = part.content
        else:
            items = [_render_block(p, "user", keep_signed_thinking) for p in part.content]
            block["content"] = [b for b in items if b is not None]
        if part.is_error:
            block["is_error"] = True
        if part.cache_control is not None:
            block["cache_control"] = dict(part.cache_control)
        return block
    if isinstance(part, ThinkingPart) and role == "assistant":
        if part.redacted:
            return {"type": "redacted_thinking", "data": part.text} if keep_signed_thinking else None
        # Anthropic verifies signatures: unsigned thinking (another provider's reasoning text)
        # or another provider's signature would fail the request, so it is not sent back.
        if part.signature and keep_signed_thinking:
            return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return None


def _render_messages(req: ChatRequest, *, keep_signed_thinking: bool) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for message in req.messages:
        if message.role == "system":
            continue  # hoisted into ``system`` by render_request
        role = "assistant" if message.role == "assistant" else "user"  # tool results live in user turns
        blocks = [b for b in (_render_block(p, role, keep_signed_thinking) for p in message.parts) if b is not None]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # Anthropic wants strictly alternating turns
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            # Tool results must come first in their user turn; anything else follows them.
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")
    if turns and turns[-1]["role"] == "assistant":
        # A prefilled final assistant turn must not end with whitespace.
        last = turns[-1]["content"][-1]
        if last["type"] == "text":
            last["text"] = last["text"].rstrip()
    for turn in turns:
        # One unmarked text block is sent as a plain string, the form most clients use.
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text" and "cache_control" not in content[0]:
            turn["content"] = content[0]["text"]
    return turns


def render_tool(tool: Tool, native: bool = False) -> dict[str, Any]:
    """A canonical tool as an Anthropic tool (``input_schema``); ``strict`` only for native requests."""
    rendered: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        rendered["description"] = tool.description
    schema = dict(tool.parameters)
    schema.setdefault("type", "object")  # Anthropic requires an object schema
    rendered["input_schema"] = schema
    if tool.cache_control is not None:
        rendered["cache_control"] = dict(tool.cache_control)
    # OpenAI's strict mode and Anthropic's accept different schema subsets.
    if native and tool.strict is not None:
        rendered["strict"] = tool.strict
    return rendered


def render_tool_choice(choice: ToolChoice | None, parallel_tool_calls: bool | None = None) -> dict[str, Any] | None:
    """Canonical tool choice → Anthropic's ``{type: auto|any|tool|none}`` (+ ``disable_parallel_tool_use``)."""
    if choice is None and parallel_tool_calls is not False:
        return None
    if isinstance(choice, ToolChoiceTool):
        rendered: dict[str, Any] = {"type": "tool", "name": choice.name}
    else:
        rendered = {"type": {"required": "any", "none": "none"}.get(choice or "auto", "auto")}
    if parallel_tool_calls is False and rendered["type"] != "none":
        rendered["disable_parallel_tool_use"] = True
    return rendered


def _render_thinking(req: ChatRequest, messages: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any] | None:
    """The ``thinking`` parameter, adjusting ``body["max_tokens"]`` when the budget needs room."""
    reasoning = req.reasoning
    if reasoning is None:
        return None
    if not reasoning.enabled:
        return {"type": "disabled"}
    if req.source_format == "anthropic":
        budget = reasoning.budget_tokens
        return None if budget is None else {"type": "enabled", "budget_tokens": budget}
    budget = reasoning.budget_tokens or EFFORT_BUDGETS.get(reasoning.effort or "", 0)
    if reasoning.effort == "none" or not budget:
        return None
    if isinstance(req.tool_choice, ToolChoiceTool) or req.tool_choice == "required":
        return None  # Anthropic refuses thinking with a forced tool; the caller asked for the tool
    if _continues_tool_turn_without_thinking(messages):
        return None
    if req.max_tokens is None:
        body["max_tokens"] = min(budget + body["max_tokens"], MAX_OUTPUT_TOKENS)
    # OpenAI's limit covers reasoning too, so the budget fits under it rather than raising it.
    budget = min(budget, body["max_tokens"] - 1)
    if budget < MIN_THINKING_BUDGET:
        return None
    return {"type": "enabled", "budget_tokens": budget}


def _continues_tool_turn_without_thinking(messages: list[dict[str, Any]]) -> bool:
    """True when the last turn answers tool calls of an assistant turn that has no thinking block.

    With thinking on, Anthropic requires that assistant turn to start with its (signed) thinking;
    clients of other formats rarely send it back.
    """
    if len(messages) < 2 or messages[-1]["role"] != "user":
        return False
    last, previous = messages[-1]["content"], messages[-2]["content"]
    if isinstance(last, str) or not any(b["type"] == "tool_result" for b in last):
        return False
    return isinstance(previous, str) or previous[0]["type"] not in ("thinking", "redacted_thinking")


# ---------------------------------------------------------------------------------------------
# Usage, stop reasons, responses


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
                    "input": _tool_input(part.arguments_json),
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


# ---------------------------------------------------------------------------------------------
# Errors, both ways

# Anthropic error type → (OpenAI type, OpenAI code).
_TO_OPENAI_ERROR: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "permission_error": ("invalid_request_error", "permission_denied"),
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "not_found_error": ("invalid_request_error", "not_found"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit_error": ("requests", "rate_limit_exceeded"),
    "timeout_error": ("server_error", "timeout"),
    "api_error": ("server_error", None),
    "overloaded_error": ("server_error", "overloaded"),
}
# OpenAI error code → Anthropic error type, checked before the HTTP status.
_CODE_TO_ANTHROPIC: dict[str, str] = {
    "context_length_exceeded": "invalid_request_error",
    "invalid_api_key": "authentication_error",
    "rate_limit_exceeded": "rate_limit_error",
    "insufficient_quota": "billing_error",
    "overloaded": "overloaded_error",
    "timeout": "timeout_error",
    "permission_denied": "permission_error",
    "not_found": "not_found_error",
    "model_not_found": "not_found_error",
}
_STATUS_TO_ANTHROPIC: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _openai_error(status: int, message: str, anthropic_type: str) -> dict[str, Any]:
    found = context_overflow(status, {"type": "error", "error": {"type": anthropic_type, "message": message}})
    if found is not None:
        # OpenAI's wording and code (cursor.py owns both): clients such as Cursor summarise on them.
        message = context_overflow_message(*found, original=message)
        return {
            "message": message,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    type_, code = _TO_OPENAI_ERROR.get(anthropic_type, ("server_error", None))
    return {"message": message, "type": type_, "param": None, "code": code}


def error_to_openai(status: int, body: object) -> tuple[int, dict[str, Any]]:
    """An Anthropic error response → (status, OpenAI ``{"error": {message, type, param, code}}``).

    A context overflow gets OpenAI's ``context_length_exceeded``; Anthropic's 529 (overloaded)
    becomes 503, a status OpenAI clients know to retry.
    """
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        message = str(error.get("message") or f"upstream error (HTTP {status})")
        kind = str(error.get("type") or "api_error")
    else:
        message, kind = f"upstream error (HTTP {status})", _STATUS_TO_ANTHROPIC.get(status, "api_error")
    error_body = _openai_error(status, message, kind)
    if error_body["code"] == "context_length_exceeded":
        status = 400  # Anthropic's 413 request_too_large counts too: a summary shrinks it as well
    return (503 if status == 529 else status), {"error": error_body}


def _anthropic_type(status: int | None, type_: str | None, code: str | None) -> str:
    """The Anthropic error type for an OpenAI error: its code, else the HTTP status, else its type."""
    if code in _CODE_TO_ANTHROPIC:
        return _CODE_TO_ANTHROPIC[code]
    if status in _STATUS_TO_ANTHROPIC:
        return _STATUS_TO_ANTHROPIC[status]  # type: ignore[index]
    if type_ in ("requests", "tokens"):
        return "rate_limit_error"
    if type_ == "insufficient_quota":
        return "billing_error"
    if type_ in _TO_OPENAI_ERROR:  # already an Anthropic type name (or OpenAI's invalid_request_error)
        return type_
    if status is not None and 400 <= status < 500:
        return "invalid_request_error"
    return "api_error"


def _anthropic_message(status: int, message: str, code: str | None) -> tuple[str, str | None]:
    """Anthropic's overflow wording (which Anthropic clients such as Claude Code recognise), and the code."""
    found = context_overflow(status, {"error": {"message": message, "code": code}})
    if found is None:
        return message, code
    used, limit = found
    if used is not None and limit is not None:
        return f"prompt is too long: {used} tokens > {limit} maximum", "context_length_exceeded"
    return message, "context_length_exceeded"


def error_from_openai(status: int, body: object) -> tuple[int, dict[str, Any]]:
    """An OpenAI-style error response → (status, Anthropic ``{"type": "error", "error": {type, message}}``)."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        message = str(error.get("message") or f"upstream error (HTTP {status})")
        type_ = error.get("type") if isinstance(error.get("type"), str) else None
        code = str(error["code"]) if error.get("code") is not None else None
    else:
        message, type_, code = f"upstream error (HTTP {status})", None, None
    message, code = _anthropic_message(status, message, code)
    kind = _anthropic_type(status, type_, code)
    return status, {"type": "error", "error": {"type": kind, "message": message}}


def stream_error_from_anthropic(error: Mapping[str, Any]) -> StreamError:
    """The ``error`` object of an Anthropic ``error`` event → :class:`StreamError` (OpenAI's vocabulary)."""
    # No HTTP status mid-stream: 400 lets an overflow be recognised by its wording.
    message, kind = str(error.get("message") or "upstream error"), str(error.get("type") or "api_error")
    rendered = _openai_error(400 if kind in ("invalid_request_error", "request_too_large") else 500, message, kind)
    return StreamError(rendered["message"], rendered["type"], rendered["code"])


def stream_error_to_anthropic(error: StreamError) -> dict[str, Any]:
    """A :class:`StreamError` → the data of an Anthropic ``error`` event."""
    message, code = _anthropic_message(400, error.message, error.code)
    kind = _anthropic_type(None, error.type, code)
    return {"type": "error", "error": {"type": kind, "message": message}}


# ---------------------------------------------------------------------------------------------
# count_tokens


def estimate_input_tokens(req: ChatRequest) -> int:
    """Estimated input tokens of a request, for ``count_tokens`` when no Anthropic upstream can answer.

    Uses :mod:`spendgate_proxy.formats.estimate` (tiktoken when cached, else 4 characters a token), plus
    per-message framing and :data:`IMAGE_TOKENS` per image. Thinking from earlier turns is left
    out, as Anthropic strips it from the context; only the last assistant turn's counts.
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


def count_tokens_response(input_tokens: int) -> dict[str, Any]:
    """The ``/v1/messages/count_tokens`` answer."""
    return {"input_tokens": input_tokens}


# ---------------------------------------------------------------------------------------------
# Streaming: Anthropic SSE → canonical events


class AnthropicSSEParser:
    """Anthropic SSE bytes, cut anywhere, → canonical stream events.

    :meth:`feed` takes whatever bytes arrived and returns the events they complete; :meth:`close`
    flushes a final event that lacked its blank line. ``tool_use`` blocks are numbered 0, 1, ...
    as tool calls; a tool call whose input streamed nothing gets ``"{}"`` so that OpenAI clients
    can parse its arguments. ``message_delta`` gives :class:`Finish`, ``message_stop`` the one
    :class:`UsageEvent`, an ``error`` event a :class:`StreamError`; :attr:`done` turns true at
    either end. :attr:`usage` is what is known so far (input tokens arrive first, in
    ``message_start``), for a span when the stream is cut; :attr:`stop_reason` and
    :attr:`stop_sequence` keep Anthropic's own values.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # block index → tool call index
        self._tool_args: dict[int, bool] = {}  # block index → any argument fragment seen
        self._tool_input: dict[int, Any] = {}  # block index → input given whole in content_block_start
        self.done = False
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None

    @property
    def usage(self) -> Usage | None:
        return usage_from_anthropic(self._usage) if self._usage else None

    def feed(self, data: bytes) -> list[StreamEvent]:
        if self.done:
            return []
        buffer = self._buffer + data
        if b"\r" in buffer:
            # A \r\n split across two chunks leaves a lone \r here; joining first keeps it whole.
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[StreamEvent] = []
        start = 0
        while not self.done:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            self._event(buffer[start:end], events)
            start = end + 2
        self._buffer = b"" if self.done else buffer[start:]
        return events

    def close(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._buffer.strip() and not self.done:
            self._event(self._buffer, events)
        self._buffer = b""
        return events

    def _event(self, raw: bytes, events: list[StreamEvent]) -> None:
        name = None
        data: list[bytes] = []
        for line in raw.split(b"\n"):
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
            elif line.startswith(b"event:"):
                name = line[6:].strip().decode("utf-8", "replace")
        if not data:
            return  # a comment or an event without data
        try:
            payload = orjson.loads(b"\n".join(data))
        except orjson.JSONDecodeError:
            return  # a stray non-JSON line; the stream may still be fine
        if isinstance(payload, dict):
            self.payload_to_events(str(payload.get("type") or name), payload, events)

    def payload_to_events(self, kind: str, payload: Mapping[str, Any], events: list[StreamEvent]) -> None:
        """One parsed event (``kind`` = its ``type``) → canonical events (appended to ``events``)."""
        if kind == "content_block_delta":
            self._block_delta(payload, events)
        elif kind == "content_block_start":
            self._block_start(payload, events)
        elif kind == "content_block_stop":
            index = payload.get("index")
            if isinstance(index, int) and index in self._tools and not self._tool_args[index]:
                given = self._tool_input.get(index)
                events.append(ToolCallDelta(self._tools[index], orjson.dumps(given).decode() if given else "{}"))
        elif kind == "message_start":
            message = payload.get("message") if isinstance(payload.get("message"), Mapping) else {}
            if isinstance(message.get("usage"), Mapping):
                self._usage.update(message["usage"])
            events.append(StreamStart(str(message.get("id") or ""), str(message.get("model") or "")))
        elif kind == "message_delta":
            delta = payload.get("delta") if isinstance(payload.get("delta"), Mapping) else {}
            usage = payload.get("usage")
            if isinstance(usage, Mapping):
                # Cumulative counts: they replace, and absent ones keep message_start's values.
                self._usage.update({k: v for k, v in usage.items() if v is not None})
            reason = delta.get("stop_reason")
            if isinstance(reason, str):
                self.stop_reason = reason
                stop_sequence = delta.get("stop_sequence")
                self.stop_sequence = stop_sequence if isinstance(stop_sequence, str) else None
                events.append(Finish(finish_reason_from_anthropic(reason) or "stop"))
        elif kind == "message_stop":
            self.done = True
            events.append(UsageEvent(usage_from_anthropic(self._usage)))
        elif kind == "error":
            self.done = True
            error = payload.get("error") if isinstance(payload.get("error"), Mapping) else {}
            events.append(stream_error_from_anthropic(error))
        # ping and event types added later carry nothing the canonical stream needs.

    def _block_start(self, payload: Mapping[str, Any], events: list[StreamEvent]) -> None:
        index, block = payload.get("index"), payload.get("content_block")
        if not isinstance(index, int) or not isinstance(block, Mapping):
            return
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            events.append(TextDelta(str(block["text"])))
        elif kind == "tool_use":
            self._tools[index] = len(self._tools)
            self._tool_args[index] = False
            self._tool_input[index] = block.get("input")
            events.append(ToolCallStart(self._tools[index], str(block.get("id") or ""), str(block.get("name") or "")))
        elif kind == "thinking":
            if block.get("thinking") or block.get("signature"):
                events.append(ThinkingDelta(str(block.get("thinking") or ""), block.get("signature") or None))
        elif kind == "redacted_thinking":
            events.append(ThinkingDelta(str(block.get("data") or ""), redacted=True))

    def _block_delta(self, payload: Mapping[str, Any], events: list[StreamEvent]) -> None:
        index, delta = payload.get("index"), payload.get("delta")
        if not isinstance(delta, Mapping):
            return
        kind = delta.get("type")
        if kind == "text_delta":
            if delta.get("text"):
                events.append(TextDelta(str(delta["text"])))
        elif kind == "input_json_delta":
            fragment = delta.get("partial_json")
            if isinstance(index, int) and index in self._tools and isinstance(fragment, str) and fragment:
                self._tool_args[index] = True
                events.append(ToolCallDelta(self._tools[index], fragment))
        elif kind == "thinking_delta":
            if delta.get("thinking"):
                events.append(ThinkingDelta(str(delta["thinking"])))
        elif kind == "signature_delta" and delta.get("signature"):
            events.append(ThinkingDelta("", str(delta["signature"])))


def parse_sse(data: bytes) -> list[StreamEvent]:
    """All events of a complete Anthropic SSE body (for tests and non-incremental callers)."""
    parser = AnthropicSSEParser()
    return parser.feed(data) + parser.close()


# ---------------------------------------------------------------------------------------------
# Streaming: canonical events → Anthropic SSE


def sse_event(name: str, data: Mapping[str, Any]) -> bytes:
    """One Anthropic SSE event: ``event: NAME``, ``data: JSON``, blank line."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_MESSAGE_STOP = sse_event("message_stop", {"type": "message_stop"})


@dataclass(slots=True)
class _Held:
    """Content held back while a tool block is open: one future block, filled as events arrive."""

    kind: str  # "text" | "thinking" | "redacted" | "tool"
    pieces: list[str] = field(default_factory=list)
    signature: str | None = None
    id: str = ""
    name: str = ""


class AnthropicSSEWriter:
    """Canonical stream events → Anthropic SSE bytes, the way the ``anthropic`` SDK reads them.

    One writer per response. :meth:`write` returns the bytes for one event (possibly ``b""``);
    :meth:`close` ends the message if that has not happened. Blocks open and close strictly one
    at a time, as Anthropic's do: thinking (``thinking_delta``, then ``signature_delta``), text,
    ``tool_use`` (``input_json_delta``). Usage arrives last from most providers, while Anthropic
    reports input tokens first, so ``message_start`` carries ``input_tokens`` (a caller's estimate,
    or 0) and ``message_delta`` the real counts (the SDK takes those). ``message_delta`` waits
    for both the finish reason and the usage, or for :meth:`close`.

    Tool calls: an Anthropic block cannot be reopened, and a provider may still send arguments
    for a call after other content (parallel calls interleaved, text between fragments). So while
    a tool block is open only its own fragments stream live; everything else (text, thinking,
    further calls with their fragments) is held, in order, and written whole at the finish or the
    end. Text and thinking before the first tool call stream live; with OpenAI's usual order (calls
    one after the other) the first call streams live and the others follow at the finish.
    """

    def __init__(self, *, model: str | None = None, input_tokens: int | None = None) -> None:
        self.model_override = model
        self.input_tokens_hint = input_tokens
        self._started = False
        self._ended = False
        self._index = -1  # index of the last block opened
        self._open: str | None = None  # "text" | "thinking" | "signed" (thinking with signature) | "tool"
        self._active_tool: int | None = None
        self._held: list[_Held] = []
        self._held_tools: dict[int, _Held] = {}
        self._tools_seen = 0
        self._reason: str | None = None
        self.usage: Usage | None = None
        self.stop_reason: str | None = None

    # -- pieces ----------------------------------------------------------------------------

    def _start(self, id_: str, model: str) -> bytes:
        self._started = True
        message = {
            "id": id_ or "msg_spendgate",
            "type": "message",
            "role": "assistant",
            "model": self.model_override or model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.input_tokens_hint or 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 0,
            },
        }
        return sse_event("message_start", {"type": "message_start", "message": message})

    def _ensure_started(self) -> bytes:
        return b"" if self._started else self._start("", "")

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        self._active_tool = None
        return sse_event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _open_block(self, kind: str, block: Mapping[str, Any]) -> bytes:
        out = self._close_block()
        self._index += 1
        self._open = kind
        return out + sse_event(
            "content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block}
        )

    def _delta(self, delta: Mapping[str, Any]) -> bytes:
        return sse_event("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})

    def _open_tool(self, index: int, id_: str, name: str) -> bytes:
        self._tools_seen += 1
        out = self._open_block("tool", {"type": "tool_use", "id": tool_id(id_), "name": name, "input": {}})
        self._active_tool = index
        return out

    def _text(self, text: str) -> bytes:
        out = b"" if self._open == "text" else self._open_block("text", {"type": "text", "text": ""})
        return out + self._delta({"type": "text_delta", "text": text})

    def _thinking(self, text: str, signature: str | None) -> bytes:
        out = b""
        if text:
            # A signature ends a thinking block: later thinking is a new block.
            if self._open != "thinking":
                out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta({"type": "thinking_delta", "thinking": text})
        if signature:
            if self._open != "thinking":
                out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta({"type": "signature_delta", "signature": signature})
            self._open = "signed"
        return out

    def _redacted(self, data: str) -> bytes:
        return self._open_block("redacted", {"type": "redacted_thinking", "data": data}) + self._close_block()

    def _hold(self, event: StreamEvent) -> None:
        last = self._held[-1] if self._held else None
        if isinstance(event, TextDelta):
            if last is None or last.kind != "text":
                last = _Held("text")
                self._held.append(last)
            last.pieces.append(event.text)
        elif isinstance(event, ThinkingDelta):
            if event.redacted:
                self._held.append(_Held("redacted", [event.text]))
                return
            if last is None or last.kind != "thinking" or last.signature is not None:
                last = _Held("thinking")
                self._held.append(last)
            last.pieces.append(event.text)
            last.signature = event.signature or last.signature
        elif isinstance(event, ToolCallStart):
            held = _Held("tool", id=event.id, name=event.name)
            self._held.append(held)
            self._held_tools[event.index] = held
        elif isinstance(event, ToolCallDelta) and event.index in self._held_tools:
            self._held_tools[event.index].pieces.append(event.arguments_fragment)

    def _release(self) -> bytes:
        """Close the open block, then write everything held, each held item as one whole block."""
        out = self._close_block()
        for held in self._held:
            joined = "".join(held.pieces)
            if held.kind == "text":
                out += self._text(joined) if joined else b""
            elif held.kind == "thinking":
                out += self._thinking(joined, held.signature)
            elif held.kind == "redacted":
                out += self._redacted(joined)
            else:
                out += self._open_tool(-1, held.id, held.name)
                if joined:
                    out += self._delta({"type": "input_json_delta", "partial_json": joined})
            out += self._close_block()
        self._held.clear()
        self._held_tools.clear()
        return out

    def _end(self) -> bytes:
        self._ended = True
        out = self._release()
        self.stop_reason = self._reason or ("tool_use" if self._tools_seen else "end_turn")
        usage = usage_to_anthropic(self.usage) if self.usage is not None else {"output_tokens": 0}
        delta = {"stop_reason": self.stop_reason, "stop_sequence": None}
        out += sse_event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        return out + _MESSAGE_STOP

    # -- the interface ---------------------------------------------------------------------

    def write(self, event: StreamEvent) -> bytes:
        """The SSE bytes for one event (``b""`` when nothing can be sent yet)."""
        if self._ended:
            return b""
        if isinstance(event, StreamStart):
            return b"" if self._started else self._start(event.id, event.model)
        out = self._ensure_started()
        if isinstance(event, TextDelta | ThinkingDelta | ToolCallStart | ToolCallDelta):
            if isinstance(event, ToolCallDelta) and event.index == self._active_tool:
                if event.arguments_fragment:
                    out += self._delta({"type": "input_json_delta", "partial_json": event.arguments_fragment})
            elif self._active_tool is not None:
                self._hold(event)  # the open tool block may still grow
            elif isinstance(event, TextDelta):
                out += self._text(event.text) if event.text else b""
            elif isinstance(event, ThinkingDelta):
                out += self._redacted(event.text) if event.redacted else self._thinking(event.text, event.signature)
            elif isinstance(event, ToolCallStart):
                out += self._open_tool(event.index, event.id, event.name)
        elif isinstance(event, Finish):
            self._reason = finish_reason_to_anthropic(event.reason)
            out += self._release()
            if self.usage is not None:
                out += self._end()
        elif isinstance(event, UsageEvent):
            self.usage = event.usage
            if self._reason is not None:
                out += self._end()
        elif isinstance(event, StreamError):
            # Anthropic ends a failed stream with an error event alone; the SDK raises on it.
            self._ended = True
            out += sse_event("error", stream_error_to_anthropic(event))
        return out

    def close(self) -> bytes:
        """End the message if it has not ended: held content, ``message_delta`` and ``message_stop``."""
        if self._ended:
            return b""
        return self._ensure_started() + self._end()

    def write_all(self, events: Iterable[StreamEvent]) -> bytes:
        """Every event and the tail, joined: for tests and non-incremental callers."""
        return b"".join(self.write(e) for e in events) + self.close()


__all__ = [
    "DEFAULT_MAX_TOKENS",
    "EFFORT_BUDGETS",
    "AnthropicFormatError",
    "AnthropicSSEParser",
    "AnthropicSSEWriter",
    "count_tokens_response",
    "error_from_openai",
    "error_to_openai",
    "estimate_input_tokens",
    "parse_count_tokens_request",
    "parse_request",
    "parse_response",
    "parse_sse",
    "render_count_tokens_request",
    "render_image",
    "render_request",
    "render_response",
    "render_tool",
    "render_tool_choice",
    "sse_event",
    "stream_error_from_anthropic",
    "stream_error_to_anthropic",
    "tool_id",
    "usage_from_anthropic",
    "usage_to_anthropic",
]
