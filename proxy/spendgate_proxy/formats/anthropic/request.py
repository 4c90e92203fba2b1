"""Anthropic Messages request bodies ↔ :class:`ChatRequest`, and the ``count_tokens`` request.

Parsing checks structure and raises :class:`AnthropicFormatError` naming the field
(``messages.2.content.0.type``), because a block the canonical model cannot hold (``document``,
server-tool results) would otherwise vanish from a conversation silently. Rendering produces what
the real API accepts: tool results first in user turns, consecutive same-role turns merged, no
empty text blocks, only signed thinking sent back.

Typed (server) tools and text ``citations`` are dropped when parsing, since no other format could
use them; fields without a canonical slot (``top_k``, ``output_config``, ...) ride in
``ChatRequest.extra`` and are rendered back only for a request parsed from this format. The full
list, for users: docs/translation.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from spendgate_proxy.formats._values import number_or_none
from spendgate_proxy.formats.canonical import (
    EFFORT_BUDGETS,
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
)

DEFAULT_MAX_TOKENS = 8192
"""``max_tokens`` sent when the request had none (Anthropic requires it); every current Claude model allows it."""

MAX_OUTPUT_TOKENS = 32_000
"""Ceiling for a ``max_tokens`` we make up (default + thinking budget): the smallest current model maximum."""

MIN_THINKING_BUDGET = 1024
"""Anthropic's smallest ``thinking.budget_tokens``."""

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
# Anthropic's tool_choice types → canonical (``tool`` names one tool and is read apart).
_TOOL_CHOICES: dict[str, ToolChoice] = {"auto": "auto", "any": "required", "none": "none"}
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
        temperature=number_or_none(body.get("temperature")),
        top_p=number_or_none(body.get("top_p")),
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
    return _TOOL_CHOICES.get(str(kind))


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


def tool_input(arguments_json: str) -> dict[str, Any]:
    """A tool call's JSON arguments as the ``input`` object Anthropic wants (``{}`` when they are not one)."""
    # Arguments cut short by a length limit, or a non-object, cannot be sent as they are; an
    # empty input keeps the turn valid rather than failing the whole request.
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
            "input": tool_input(part.arguments_json),
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


__all__ = [
    "DEFAULT_MAX_TOKENS",
    "AnthropicFormatError",
    "parse_count_tokens_request",
    "parse_request",
    "render_count_tokens_request",
    "render_image",
    "render_request",
    "render_tool",
    "render_tool_choice",
    "tool_id",
    "tool_input",
]
