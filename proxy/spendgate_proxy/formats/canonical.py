"""The canonical model of a chat call: what every inbound format parses to and every provider renders from.

Plain frozen dataclasses, no I/O and no format-specific parsing: adapters in this package
(``openai``, ``anthropic``, ``responses_shaped``) and providers (``providers/*``) translate to and
from these types. Sequences are tuples so a parsed request can be shared between
attempts (fallbacks) without one attempt mutating what the next one sends.

Conventions every adapter relies on:

- Tool-call arguments stay a JSON *string* (``arguments_json``): OpenAI streams them as fragments
  and a proxy must not re-serialise them (key order, number formatting) or fail on a truncated one.
- Token counts follow OpenAI's totals: ``input_tokens`` includes cache reads and writes,
  ``output_tokens`` includes reasoning. Anthropic's ``input_tokens`` is only the uncached part, so
  its adapter adds ``cache_creation_input_tokens`` and ``cache_read_input_tokens``.
- Finish reasons are OpenAI's four; :func:`finish_reason_from_anthropic` and
  :func:`finish_reason_to_anthropic` map Anthropic's stop reasons.
- ``extra`` keeps fields this model has no slot for, in the vocabulary of ``source_format``, so a
  renderer for the same format can pass them on and one for another format knows to drop them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]
FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter"]
SourceFormat: TypeAlias = Literal["chat", "responses", "anthropic"]

# ---------------------------------------------------------------------------------------------
# Message parts


@dataclass(frozen=True, slots=True)
class TextPart:
    """Text; ``cache_control`` is Anthropic's marker (e.g. ``{"type": "ephemeral"}``), kept verbatim."""

    text: str
    cache_control: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image by URL (``url``, which may itself be a ``data:`` URL) or as base64 ``data`` + ``media_type``."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None  # OpenAI's "low" | "high" | "auto"
    cache_control: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ToolCallPart:
    """A call the assistant made; ``arguments_json`` is the raw JSON text, never re-serialised."""

    id: str
    name: str
    arguments_json: str = "{}"
    cache_control: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ToolResultPart:
    """The result of a tool call: plain text or text/image parts (Anthropic allows images)."""

    tool_call_id: str
    content: str | tuple[TextPart | ImagePart, ...] = ""
    is_error: bool = False
    cache_control: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ThinkingPart:
    """Reasoning the model showed (Anthropic thinking, OpenAI reasoning summaries).

    ``signature`` is the provider's opaque token that lets the block be sent back (Anthropic's
    ``signature``, OpenAI's ``encrypted_content``). When ``redacted`` is true, ``text`` holds the
    provider's opaque payload (Anthropic's ``redacted_thinking.data``), not readable text.
    """

    text: str
    signature: str | None = None
    redacted: bool = False


Part: TypeAlias = TextPart | ImagePart | ToolCallPart | ToolResultPart | ThinkingPart


@dataclass(frozen=True, slots=True)
class Message:
    """One turn. ``tool`` messages hold :class:`ToolResultPart` s; Anthropic puts those in ``user``
    messages instead, so renderers must accept tool results in either role."""

    role: Role
    parts: tuple[Part, ...] = ()
    name: str | None = None  # OpenAI's optional participant name


