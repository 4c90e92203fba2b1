"""Turn a Chat Completions request body into the simulator's reply, byte for byte, with no I/O.

Everything here is a pure function of the request body (and two config values), so the same body
always gives the same bytes: the ``id`` comes from a hash of the canonical model + messages,
``created`` and ``system_fingerprint`` are constants, and the answer's words are drawn from a
fixed list by a generator seeded with that hash. Tests rely on this to compare a direct call with a
call through the proxy.

The entry point is :func:`build_reply`; the smaller functions are public so they can be tested
on their own.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

CREATED = 1767225600
"""``created`` of every answer and model (2026-01-01T00:00:00Z): a constant, for byte-identical output."""

SYSTEM_FINGERPRINT = "fp_spendgatesim"
OWNED_BY = "spendgate-simulator"
CONTEXT_WINDOW = 128_000
"""Only used in the wording of the ``[[sim:context-overflow]]`` error."""

# Ordinary words, so demo transcripts look like prose and one word is one completion token.
_WORD_TEXT = """
the request was handled by a simulated model that answers with plain words so token counts stay easy
to check while streaming through any gateway proxy or client library under test today each chunk
carries few of them and final one closes answer clear finish reason budgets spend teams developers
repository branch feature latency cached usage
"""
_WORDS: tuple[str, ...] = tuple(_WORD_TEXT.split())

MARKER_RE = re.compile(r"\[\[sim:([a-z0-9-]+)(?:=(\d+))?\]\]")
"""``[[sim:NAME]]`` or ``[[sim:NAME=N]]`` in the last user message; see docs/simulator.md."""

_REASONING_MODEL_RE = re.compile(r"o\d|gpt-5")


# ---------------------------------------------------------------------------------------------
# Result types


@dataclass(frozen=True, slots=True)
class Reply:
    """What the HTTP layer sends: an error or answer body, or the SSE events of a streamed answer.

    ``delta_events`` counts the events after the first (role) event that carry content or tool-call
    deltas; ``drop_after`` and ``slow_ms`` come from fault markers and tell the HTTP layer to cut the
    connection after that many delta events or to wait that long between events.
    """

    status: int = 200
    body: bytes = b""
    events: tuple[bytes, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    delta_events: int = 0
    drop_after: int | None = None
    slow_ms: float | None = None

    @property
    def stream(self) -> bool:
        return bool(self.events)


@dataclass(frozen=True, slots=True)
class Markers:
    """Fault markers found in the last user message."""

    rate_limit: bool = False
    server_error: bool = False
    context_overflow: bool = False
    drop_after: int | None = None
    slow_ms: float | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Answer:
    """The model's answer before it is rendered as JSON or as SSE events."""

    id: str
    model: str
    content_deltas: tuple[str, ...]
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    usage: dict[str, Any]


class BadRequest(Exception):
    """The request cannot be answered; ``reply`` is the OpenAI-style 400 to send back."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.body.decode())
        self.reply = reply


# ---------------------------------------------------------------------------------------------
# Errors, in OpenAI's shapes


def error_reply(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    """An OpenAI-style error: ``{"error": {"message", "type", "param", "code"}}``."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return Reply(status=status, body=orjson.dumps(body), headers=headers)


def rate_limit_reply(model: str) -> Reply:
    # OpenAI's real 429: the type names the exhausted limit, the code is always rate_limit_exceeded.
    message = (
        f"Rate limit reached for {model} in organization org-spendgate-sim on requests per min (RPM): "
        "Limit 60, Used 60, Requested 1. Please try again in 1s. (simulated)"
    )
    return error_reply(429, message, "requests", None, "rate_limit_exceeded", (("retry-after", "1"),))


def server_error_reply() -> Reply:
    message = "The server had an error while processing your request. Sorry about that! (simulated)"
    return error_reply(500, message, "server_error")


def context_overflow_reply(prompt_tokens: int) -> Reply:
    message = (
        f"This model's maximum context length is {CONTEXT_WINDOW} tokens. However, your messages "
        f"resulted in {max(prompt_tokens, CONTEXT_WINDOW + 1)} tokens. "
        "Please reduce the length of the messages."
    )
    return error_reply(400, message, "invalid_request_error", "messages", "context_length_exceeded")


