"""The Anthropic SSE tap: passes a Messages stream through untouched while noting usage and the stop reason.

Used when an Anthropic client (``/v1/messages``) is served by an Anthropic upstream: the bytes go
to the client as they arrive and nothing is parsed per chunk. Once the stream is over,
:meth:`AnthropicTap.finish` reads only the events that matter for the span: ``message_start``
(id, model, input and cache tokens), ``message_delta`` (stop reason, final counts) and ``error``.
Only when the stream was cut before ``message_delta`` is the whole kept stream parsed, to estimate
the output tokens from what was streamed.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from spendgate_proxy.call.openai_tap import MAX_KEPT_BYTES
from spendgate_proxy.formats.anthropic import AnthropicSSEParser, usage_from_anthropic
from spendgate_proxy.formats.canonical import TextDelta, ThinkingDelta, ToolCallDelta, finish_reason_from_anthropic
from spendgate_proxy.formats.canonical import Usage as CanonicalUsage
from spendgate_proxy.formats.estimate import count_tokens

if TYPE_CHECKING:
    from spendgate_proxy.telemetry.spans import CallRecord

_TAIL_CHUNKS = 64
"""Chunks kept past ``MAX_KEPT_BYTES``: ``message_delta`` comes at the very end."""
_WANTED = (b"message_start", b"message_delta", b"error")


class AnthropicTap:
    """Watches one Anthropic SSE stream; ``feed`` keeps a reference, ``finish`` reads the results."""

    __slots__ = (
        "_chunks",
        "_kept",
        "_tail",
        "error",
        "response_id",
        "response_model",
        "stop_reason",
        "unkept",
        "usage",
    )

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._tail: deque[bytes] = deque(maxlen=_TAIL_CHUNKS)
        self._kept = 0
        self.unkept = 0
        self.usage: CanonicalUsage | None = None
        self.stop_reason: str | None = None
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.error: Mapping[str, Any] | None = None

    def feed(self, chunk: bytes) -> bytes:
        """Keep a reference to ``chunk``; it goes on untouched."""
        if self._kept < MAX_KEPT_BYTES:
            self._chunks.append(chunk)
            self._kept += len(chunk)
        else:
            self.unkept += len(chunk)
            self._tail.append(chunk)
        return chunk

    def flush(self) -> bytes:
        """Nothing is held back: every chunk went on as it came."""
        return b""

    def fill(self, rec: CallRecord) -> None:
        """Put what the stream said on the span record (``finish`` first)."""
        self.finish()
        if self.usage is not None:
            rec.usage = self.usage
            rec.usage_estimated = self.estimated
        reason = finish_reason_from_anthropic(self.stop_reason)
        rec.finish_reasons = (reason,) if reason else ()
        rec.response_id, rec.response_model = self.response_id, self.response_model
        if self.error is not None and rec.error_type is None:
            rec.error_type = str(self.error.get("type") or "stream_error")
            rec.error_message = str(self.error.get("message") or "")[:500]

    def output_estimate(self) -> int:
        """0: a stream cut before its usage is estimated in ``finish`` already (input from
        ``message_start``); one without any usage never started."""
        return 0

    def finish(self) -> None:
        """Parse the few events that matter; call once the stream is over, however it ended."""
        if not self._chunks:
            return
        raw: dict[str, Any] = {}
        ended = False
        for data in (b"".join(self._chunks), b"".join(self._tail)):
            for event in data.replace(b"\r\n", b"\n").split(b"\n\n"):
                head = event[:80]
                if not any(name in head for name in _WANTED):
                    continue
                payload = _payload(event)
                if payload is None:
                    continue
                kind = payload.get("type")
                if kind == "message_start" and isinstance(payload.get("message"), dict):
                    message = payload["message"]
                    self.response_id = message.get("id")
                    self.response_model = message.get("model")
                    if isinstance(message.get("usage"), dict):
                        raw.update(message["usage"])
                elif kind == "message_delta":
                    ended = True
                    if isinstance(payload.get("usage"), dict):
                        raw.update({k: v for k, v in payload["usage"].items() if v is not None})
                    delta = payload.get("delta")
                    if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                        self.stop_reason = delta["stop_reason"]
                elif kind == "error" and isinstance(payload.get("error"), dict):
                    self.error = payload["error"]
        if raw:
            self.usage = usage_from_anthropic(raw)
        if not ended and self.usage is not None:
            # Cut before the final counts: what was streamed is what will be billed.
            self.usage = CanonicalUsage(
                input_tokens=self.usage.input_tokens,
                output_tokens=self._estimate_output(),
                cache_read_tokens=self.usage.cache_read_tokens,
                cache_write_tokens=self.usage.cache_write_tokens,
            )
        self._chunks.clear()
        self._tail.clear()

    @property
    def estimated(self) -> bool:
        """True when the output count is an estimate (the stream ended before ``message_delta``)."""
        return self.stop_reason is None

    def _estimate_output(self) -> int:
        parser = AnthropicSSEParser()
        pieces: list[str] = []
        for event in parser.feed(b"".join(self._chunks)) + parser.close():
            if isinstance(event, TextDelta | ThinkingDelta):
                pieces.append(event.text)
            elif isinstance(event, ToolCallDelta):
                pieces.append(event.arguments_fragment)
        scale = (self._kept + self.unkept) / self._kept if self._kept else 1.0
        return math.ceil(count_tokens("".join(pieces)) * scale)


def _payload(event: bytes) -> dict[str, Any] | None:
    lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    try:
        obj = orjson.loads(b"\n".join(lines))
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None
