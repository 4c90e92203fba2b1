"""Cursor-specific normalisation around the canonical model: custom tools and ``max_tokens``.

Facts are from ``docs/cursor-facts.md`` ("what Cursor sends / expects back"); each rule below
says which one it serves. The adapters (``openai``, ``responses_shaped``, ``anthropic``) already
map the three body shapes to one :class:`ChatRequest`; this module fixes what is still wrong for a
provider, and what a provider sends back that Cursor would mishandle (docs/cursor.md tells users).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Literal, TypeAlias

import orjson

from spendgate_proxy.formats.canonical import (
    CUSTOM_TOOL_INPUT,
    ChatRequest,
    ChatResponse,
    Finish,
    Message,
    StreamError,
    StreamEvent,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
)

CustomCallMode: TypeAlias = Literal["raw", "json", "custom"]
"""How a call of a custom (grammar) tool such as ``ApplyPatch`` reaches the client.

Providers only call function tools, so a custom tool travels as a function taking one string
``input`` (``canonical.custom_tool``) and the model's call comes back as ``{"input": "*** Begin
Patch..."}``. What Cursor wants in a Chat Completions stream is not in docs/cursor-facts.md. The
one public report we found (icebear0828/codex-proxy PR #708, Cursor 3.14.27) says Cursor crashes
on a ``type: "custom"`` tool call ("Cannot read properties of undefined (reading 'name')") and
works with a ``type: "function"`` call named ``ApplyPatch`` whose ``function.arguments`` is the raw
patch text, not JSON; it also replays that call in later requests with the raw text as
``arguments``. So the default mode is ``"raw"``; ``"json"`` (keep ``{"input": ...}``) is the
fallback to configure if Cursor changes, and ``"custom"`` (OpenAI's own custom call shape) is for
other clients. Verify with real traffic.
"""

DEFAULT_MAX_TOKENS_FLOOR = 8192
"""The least ``max_tokens`` a tool-using turn gets.

Cursor sometimes sends a ``max_tokens`` low enough to cut tool-call JSON short (docs/cursor-facts.md,
request bodies item 1), and a cut call is a broken edit. 8192 fits a sizeable ``ApplyPatch`` and
stays within the output limit of every model Cursor users pick (the smallest, Claude Haiku 3.5,
allows 8192).
"""


# ---------------------------------------------------------------------------------------------
# Requests


def normalise_cursor_request(
    req: ChatRequest, *, max_tokens_floor: int | None = DEFAULT_MAX_TOKENS_FLOOR
) -> ChatRequest:
    """Make a parsed Cursor request safe to send to any provider.

    - Tools with the same name are kept once (the first): Cursor mixes nested and flat tool
      entries (docs/cursor-facts.md item 1), and Anthropic rejects duplicate names.
    - Earlier calls of a custom tool whose ``arguments`` are raw text (how Cursor replays them,
      see :data:`CustomCallMode`) are wrapped as ``{"input": ...}`` so every provider gets JSON.
    - A tool-using turn (tools offered, ``tool_choice`` not ``none``) with ``max_tokens`` below
      ``max_tokens_floor`` is raised to it; ``None`` turns the floor off. An absent
      ``max_tokens`` stays absent: the provider's default is not a cut-off Cursor chose.
    """
    seen: set[str] = set()
    tools: list[Tool] = []
    for tool in req.tools:
        if tool.name not in seen:
            seen.add(tool.name)
            tools.append(tool)
    custom = {t.name for t in tools if t.kind == "custom"}
    messages = tuple(_wrap_custom_calls(m, custom) for m in req.messages) if custom else req.messages

    max_tokens = req.max_tokens
    tool_turn = bool(tools) and req.tool_choice != "none"
    if tool_turn and max_tokens_floor is not None and max_tokens is not None and max_tokens < max_tokens_floor:
        max_tokens = max_tokens_floor
    return dataclasses.replace(req, tools=tuple(tools), messages=messages, max_tokens=max_tokens)


def _wrap_custom_calls(message: Message, custom: set[str]) -> Message:
    if message.role != "assistant":
        return message
    changed = False
    parts = []
    for part in message.parts:
        if isinstance(part, ToolCallPart) and part.name in custom:
            wrapped = orjson.dumps({CUSTOM_TOOL_INPUT: custom_input(part.arguments_json)}).decode()
            if wrapped != part.arguments_json:
                part = dataclasses.replace(part, arguments_json=wrapped)
                changed = True
        parts.append(part)
    return dataclasses.replace(message, parts=tuple(parts)) if changed else message


def custom_tool_names(req: ChatRequest) -> frozenset[str]:
    """Names of the request's custom tools: the calls to turn back on the way out."""
    return frozenset(t.name for t in req.tools if t.kind == "custom")


# ---------------------------------------------------------------------------------------------
# Custom tool calls on the way back


def custom_input(arguments: str) -> str:
    """The raw input of a custom tool call, from whatever its arguments hold.

    ``{"input": "..."}`` (the function form) gives the string; a JSON string gives itself; any
    other text (raw patch text, as Cursor replays it) is the input as it stands.
    """
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    raw = value.get(CUSTOM_TOOL_INPUT) if isinstance(value, dict) else None
    if isinstance(raw, str):
        return raw
    if isinstance(value, str):
        return value
    return arguments


def custom_tool_call_to_cursor(call: ToolCallPart, *, mode: CustomCallMode = "raw") -> dict[str, Any]:
    """A call of a rewritten custom tool → the Chat Completions ``tool_calls`` entry for the client.

    ``raw`` (default): ``type: function`` with the raw input as ``arguments`` (what Cursor is
    reported to need, see :data:`CustomCallMode`). ``json``: ``type: function`` with
    ``{"input": ...}``. ``custom``: OpenAI's ``{type: custom, custom: {name, input}}``.
    """
    raw = custom_input(call.arguments_json)
    if mode == "custom":
        return {"id": call.id, "type": "custom", "custom": {"name": call.name, "input": raw}}
    arguments = raw if mode == "raw" else orjson.dumps({CUSTOM_TOOL_INPUT: raw}).decode()
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def restore_custom_calls(resp: ChatResponse, names: Iterable[str], *, mode: CustomCallMode = "raw") -> ChatResponse:
    """A complete answer with its custom tool calls' arguments in ``mode`` (``raw`` or ``json``).

    ``custom`` cannot be expressed in a :class:`ChatResponse` (it renders function calls); use
    :func:`custom_tool_call_to_cursor` on the parts for that.
    """
    names = frozenset(names)
    if mode == "custom" or not names:
        return resp
    content = tuple(
        dataclasses.replace(p, arguments_json=custom_tool_call_to_cursor(p, mode=mode)["function"]["arguments"])
        if isinstance(p, ToolCallPart) and p.name in names
        else p
        for p in resp.content
    )
    return dataclasses.replace(resp, content=content)


class CustomCallStream:
    """Rewrites a stream's custom tool calls for the client, fragment by fragment.

    In ``raw`` mode the ``{"input": "..."}`` the model streams is decoded as it arrives, so the
    client sees the patch text grow instead of one late burst; arguments in any other form are
    held and decoded when the call ends (at :class:`Finish`, an error or :meth:`close`). In
    ``json`` mode events pass through untouched. Feed every event through :meth:`process`, then
    call :meth:`close`.
    """

    def __init__(self, names: Iterable[str], *, mode: CustomCallMode = "raw") -> None:
        self.names = frozenset(names)
        self.mode = mode
        self._decoders: dict[int, _InputDecoder] = {}

    def process(self, event: StreamEvent) -> list[StreamEvent]:
        if self.mode != "raw" or not self.names:
            return [event]
        if isinstance(event, ToolCallStart) and event.name in self.names:
            self._decoders[event.index] = _InputDecoder()
            return [event]
        if isinstance(event, ToolCallDelta) and event.index in self._decoders:
            text = self._decoders[event.index].feed(event.arguments_fragment)
            return [ToolCallDelta(event.index, text)] if text else []
        if isinstance(event, Finish | StreamError):
            return [*self._flush(), event]
        return [event]

    def close(self) -> list[StreamEvent]:
        return self._flush()

    def _flush(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for index, decoder in self._decoders.items():
            text = decoder.finish()
            if text:
                out.append(ToolCallDelta(index, text))
        self._decoders.clear()
        return out


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_PREFIX = '{"input":"'
_PREFIX_GAPS = frozenset({0, 1, 8, 9})  # how much of _PREFIX is matched where JSON allows whitespace


def _hex(digits: str) -> int | None:
    if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        return None
    return int(digits, 16)


class _InputDecoder:
    """Decodes the string value of ``{"input": "..."}`` from fragments, as they arrive.

    Falls back to holding everything (decoded by :func:`custom_input` at the end) as soon as the
    text does not start like that object, e.g. when the model sent another key first.
    """

    def __init__(self) -> None:
        self._held = ""  # what came before the prefix was confirmed, or everything in fallback mode
        self._matched = 0  # characters of _PREFIX seen so far
        self._state: Literal["prefix", "string", "done", "fallback"] = "prefix"
        self._escape = ""  # an escape sequence cut by a fragment boundary

    def feed(self, fragment: str) -> str:
        if self._state == "fallback":
            self._held += fragment
            return ""
        if self._state == "done":
            return ""
        if self._state == "string":
            return self._decode(fragment)
        self._held += fragment
        for i, ch in enumerate(fragment):
            if ch.isspace() and self._matched in _PREFIX_GAPS:
                continue
            if ch != _PREFIX[self._matched]:
                self._state = "fallback"
                return ""
            self._matched += 1
            if self._matched == len(_PREFIX):
                self._state = "string"
                self._held = ""
                return self._decode(fragment[i + 1 :])
        return ""

    def _decode(self, text: str) -> str:
        out: list[str] = []
        text = self._escape + text
        self._escape = ""
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == '"':
                self._state = "done"
                break
            if ch != "\\":
                j = i
                while j < len(text) and text[j] not in '"\\':
                    j += 1
                out.append(text[i:j])
                i = j
                continue
            if i + 1 >= len(text):
                self._escape = text[i:]  # cut after the backslash: wait for the next fragment
                break
            code = text[i + 1]
            if code != "u":
                out.append(_ESCAPES.get(code, code))
                i += 2
                continue
            if i + 6 > len(text):
                self._escape = text[i:]
                break
            unit = _hex(text[i + 2 : i + 6])
            if unit is None:  # not valid JSON: keep the text as the model wrote it
                out.append(text[i : i + 2])
                i += 2
                continue
            if not 0xD800 <= unit < 0xE000:
                out.append(chr(unit))
                i += 6
                continue
            # A surrogate: only a high + low pair (\uD83D\uDE00) is a character.
            pair = text[i + 6 : i + 12]
            if len(pair) < 6 and "\\u".startswith(pair[:2]) and unit < 0xDC00:
                self._escape = text[i:]
                break
            low = (_hex(pair[2:]) or 0) if len(pair) == 6 and pair.startswith("\\u") else 0
            if unit < 0xDC00 and 0xDC00 <= low < 0xE000:
                out.append(chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)))
                i += 12
            else:
                out.append("\ufffd")  # a lone surrogate cannot be encoded as UTF-8
                i += 6
        return "".join(out)

    def finish(self) -> str:
        if self._state == "fallback":
            return custom_input(self._held)
        if self._state == "prefix" and self._held:
            return custom_input(self._held)
        return ""