# ---------------------------------------------------------------------------------------------
# Tools and request parameters


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool the model may call.

    ``kind="custom"`` is an OpenAI custom (grammar / free-form) tool such as Cursor's ``ApplyPatch``:
    providers only understand function tools, so it travels as a function whose ``parameters``
    take one string ``input``, and ``original`` keeps the definition so it can be turned back.
    """

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    kind: Literal["function", "custom"] = "function"
    original: Mapping[str, Any] | None = None
    strict: bool | None = None
    cache_control: Mapping[str, Any] | None = None


CUSTOM_TOOL_INPUT = "input"
"""The one string parameter a custom (grammar) tool gets when it travels as a function."""


def custom_tool(definition: Mapping[str, Any]) -> Tool:
    """The function-shaped :class:`Tool` for an OpenAI custom tool definition (flat or nested).

    The grammar (``format``) cannot be expressed as JSON schema, so it is summarised in the
    description (models follow a described format well enough) and kept whole in ``original``.
    """
    nested = definition.get("custom")
    spec: Mapping[str, Any] = nested if isinstance(nested, Mapping) else definition
    name = str(spec.get("name") or "")
    description = spec.get("description") if isinstance(spec.get("description"), str) else None
    fmt = spec.get("format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "grammar":
        hint = f"The input must follow this {fmt.get('syntax', 'grammar')} grammar:\n{fmt.get('definition', '')}"
        description = f"{description}\n\n{hint}" if description else hint
    parameters = {
        "type": "object",
        "properties": {CUSTOM_TOOL_INPUT: {"type": "string", "description": "The raw input for this tool."}},
        "required": [CUSTOM_TOOL_INPUT],
        "additionalProperties": False,
    }
    return Tool(name=name, description=description, parameters=parameters, kind="custom", original=dict(definition))


@dataclass(frozen=True, slots=True)
class ToolChoiceTool:
    """``tool_choice`` forcing one named tool."""

    name: str


ToolChoice: TypeAlias = Literal["auto", "none", "required"] | ToolChoiceTool


@dataclass(frozen=True, slots=True)
class Reasoning:
    """Reasoning controls: OpenAI's ``effort`` (minimal..xhigh) and ``summary``, Anthropic's thinking budget.

    ``enabled=False`` records an explicit "off" (Anthropic ``thinking: {type: disabled}``).
    """

    effort: str | None = None
    budget_tokens: int | None = None
    summary: str | None = None
    enabled: bool = True


EFFORT_BUDGETS: Mapping[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16_384,
    "xhigh": 24_000,
    "max": 24_000,
}
"""Reasoning ``effort`` → thinking budget in tokens, between formats that speak one or the other.

An OpenAI-style effort becomes this Anthropic ``budget_tokens``; read in reverse (the smallest of
``low``/``medium``/``high`` whose budget covers it), a budget becomes an OpenAI reasoning effort.
"""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat call, whatever shape it arrived in."""

    model: str
    messages: tuple[Message, ...] = ()
    system: tuple[TextPart, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    reasoning: Reasoning | None = None
    metadata: Mapping[str, Any] | None = None
    user: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    source_format: SourceFormat | None = None


# ---------------------------------------------------------------------------------------------
# Responses


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts with OpenAI's totals: input includes cache reads/writes, output includes reasoning."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """A complete (non-streamed) answer."""

    id: str
    model: str
    content: tuple[Part, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    created: int | None = None


_FROM_ANTHROPIC: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    # Newer models stop here when the context window, not max_tokens, ran out; same remedy.
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    # A paused server-tool loop: the turn is over for now and OpenAI has no "paused", so a
    # client sees an ordinary stop (the partial answer is still valid text).
    "pause_turn": "stop",
}

_TO_ANTHROPIC: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "function_call": "tool_use",  # OpenAI's legacy name
}


def finish_reason_from_anthropic(stop_reason: str | None) -> FinishReason | None:
    """Anthropic ``stop_reason`` → OpenAI ``finish_reason``; unknown reasons read as ``stop``."""
    if stop_reason is None:
        return None
    return _FROM_ANTHROPIC.get(stop_reason, "stop")


def finish_reason_to_anthropic(finish_reason: str | None) -> str | None:
    """OpenAI ``finish_reason`` → Anthropic ``stop_reason``; unknown reasons read as ``end_turn``."""
    if finish_reason is None:
        return None
    return _TO_ANTHROPIC.get(finish_reason, "end_turn")


# ---------------------------------------------------------------------------------------------
# Streaming events (one provider stream → these → one client stream)


@dataclass(frozen=True, slots=True)
class StreamStart:
    """The stream began; always the first event."""

    id: str
    model: str
    created: int | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Visible text. ``index`` is the choice index (always 0 for the formats we speak)."""

    text: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """Reasoning text, or (text empty) the block's ``signature``; ``redacted`` as in :class:`ThinkingPart`."""

    text: str = ""
    signature: str | None = None
    redacted: bool = False


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """A tool call opens. ``index`` is its position among this answer's tool calls (0, 1, ...)."""

    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of the JSON arguments of the call opened with the same ``index``."""

    index: int
    arguments_fragment: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The answer is complete (usage may still follow)."""

    reason: FinishReason


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """Token usage for the whole answer; at most one per stream, at or near the end."""

    usage: Usage


@dataclass(frozen=True, slots=True)
class StreamError:
    """The provider failed mid-stream; ends the stream. Fields follow OpenAI's error object."""

    message: str
    type: str = "server_error"
    code: str | None = None


