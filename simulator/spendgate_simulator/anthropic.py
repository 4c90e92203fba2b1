"""Turn an Anthropic Messages request body into the simulator's reply, byte for byte, with no I/O.

The Anthropic twin of ``responses.py``: ``POST /v1/messages`` and ``/v1/messages/count_tokens``
answered in Anthropic's real shapes (message object, ``event:``/``data:`` SSE, ``{"type": "error"}``
bodies), so the official ``anthropic`` SDK and the proxy's Anthropic adapter can be tested without
a network. Words, hashing and fault markers are shared with the OpenAI simulator; the answer is a
pure function of the body plus one piece of state, :class:`PromptCache`, which makes the first
call with a ``cache_control`` prefix report a cache write and later calls a cache read.

The simulator is deliberately as strict as the real API where translation bugs show up: tool
results must answer the previous turn's ``tool_use`` ids, text blocks must be non-empty, there is
no ``system`` role, thinking budgets must fit under ``max_tokens``, and a thinking block sent back
must carry the signature this simulator gave it.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from spendgate_simulator.responses import (
    BadRequest,
    Reply,
    _arguments,
    _canonical,
    _content_deltas,
    _numbers,
    _split,
    find_markers,
)

CONTEXT_WINDOW = 200_000
"""Claude's context window, used in the wording of the ``[[sim:context-overflow]]`` error."""

IMAGE_TOKENS = 1600
"""What one image counts as input: Anthropic's cost of a ~1.15-megapixel image (w·h/750)."""

MIN_THINKING_BUDGET = 1024
_SIGNATURE_SALT = b"spendgate-sim-thinking"
_CACHE_ENTRIES = 4096

# Client tools have no ``type`` (or ``custom``); typed ones (``web_search_20250305``, ``bash_...``)
# are server or built-in tools the simulator does not run.
_CLIENT_TOOL_TYPES = (None, "custom")


# ---------------------------------------------------------------------------------------------
# Errors, in Anthropic's shapes