def auth_error_reply(sent_any: bool) -> Reply:
    # The key is never echoed: a simulator's error body can end up in logs and spans.
    if sent_any:
        return error_reply(401, "Incorrect API key provided.", param=None, code="invalid_api_key")
    message = (
        "You didn't provide an API key. You need to provide your API key in an Authorization header "
        "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    )
    return error_reply(401, message)


# ---------------------------------------------------------------------------------------------
# Request parsing and validation


def _type_name(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _invalid(message: str, param: str | None = None, code: str | None = None) -> BadRequest:
    return BadRequest(error_reply(400, message, param=param, code=code))


def load_request(raw: bytes) -> dict[str, Any]:
    """Parse and check a request body; raise :class:`BadRequest` naming the first thing wrong."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _invalid(
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON."
        ) from None
    if not isinstance(body, dict):
        raise _invalid(f"Invalid type for request body: expected an object, but got {_type_name(body)}.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("you must provide a model parameter", "model", "missing_required_parameter")
    messages = body.get("messages")
    if messages is None:
        raise _invalid("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    if not isinstance(messages, list):
        got = _type_name(messages)
        raise _invalid(
            f"Invalid type for 'messages': expected an array of objects, but got {got} instead.",
            "messages",
            "invalid_type",
        )
    if not messages:
        raise _invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "messages",
            "empty_array",
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            got = _type_name(message)
            raise _invalid(
                f"Invalid type for 'messages[{i}]': expected an object, but got {got} instead.",
                f"messages[{i}]",
                "invalid_type",
            )
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            got = _type_name(value)
            raise _invalid(
                f"Invalid type for '{name}': expected an integer, but got {got} instead.",
                name,
                "invalid_type",
            )
        if value < 1:
            raise _invalid(
                f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {value} instead.",
                name,
                "integer_below_min_value",
            )
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        got = _type_name(tools)
        raise _invalid(
            f"Invalid type for 'tools': expected an array of objects, but got {got} instead.",
            "tools",
            "invalid_type",
        )
    return body


def message_text(message: dict[str, Any]) -> str:
    """The text of a message: its string content, or its text parts joined (images etc. ignored)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def find_markers(messages: list[dict[str, Any]]) -> Markers:
    """Fault markers in the last ``user`` message (earlier turns are history, not instructions)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            text = message_text(message)
            break
    else:
        return Markers()
    if "[[sim:" not in text:
        return Markers()
    found: dict[str, str] = {}
    for name, value in MARKER_RE.findall(text):
        found.setdefault(name, value)
    return Markers(
        rate_limit="429" in found,
        server_error="500" in found,
        context_overflow="context-overflow" in found,
        drop_after=int(found["drop-after"]) if found.get("drop-after") else None,
        slow_ms=float(found["slow"]) if found.get("slow") else None,
    )


# ---------------------------------------------------------------------------------------------
# The answer


def _canonical(value: object) -> bytes:
    """A key-order-independent dump, so a proxy that re-serialises the body changes nothing."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits, which orjson will not write
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def request_digest(model: str, messages: list[Any]) -> bytes:
    """SHA-256 of the canonical model + messages: the seed of the id and of the words."""
    return hashlib.sha256(_canonical({"messages": messages, "model": model})).digest()


def _numbers(seed: bytes) -> Iterator[int]:
    # A 64-bit LCG (Knuth's MMIX constants): explicit, so the output never depends on the
    # Python version's random module, and far cheaper than hashing per word.
    state = int.from_bytes(seed[:8], "big")
    while True:
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        yield state >> 33


def is_reasoning_model(model: str) -> bool:
    """o1/o3/o4-mini/gpt-5...: they bill hidden reasoning tokens. A ``prefix/`` alias is ignored."""
    return _REASONING_MODEL_RE.match(model.rsplit("/", 1)[-1].lower()) is not None


def prompt_tokens(messages: list[dict[str, Any]], tools: list[Any] | None) -> int:
    """ceil(text chars / 4) + 4 per message + ceil(tools JSON chars / 4): simple and checkable."""
    chars = sum(len(message_text(m)) for m in messages)
    tokens = math.ceil(chars / 4) + 4 * len(messages)
    if tools:
        tokens += math.ceil(len(_canonical(tools).decode()) / 4)
    return tokens


def _function_tools(tools: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(name, parameters schema)`` of each function tool, nested or flat (or Anthropic-shaped)."""
    found = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            continue
        spec = tool["function"] if isinstance(tool.get("function"), dict) else tool
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            continue
        schema = spec.get("parameters", spec.get("input_schema"))
        found.append((name, schema if isinstance(schema, dict) else {}))
    return found


def _chosen_tools(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The tools to call, or [] to answer with text."""
    tools = _function_tools(body.get("tools") or [])
    messages = body["messages"]
    choice = body.get("tool_choice")
    if not tools or choice == "none" or messages[-1].get("role") == "tool":
        return []
    if isinstance(choice, dict):
        if choice.get("type") == "none":
            return []
        spec = choice["function"] if isinstance(choice.get("function"), dict) else choice
        wanted = spec.get("name")
        if isinstance(wanted, str) and wanted:
            # A named tool the request did not declare is still called (with no arguments):
            # a simulator should not be stricter than needed.
            return [next((t for t in tools if t[0] == wanted), (wanted, {}))]
    if body.get("parallel_tool_calls") is not False and len(tools) >= 2:
        return tools[:2]
    return tools[:1]


def _arguments(schema: dict[str, Any], numbers: Iterator[int]) -> str:
    """A small JSON object with a plausible value for each property, in sorted property order."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return "{}"
    args: dict[str, Any] = {}
    for name in sorted(properties):
        prop = properties[name] if isinstance(properties[name], dict) else {}
        enum = prop.get("enum")
        if isinstance(enum, list) and enum:
            args[name] = enum[0]
            continue
        kind = prop.get("type", "string")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind in ("integer", "number"):
            args[name] = 1
        elif kind == "boolean":
            args[name] = True
        elif kind == "array":
            args[name] = []
        elif kind == "object":
            args[name] = {}
        elif kind == "null":
            args[name] = None
        else:
            args[name] = _WORDS[next(numbers) % len(_WORDS)]
    return orjson.dumps(args).decode()


_POOL_SIZE = 4096


@functools.cache
def _pools() -> tuple[tuple[str, ...], tuple[int, ...]]:
    """A fixed sequence of words and of delta sizes (2-4), drawn once: answers are windows into it.

    Drawing per request cost more than everything else in the reply put together; a window at a
    hash-chosen offset is just as deterministic and costs a slice.
    """
    numbers = _numbers(b"spendgate-simulator")
    words = tuple(_WORDS[next(numbers) % len(_WORDS)] for _ in range(_POOL_SIZE))
    sizes = tuple(2 + next(numbers) % 3 for _ in range(_POOL_SIZE))
    return words, sizes


def _window(pool: tuple[Any, ...], start: int, n: int) -> tuple[Any, ...]:
    if start + n <= len(pool):
        return pool[start : start + n]
    return tuple(pool[(start + i) % len(pool)] for i in range(n))  # only for very long answers


def _content_deltas(digest: bytes, chunks: int, budget: int | None) -> tuple[tuple[str, ...], int, bool]:
    """``chunks`` deltas of 2-4 words each, cut to at most ``budget`` words: (deltas, words, cut?)."""
    word_pool, size_pool = _pools()
    sizes = list(_window(size_pool, int.from_bytes(digest[8:12], "big") % _POOL_SIZE, chunks))
    total = sum(sizes)
    truncated = budget is not None and budget < total
    if budget is not None and truncated:
        kept: list[int] = []
        left = budget
        for size in sizes:
            if left <= 0:
                break
            kept.append(min(size, left))
            left -= kept[-1]
        sizes = kept
        total = budget
    words = list(_window(word_pool, int.from_bytes(digest[12:16], "big") % _POOL_SIZE, total))
    if words:
        words[0] = words[0].capitalize()
        if not truncated:
            words[-1] += "."
    deltas = []
    at = 0
    for size in sizes:
        deltas.append((" " if at else "") + " ".join(words[at : at + size]))
        at += size
    return tuple(deltas), total, truncated


def _usage(prompt: int, visible: int, reasoning: int, cached_ratio: float) -> dict[str, Any]:
    completion = visible + reasoning
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": math.floor(prompt * cached_ratio), "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def plan_answer(body: dict[str, Any], *, chunks: int = 20, cached_ratio: float = 0.0) -> Answer:
    """The answer to a validated request: text deltas or tool calls, finish reason and usage."""
    model: str = body["model"]
    messages: list[dict[str, Any]] = body["messages"]
    digest = request_digest(model, messages)
    numbers = _numbers(digest)
    reasoning_factor = 2 if is_reasoning_model(model) else 0
    prompt = prompt_tokens(messages, body.get("tools"))

    calls = _chosen_tools(body)
    if calls:
        tool_calls = tuple(
            ToolCall(
                id="call_" + hashlib.sha256(digest + bytes([i])).hexdigest()[:24],
                name=name,
                arguments=_arguments(schema, numbers),
            )
            for i, (name, schema) in enumerate(calls)
        )
        visible = sum(math.ceil(len(call.arguments) / 4) for call in tool_calls)
        usage = _usage(prompt, visible, reasoning_factor * visible, cached_ratio)
        return Answer("chatcmpl-sim" + digest.hex()[:24], model, (), tool_calls, "tool_calls", usage)

    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    # The cap covers reasoning tokens too, as for real reasoning models: each visible word
    # costs 1 + reasoning_factor tokens, so a small cap can leave no visible text at all.
    budget = None if limit is None else limit // (1 + reasoning_factor)
    deltas, words, truncated = _content_deltas(digest, chunks, budget)
    finish = "length" if truncated else "stop"
    usage = _usage(prompt, words, reasoning_factor * words, cached_ratio)
    return Answer("chatcmpl-sim" + digest.hex()[:24], model, deltas, (), finish, usage)


# ---------------------------------------------------------------------------------------------
# Rendering


def completion_object(answer: Answer) -> dict[str, Any]:
    """The non-streamed ``chat.completion`` object (usage always included)."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if answer.tool_calls else "".join(answer.content_deltas),
        "refusal": None,
    }
    if answer.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in answer.tool_calls
        ]
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": CREATED,
        "model": answer.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish_reason}],
        "usage": answer.usage,
    }