StreamEvent: TypeAlias = (
    StreamStart | TextDelta | ThinkingDelta | ToolCallStart | ToolCallDelta | Finish | UsageEvent | StreamError
)


# ---------------------------------------------------------------------------------------------
# Between a whole answer and its stream


def collect_stream(events: Iterable[StreamEvent]) -> ChatResponse:
    """Fold stream events into the complete answer (for a client that did not ask to stream).

    Text and thinking deltas are joined; tool calls keep their stream order. A :class:`StreamError`
    raises :class:`StreamFailed`, since a half answer must not be returned as a whole one.
    """
    id_, model, created = "", "", None
    order: list[str] = []  # "text", "thinking" and "tool:<index>", in first-seen order
    text: list[str] = []
    thinking: list[str] = []
    signature: str | None = None
    redacted: list[str] = []
    calls: dict[int, list[str]] = {}
    heads: dict[int, tuple[str, str]] = {}
    finish: FinishReason | None = None
    usage: Usage | None = None
    for event in events:
        if isinstance(event, StreamStart):
            id_, model, created = event.id, event.model, event.created
        elif isinstance(event, TextDelta):
            if "text" not in order:
                order.append("text")
            text.append(event.text)
        elif isinstance(event, ThinkingDelta):
            if event.redacted:
                redacted.append(event.text)
                continue
            if "thinking" not in order:
                order.append("thinking")
            thinking.append(event.text)
            signature = event.signature or signature
        elif isinstance(event, ToolCallStart):
            heads[event.index] = (event.id, event.name)
            calls.setdefault(event.index, [])
            order.append(f"tool:{event.index}")
        elif isinstance(event, ToolCallDelta):
            calls.setdefault(event.index, []).append(event.arguments_fragment)
        elif isinstance(event, Finish):
            finish = event.reason
        elif isinstance(event, UsageEvent):
            usage = event.usage
        elif isinstance(event, StreamError):
            raise StreamFailed(event)
    parts: list[Part] = [ThinkingPart(data, redacted=True) for data in redacted]
    for item in order:
        if item == "thinking":
            parts.append(ThinkingPart("".join(thinking), signature))
        elif item == "text":
            parts.append(TextPart("".join(text)))
        else:
            index = int(item.split(":", 1)[1])
            call_id, name = heads[index]
            parts.append(ToolCallPart(call_id, name, "".join(calls.get(index, ())) or "{}"))
    return ChatResponse(id=id_, model=model, content=tuple(parts), finish_reason=finish, usage=usage, created=created)


def response_events(resp: ChatResponse) -> list[StreamEvent]:
    """A complete answer as stream events (for a streaming client served by a non-streamed answer)."""
    events: list[StreamEvent] = [StreamStart(resp.id, resp.model, resp.created)]
    tool_index = 0
    for part in resp.content:
        if isinstance(part, TextPart):
            if part.text:
                events.append(TextDelta(part.text))
        elif isinstance(part, ThinkingPart):
            events.append(ThinkingDelta(part.text, part.signature, part.redacted))
        elif isinstance(part, ToolCallPart):
            events.append(ToolCallStart(tool_index, part.id, part.name))
            events.append(ToolCallDelta(tool_index, part.arguments_json))
            tool_index += 1
    events.append(Finish(resp.finish_reason or ("tool_calls" if tool_index else "stop")))
    if resp.usage is not None:
        events.append(UsageEvent(resp.usage))
    return events


class StreamFailed(Exception):
    """A stream ended with a :class:`StreamError`; ``error`` carries it."""

    def __init__(self, error: StreamError) -> None:
        super().__init__(error.message)
        self.error = error


__all__ = [
    "CUSTOM_TOOL_INPUT",
    "EFFORT_BUDGETS",
    "ChatRequest",
    "ChatResponse",
    "Finish",
    "FinishReason",
    "ImagePart",
    "Message",
    "Part",
    "Reasoning",
    "Role",
    "SourceFormat",
    "StreamError",
    "StreamEvent",
    "StreamFailed",
    "StreamStart",
    "TextDelta",
    "TextPart",
    "ThinkingDelta",
    "ThinkingPart",
    "Tool",
    "ToolCallDelta",
    "ToolCallPart",
    "ToolCallStart",
    "ToolChoice",
    "ToolChoiceTool",
    "ToolResultPart",
    "Usage",
    "UsageEvent",
    "collect_stream",
    "custom_tool",
    "finish_reason_from_anthropic",
    "finish_reason_to_anthropic",
    "response_events",
]