def error_reply(status: int, type_: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """An Anthropic error: ``{"type": "error", "error": {"type", "message"}}``."""
    body = {"type": "error", "error": {"type": type_, "message": message}}
    return Reply(status=status, body=orjson.dumps(body), headers=headers)


def rate_limit_reply() -> Reply:
    message = (
        "This request would exceed the rate limit for your organization (org-spendgate-sim) of 50 requests "
        "per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. (simulated)"
    )
    headers = (("retry-after", "1"), ("anthropic-ratelimit-requests-limit", "50"))
    return error_reply(429, "rate_limit_error", message, headers)


def server_error_reply() -> Reply:
    return error_reply(500, "api_error", "Internal server error (simulated)")


def context_overflow_reply(input_tokens: int) -> Reply:
    # Anthropic's real wording; clients such as Claude Code recognise "prompt is too long".
    tokens = max(input_tokens, CONTEXT_WINDOW + 10_000)
    return error_reply(400, "invalid_request_error", f"prompt is too long: {tokens} tokens > {CONTEXT_WINDOW} maximum")


def auth_error_reply(sent_any: bool) -> Reply:
    # The key is never echoed: a simulator's error body can end up in logs and spans.
    message = "invalid x-api-key" if sent_any else "x-api-key header is required"
    return error_reply(401, "authentication_error", message)


def _invalid(message: str) -> BadRequest:
    return BadRequest(error_reply(400, "invalid_request_error", message))


# ---------------------------------------------------------------------------------------------
# Request parsing and validation


def _blocks(content: Any) -> list[dict[str, Any]]:
    """A message's content as a list of blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def thinking_signature(thinking: str) -> str:
    """The signature this simulator gives a thinking block: base64 of a salted SHA-256 of its text."""
    return base64.b64encode(hashlib.sha256(_SIGNATURE_SALT + thinking.encode()).digest()).decode()


def _check_int(body: dict[str, Any], name: str, minimum: int, label: str | None = None) -> None:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid(f"{label or name}: Input should be a valid integer")
    if value < minimum:
        raise _invalid(f"{label or name}: Input should be greater than or equal to {minimum}")


def _check_messages(messages: list[Any], thinking_on: bool) -> None:
    previous_tool_ids: set[str] = set()
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role == "system":
            raise _invalid(
                'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
                'not "system" as an input message role.'
            )
        if role not in ("user", "assistant"):
            raise _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if not isinstance(message.get("content"), str | list):
            raise _invalid(f"messages.{i}.content: Input should be a valid list")
        blocks = _blocks(message.get("content"))
        tool_use_ids: set[str] = set()
        result_ids: set[str] = set()
        for j, block in enumerate(blocks):
            kind = block.get("type")
            if kind == "text" and not block.get("text"):
                raise _invalid(f"messages.{i}.content.{j}.text: text content blocks must be non-empty")
            if kind == "tool_use":
                tool_use_ids.add(str(block.get("id")))
            elif kind == "tool_result":
                tool_id = str(block.get("tool_use_id"))
                if role != "user" or tool_id not in previous_tool_ids:
                    raise _invalid(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{tool_id}. Each `tool_result` block must have a corresponding `tool_use` block in the "
                        "previous message."
                    )
                result_ids.add(tool_id)
            elif kind == "thinking" and block.get("signature") != thinking_signature(str(block.get("thinking", ""))):
                raise _invalid(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
        if previous_tool_ids - result_ids:
            missing = ", ".join(sorted(previous_tool_ids - result_ids))
            raise _invalid(
                f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{missing}. Each `tool_use` block must have a corresponding `tool_result` block in the next message."
            )
        previous_tool_ids = tool_use_ids
    if not messages:
        return
    # With thinking on, the assistant turn being continued through tool results must start with
    # its thinking block: the real API rejects the request otherwise (gateways that drop
    # reasoning on replay hit this).
    last = messages[-1]
    results = [b for b in _blocks(last.get("content")) if b.get("type") == "tool_result"]
    continuing = last.get("role") == "user" and bool(results)
    if thinking_on and continuing and len(messages) >= 2:
        turn = _blocks(messages[-2].get("content"))
        if turn and turn[0].get("type") not in ("thinking", "redacted_thinking"):
            raise _invalid(
                f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or `redacted_thinking`, "
                f"but found `{turn[0].get('type')}`. When `thinking` is enabled, a final `assistant` message "
                "must start with a thinking block. To avoid this requirement, disable `thinking`."
            )


def load_request(raw: bytes, *, count_only: bool = False) -> dict[str, Any]:
    """Parse and check a Messages body (or a count_tokens body); raise :class:`BadRequest` naming what is wrong."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _invalid("There was an error parsing the body of your request: it is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _invalid("Input should be a valid dictionary")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _invalid("model: Field required")
    if not count_only:
        if "max_tokens" not in body:
            raise _invalid("max_tokens: Field required")
        _check_int(body, "max_tokens", 1)
    messages = body.get("messages")
    if messages is None:
        raise _invalid("messages: Field required")
    if not isinstance(messages, list):
        raise _invalid("messages: Input should be a valid list")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise _invalid("system: Input should be a valid string or list")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _invalid("tools: Input should be a valid list")
    thinking = body.get("thinking")
    thinking_on = False
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        thinking_on = True
        _check_int(thinking, "budget_tokens", MIN_THINKING_BUDGET, "thinking.enabled.budget_tokens")
        if not count_only and body["max_tokens"] <= thinking["budget_tokens"]:
            raise _invalid(
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
                "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"
            )
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
            raise _invalid("Thinking may not be enabled when tool_choice forces tool use.")
    _check_messages(messages, thinking_on)
    if not messages and not count_only:
        raise _invalid("messages: at least one message is required")
    return body


# ---------------------------------------------------------------------------------------------
# Token counting and the prompt cache


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def _block_tokens(block: dict[str, Any]) -> int:
    kind = block.get("type")
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "tool_use":
        return _tokens(len(str(block.get("name", ""))) + len(_canonical(block.get("input", {})).decode()))
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            return _tokens(len(content))
        return sum(_block_tokens(b) for b in _blocks(content))
    if kind == "thinking":
        return _tokens(len(str(block.get("thinking", ""))))
    if kind == "redacted_thinking":
        return _tokens(len(str(block.get("data", ""))))
    text = block.get("text")
    return _tokens(len(text)) if isinstance(text, str) else 0


@dataclass(frozen=True, slots=True)
class _Segment:
    """One countable piece of the prompt, in cache order (tools, then system, then messages)."""

    tokens: int
    canonical: bytes
    cache_control: dict[str, Any] | None


def _segments(body: dict[str, Any]) -> Iterator[_Segment]:
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            dumped = _canonical(tool)
            yield _Segment(_tokens(len(dumped)), dumped, tool.get("cache_control"))
    for block in _blocks(body.get("system")):
        yield _Segment(_block_tokens(block), _canonical(block), block.get("cache_control"))
    for message in body["messages"]:
        # The per-message framing counts with the message's first segment.
        overhead = 4
        blocks = _blocks(message.get("content"))
        if not blocks:
            yield _Segment(overhead, _canonical(message), None)
        for block in blocks:
            control = block.get("cache_control")
            yield _Segment(overhead + _block_tokens(block), _canonical([message.get("role"), block]), control)
            overhead = 0


def input_tokens(body: dict[str, Any]) -> int:
    """All input tokens: ceil(chars/4) per text block, tool input and tool (JSON), 4 per message, images fixed."""
    return sum(s.tokens for s in _segments(body))


class PromptCache:
    """Which ``cache_control`` prefixes this simulator has seen: first call writes, later calls read.

    Bounded (least recently used entries go first) and shared by every request of one simulator;
    entries never expire, so a test that repeats a request reliably sees a cache read.
    """

    def __init__(self, entries: int = _CACHE_ENTRIES) -> None:
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._entries = entries

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._seen

    def add(self, digest: bytes) -> None:
        self._seen[digest] = None
        self._seen.move_to_end(digest)
        while len(self._seen) > self._entries:
            self._seen.popitem(last=False)

    def clear(self) -> None:
        self._seen.clear()


@dataclass(frozen=True, slots=True)
class InputUsage:
    """Input tokens as Anthropic reports them: ``uncached`` excludes both cache counts."""

    uncached: int
    cache_write: int
    cache_read: int
    write_ttl: str = "5m"


def input_usage(body: dict[str, Any], cache: PromptCache | None) -> InputUsage:
    """Split the input into uncached / cache write / cache read, and remember the prefixes written.

    Every segment carrying ``cache_control`` is a breakpoint. The longest breakpoint prefix seen
    before is read; the rest up to the last breakpoint is written (with the last one's ``ttl``),
    which is how the real cache behaves. There is no minimum cacheable length, so short test prompts
    cache too.
    """
    digest = hashlib.sha256(str(body["model"]).encode())
    total = 0
    breakpoints: list[tuple[bytes, int, str]] = []
    for segment in _segments(body):
        digest.update(segment.canonical)
        total += segment.tokens
        if isinstance(segment.cache_control, dict):
            breakpoints.append((digest.digest(), total, str(segment.cache_control.get("ttl", "5m"))))
    if not breakpoints or cache is None:
        return InputUsage(total, 0, 0)
    read = max((tokens for key, tokens, _ in breakpoints if key in cache), default=0)
    write = breakpoints[-1][1] - read
    for key, _, _ in breakpoints:
        cache.add(key)
    return InputUsage(total - read - write, write, read, breakpoints[-1][2])


# ---------------------------------------------------------------------------------------------
# The answer


@dataclass(frozen=True, slots=True)
class Block:
    """One content block of the answer. ``pieces`` are its streamed deltas (text, thinking or JSON)."""

    type: str  # "text" | "thinking" | "tool_use"
    pieces: tuple[str, ...]
    id: str | None = None
    name: str | None = None
    signature: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@dataclass(frozen=True, slots=True)
class Answer:
    """The model's answer before it is rendered as a message object or as SSE events."""

    id: str
    model: str
    blocks: tuple[Block, ...]
    stop_reason: str
    stop_sequence: str | None
    usage: dict[str, Any]


def _client_tools(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") in _CLIENT_TOOL_TYPES and isinstance(tool.get("name"), str):
            schema = tool.get("input_schema")
            found.append((tool["name"], schema if isinstance(schema, dict) else {}))
    return found


def _chosen_tools(body: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """The tools to call (or []) and whether a short text comes first (only when the model chose freely)."""
    tools = _client_tools(body)
    messages = body["messages"]
    raw_choice = body.get("tool_choice")
    choice: dict[str, Any] = raw_choice if isinstance(raw_choice, dict) else {"type": "auto"}
    if not tools or choice.get("type") == "none":
        return [], False
    last = messages[-1]
    if last.get("role") == "user" and any(b.get("type") == "tool_result" for b in _blocks(last.get("content"))):
        return [], False  # the tool answered: the model answers in text
    if choice.get("type") == "tool":
        wanted = choice.get("name")
        return [next((t for t in tools if t[0] == wanted), (str(wanted), {}))], False
    count = 1 if choice.get("disable_parallel_tool_use") is True else 2
    return tools[:count], choice.get("type") != "any"


def _cut_at_stop_sequence(deltas: tuple[str, ...], stops: list[str]) -> tuple[tuple[str, ...], str | None]:
    text = "".join(deltas)
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if not hits:
        return deltas, None
    at, stop = min(hits)
    kept: list[str] = []
    used = 0
    for delta in deltas:
        if used + len(delta) >= at:
            if at > used:
                kept.append(delta[: at - used])
            break
        kept.append(delta)
        used += len(delta)
    return tuple(kept), stop


def _words(pieces: tuple[str, ...]) -> int:
    return len("".join(pieces).split())


def plan_answer(body: dict[str, Any], inputs: InputUsage, *, chunks: int = 20) -> Answer:
    """The answer to a validated Messages request: blocks, stop reason and usage."""
    model: str = body["model"]
    digest = hashlib.sha256(
        _canonical({"messages": body["messages"], "model": model, "system": body.get("system")})
    ).digest()
    numbers = _numbers(digest)
    blocks: list[Block] = []
    budget: int = body["max_tokens"]
    thinking_tokens = 0

    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        seed = hashlib.sha256(digest + b"thinking").digest()
        pieces, thinking_tokens, _ = _content_deltas(seed, max(1, chunks // 2), thinking["budget_tokens"])
        text = "".join(pieces)
        blocks.append(Block("thinking", pieces, signature=thinking_signature(text)))
        budget -= thinking_tokens

    calls, preamble = _chosen_tools(body)
    stop_sequence = None
    if calls:
        if preamble:
            seed = hashlib.sha256(digest + b"preamble").digest()
            blocks.append(Block("text", _content_deltas(seed, 2, None)[0]))
        for i, (name, schema) in enumerate(calls):
            arguments = _arguments(schema, numbers)
            tool_id = "toolu_sim" + hashlib.sha256(digest + bytes([i])).hexdigest()[:24]
            # The real API opens every input with an empty fragment; clients must cope.
            blocks.append(Block("tool_use", ("", *_split(arguments)), id=tool_id, name=name))
        stop_reason = "tool_use"
    else:
        deltas, _, truncated = _content_deltas(digest, chunks, budget)
        stops = [s for s in body.get("stop_sequences") or () if isinstance(s, str)]
        deltas, stop_sequence = _cut_at_stop_sequence(deltas, stops)
        if deltas:
            blocks.append(Block("text", deltas))
        stop_reason = "stop_sequence" if stop_sequence else "max_tokens" if truncated else "end_turn"

    output = thinking_tokens + sum(
        _tokens(len(b.text)) if b.type == "tool_use" else _words(b.pieces) for b in blocks if b.type != "thinking"
    )
    usage: dict[str, Any] = {
        "input_tokens": inputs.uncached,
        "cache_creation_input_tokens": inputs.cache_write,
        "cache_read_input_tokens": inputs.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 0 if inputs.write_ttl == "1h" else inputs.cache_write,
            "ephemeral_1h_input_tokens": inputs.cache_write if inputs.write_ttl == "1h" else 0,
        },
        "output_tokens": output,
        "service_tier": "standard",
    }
    if thinking_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": thinking_tokens}
    answer_id = "msg_sim" + digest.hex()[:24]
    return Answer(answer_id, model, tuple(blocks), stop_reason, stop_sequence, usage)


# ---------------------------------------------------------------------------------------------
# Rendering


def _tool_input(block: Block) -> Any:
    return orjson.loads(block.text) if block.text else {}


def message_object(answer: Answer) -> dict[str, Any]:
    """The non-streamed ``message`` object."""
    content: list[dict[str, Any]] = []
    for block in answer.blocks:
        if block.type == "thinking":
            content.append({"type": "thinking", "thinking": block.text, "signature": block.signature})
        elif block.type == "tool_use":
            content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": _tool_input(block)})
        else:
            content.append({"type": "text", "text": block.text})
    return {
        "id": answer.id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": content,
        "stop_reason": answer.stop_reason,
        "stop_sequence": answer.stop_sequence,
        "usage": answer.usage,
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One Anthropic SSE event: ``event: NAME`` then ``data: JSON`` then a blank line."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _block_start(index: int, block: Block) -> bytes:
    if block.type == "thinking":
        opening: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
    elif block.type == "tool_use":
        opening = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
    else:
        opening = {"type": "text", "text": ""}
    return sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening})


def _delta(index: int, block: Block, piece: str) -> bytes:
    if block.type == "thinking":
        delta = {"type": "thinking_delta", "thinking": piece}
    elif block.type == "tool_use":
        delta = {"type": "input_json_delta", "partial_json": piece}
    else:
        delta = {"type": "text_delta", "text": piece}
    return sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def _block_stop(index: int) -> bytes:
    return sse("content_block_stop", {"type": "content_block_stop", "index": index})


def stream_events(answer: Answer) -> tuple[list[bytes], int]:
    """The writes of a streamed answer, and how many of them carry deltas.

    Each write is one content delta, with any ``content_block_stop``/``content_block_start`` it
    needs in front; the first write is ``message_start`` (+ the first block's start and a ``ping``,
    as the real API sends) and the last closes the message. So ``[[sim:drop-after=N]]`` means the
    same as for the OpenAI simulator: the opening write and N delta writes, then a cut.
    """
    usage = answer.usage
    start_usage = {**usage, "output_tokens": 1}
    start_usage.pop("output_tokens_details", None)
    message: dict[str, Any] = {
        "id": answer.id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    head = sse("message_start", {"type": "message_start", "message": message})
    writes: list[bytes] = []
    pending = b""  # stop/start events waiting for the next delta write
    for index, block in enumerate(answer.blocks):
        opening = (_block_stop(index - 1) if index else b"") + _block_start(index, block)
        if index == 0:
            head += opening + sse("ping", {"type": "ping"})
        else:
            pending += opening
        pieces: list[bytes] = [_delta(index, block, p) for p in block.pieces]
        if block.type == "thinking":
            signature = {"type": "signature_delta", "signature": block.signature}
            event = {"type": "content_block_delta", "index": index, "delta": signature}
            pieces.append(sse("content_block_delta", event))
        for piece in pieces:
            writes.append(pending + piece)
            pending = b""
    final_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}
    final_usage["output_tokens"] = usage["output_tokens"]
    if "output_tokens_details" in usage:
        final_usage["output_tokens_details"] = usage["output_tokens_details"]
    tail = (
        pending
        + (_block_stop(len(answer.blocks) - 1) if answer.blocks else b"")
        + sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence},
                "usage": final_usage,
            },
        )
        + sse("message_stop", {"type": "message_stop"})
    )
    return [head, *writes, tail], len(writes)