def _split(text: str, pieces: int = 4) -> list[str]:
    size = max(1, math.ceil(len(text) / pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def stream_events(answer: Answer, *, include_usage: bool) -> tuple[list[bytes], int]:
    """The SSE events of a streamed answer, and how many of them carry content/tool deltas.

    Each chunk is assembled from a pre-encoded prefix and suffix around its delta: byte for byte
    what ``orjson.dumps`` gives for the whole chunk object (a unit test checks that), at a
    fraction of the cost.
    """
    envelope = (
        b'{"id":'
        + orjson.dumps(answer.id)
        + b',"object":"chat.completion.chunk","created":'
        + str(CREATED).encode()
        + b',"model":'
        + orjson.dumps(answer.model)
        + b',"system_fingerprint":'
        + orjson.dumps(SYSTEM_FINGERPRINT)
    )
    head = b"data: " + envelope + b',"choices":[{"index":0,"delta":'
    usage_null = b',"usage":null' if include_usage else b""
    tail = b',"logprobs":null,"finish_reason":null}]' + usage_null + b"}\n\n"

    role = {"role": "assistant", "content": None if answer.tool_calls else "", "refusal": None}
    events = [head + orjson.dumps(role) + tail]
    for text in answer.content_deltas:
        events.append(head + orjson.dumps({"content": text}) + tail)
    for index, call in enumerate(answer.tool_calls):
        opening = {
            "tool_calls": [
                {
                    "index": index,
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
            ]
        }
        events.append(head + orjson.dumps(opening) + tail)
        for piece in _split(call.arguments):
            fragment = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            events.append(head + orjson.dumps(fragment) + tail)
    delta_events = len(events) - 1

    events.append(
        head
        + b'{},"logprobs":null,"finish_reason":'
        + orjson.dumps(answer.finish_reason)
        + b"}]"
        + usage_null
        + b"}\n\n"
    )
    if include_usage:
        events.append(b"data: " + envelope + b',"choices":[],"usage":' + orjson.dumps(answer.usage) + b"}\n\n")
    events.append(b"data: [DONE]\n\n")
    return events, delta_events


# ---------------------------------------------------------------------------------------------
# Putting it together


def build_reply(raw: bytes, *, chunks: int = 20, cached_ratio: float = 0.0) -> Reply:
    """The complete reply to a raw ``/chat/completions`` body: error, JSON answer, or SSE events."""
    try:
        body = load_request(raw)
    except BadRequest as exc:
        return exc.reply
    markers = find_markers(body["messages"])
    if markers.context_overflow:
        return context_overflow_reply(prompt_tokens(body["messages"], body.get("tools")))
    if markers.rate_limit:
        return rate_limit_reply(body["model"])
    if markers.server_error:
        return server_error_reply()

    answer = plan_answer(body, chunks=chunks, cached_ratio=cached_ratio)
    if body.get("stream") is True:
        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
        events, delta_events = stream_events(answer, include_usage=include_usage)
        return Reply(
            events=tuple(events),
            delta_events=delta_events,
            drop_after=markers.drop_after,
            slow_ms=markers.slow_ms,
        )
    # delta_events is kept for a non-streamed answer too: the HTTP layer waits as long as the
    # stream would have taken, so ttft/chunk delays mean the same thing in both modes.
    delta_events = len(answer.content_deltas) + sum(1 + len(_split(c.arguments)) for c in answer.tool_calls)
    return Reply(
        body=orjson.dumps(completion_object(answer)),
        delta_events=delta_events,
        drop_after=markers.drop_after,
        slow_ms=markers.slow_ms,
    )


def models_object(models: tuple[str, ...]) -> dict[str, Any]:
    """``GET /v1/models``: OpenAI's list shape."""
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": CREATED, "owned_by": OWNED_BY} for m in models],
    }