# ---------------------------------------------------------------------------------------------
# Putting it together


def build_reply(raw: bytes, *, cache: PromptCache | None, chunks: int = 20) -> Reply:
    """The complete reply to a raw ``/v1/messages`` body: error, message object, or SSE writes.

    ``cache`` is read and updated (the only state); ``None`` reports every prefix as a first write.
    """
    try:
        body = load_request(raw)
    except BadRequest as exc:
        return exc.reply
    markers = find_markers(body["messages"])
    if markers.context_overflow:
        return context_overflow_reply(input_tokens(body))
    if markers.rate_limit:
        return rate_limit_reply()
    if markers.server_error:
        return server_error_reply()

    answer = plan_answer(body, input_usage(body, cache), chunks=chunks)
    if body.get("stream") is True:
        events, delta_events = stream_events(answer)
        return Reply(
            events=tuple(events),
            delta_events=delta_events,
            drop_after=markers.drop_after,
            slow_ms=markers.slow_ms,
        )
    delta_events = sum(len(b.pieces) + (b.type == "thinking") for b in answer.blocks)
    return Reply(
        body=orjson.dumps(message_object(answer)),
        delta_events=delta_events,
        drop_after=markers.drop_after,
        slow_ms=markers.slow_ms,
    )


def count_tokens_reply(raw: bytes) -> Reply:
    """``/v1/messages/count_tokens``: ``{"input_tokens": N}`` (the whole input, cache or not)."""
    try:
        body = load_request(raw, count_only=True)
    except BadRequest as exc:
        return exc.reply
    return Reply(body=orjson.dumps({"input_tokens": input_tokens(body)}))
