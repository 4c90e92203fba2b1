"""The OpenAI SSE tap: passes a Chat Completions stream through while noting usage and finish reasons.

Every upstream chunk is forwarded the moment it arrives. The tap keeps the bytes on the side
(bounded, ``MAX_KEPT_BYTES``) and, once the stream is over, parses JSON only for the few events
that matter: the first (response id and model), those carrying a ``finish_reason`` and the usage
event. When a stream ends without usage (client disconnect, upstream cut), the completion is
estimated from the text that was streamed.

When the client did not ask for usage the proxy asked anyway; then the tap works event by event:
it drops the usage-only event and the ``"usage":null`` fields the provider added because of it,
so the client gets exactly the bytes it would have had without the proxy.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import orjson

from spendgate_proxy.formats.estimate import count_tokens
from spendgate_proxy.formats.openai import usage_from_openai
from spendgate_proxy.telemetry.redact import redact

if TYPE_CHECKING:
    from spendgate_proxy.formats.canonical import Usage
    from spendgate_proxy.telemetry.spans import CallRecord

MAX_KEPT_BYTES = 1 << 20
"""Bytes kept for estimation per stream; past this, the rest is extrapolated from byte counts."""
_TAIL_CHUNKS = 64
"""Chunks kept past ``MAX_KEPT_BYTES``, so the usage event at the very end is still found."""

_USAGE_MARKS = (b'"usage":{', b'"usage": {')
_FINISH_MARKS = (b'"finish_reason":"', b'"finish_reason": "')
_NULL_USAGE = (b',"usage":null', b'"usage":null,', b', "usage": null', b'"usage": null, ')


def _data(event: bytes) -> bytes | None:
    """The payload of an event's ``data:`` line(s); None for comments and keep-alives."""
    if event.startswith(b"data:") and b"\n" not in event:
        return event[5:].lstrip()
    lines = [ln[5:].lstrip() for ln in event.splitlines() if ln.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


class OpenAITap:
    """Watches one Chat Completions SSE stream; ``feed`` returns the bytes to send on.

    Passthrough mode (the client asked for usage, as Cursor does) does nothing per chunk but keep
    a reference to it; ``finish`` then finds the few events that matter with ``bytes.find`` over
    the whole stream, once. Strip mode rewrites the stream as it passes: it forwards whole events
    only, and finds the ones to note or drop with ``bytes.find`` over each block of events.
    Call ``finish`` once the stream is over, however it ended, before reading the results.
    """

    __slots__ = (
        "_buf",
        "_chunks",
        "_finished",
        "_kept_bytes",
        "_sep",
        "_tail",
        "done",
        "error",
        "events",
        "finish_reasons",
        "response_id",
        "response_model",
        "strip_usage",
        "unkept_bytes",
        "usage",
    )

    def __init__(self, strip_usage: bool) -> None:
        self.strip_usage = strip_usage
        self.usage: Usage | None = None
        self.finish_reasons: list[str] = []
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.error: dict[str, Any] | None = None
        self.done = False
        self.events: list[bytes] = []
        self.unkept_bytes = 0
        self._kept_bytes = 0
        self._chunks: list[bytes] = []
        self._tail: list[bytes] = []
        self._buf = b""
        self._sep = b"\n\n"
        self._finished = False

    def feed(self, chunk: bytes) -> bytes:
        if not self.strip_usage:
            if self._kept_bytes < MAX_KEPT_BYTES:
                self._chunks.append(chunk)
                self._kept_bytes += len(chunk)
            else:  # past the bound keep only a tail: the usage event comes last
                self.unkept_bytes += len(chunk)
                self._tail.append(chunk)
                if len(self._tail) > _TAIL_CHUNKS:
                    del self._tail[0]
            return chunk
        buf = self._buf + chunk if self._buf else chunk
        if not self._chunks and not self.unkept_bytes and b"\r\n" in buf:
            self._sep = b"\r\n\r\n"  # decided before the first event: some servers use CRLF
        sep = self._sep
        cut = buf.rfind(sep)
        if cut == -1:
            self._buf = buf  # no complete event yet
            return b""
        cut += len(sep)
        block, self._buf = buf[:cut], buf[cut:]
        # Whole events only, as one block: the few events that matter are found with ``find``
        # (C speed) instead of a Python loop over every event, which on a fast provider's first
        # read (a dozen events) delayed the first byte to the client by tens of microseconds.
        self._keep(block)
        drops = self._see_block(block)
        if drops:
            pieces, at = [], 0
            for begin, end in drops:
                pieces.append(block[at:begin])
                at = end
            pieces.append(block[at:])
            block = b"".join(pieces)
        for mark in _NULL_USAGE:
            if mark in block:
                block = block.replace(mark, b"")
        return block

    def _see_block(self, block: bytes) -> list[tuple[int, int]]:
        """Strip mode: note what the complete events in ``block`` say; the (begin, end) spans of
        usage-only events the client did not ask for, in order."""
        sep = self._sep
        step = len(sep)
        if self.response_id is None:  # the first JSON event carries the response id and model
            pos = 0
            while pos < len(block):
                end = block.find(sep, pos)
                obj = _event_json(block[pos:end])
                if obj is not None:
                    self._note_first(obj)
                    break
                pos = end + step
        if b"[DONE]" + sep in block:
            self.done = True
        drops: list[tuple[int, int]] = []
        for start in sorted(self._marked(block, (*_USAGE_MARKS, *_FINISH_MARKS, b'"error"'))):
            begin, end = self._event_at(block, start)
            if not self._note(_event_json(block[begin:end])):
                drops.append((begin, end + step))
        return drops

    def _marked(self, data: bytes, marks: tuple[bytes, ...]) -> set[int]:
        """Where the events holding any of ``marks`` start: the separator before each, -1 for the first."""
        sep = self._sep
        starts: set[int] = set()
        for mark in marks:
            at = data.find(mark)
            while at != -1:
                starts.add(data.rfind(sep, 0, at))
                at = data.find(mark, at + len(mark))
        return starts

    def _event_at(self, data: bytes, start: int) -> tuple[int, int]:
        """The bounds of the event after the separator at ``start`` (-1: the first event)."""
        begin = start + len(self._sep) if start != -1 else 0
        end = data.find(self._sep, begin)
        return begin, end if end != -1 else len(data)

    def _keep(self, data: bytes) -> None:
        """Strip mode: keep ``data`` for estimates while under ``MAX_KEPT_BYTES``, else count it."""
        if self._kept_bytes < MAX_KEPT_BYTES:
            self._chunks.append(data)
            self._kept_bytes += len(data)
        else:
            self.unkept_bytes += len(data)

    def _note_first(self, obj: dict[str, Any]) -> None:
        """The response id and model, from the first JSON event."""
        if self.response_id is None:
            self.response_id = obj.get("id") or ""
            self.response_model = obj.get("model")

    def _note(self, obj: dict[str, Any] | None) -> bool:
        """Note an event's error, finish reasons and usage (both modes); False for a usage-only
        event, which strip mode drops."""
        if obj is None:
            return True
        if isinstance(obj.get("error"), dict):
            self.error = obj["error"]
        for choice in obj.get("choices") or ():
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if reason:
                self.finish_reasons.append(reason)
        if isinstance(obj.get("usage"), dict):
            self.usage = usage_from_openai(obj["usage"])
            if not obj.get("choices"):
                return False
        return True

    def flush(self) -> bytes:
        """At end of stream: what is still to send of an unterminated last event.

        In passthrough mode those bytes already went out with their chunk, so nothing is returned.
        """
        rest, self._buf = self._buf, b""
        if rest.strip():
            self._see(rest)
        return rest if self.strip_usage else b""

    def finish(self) -> None:
        """Work out usage, finish reasons, id, model and errors (passthrough mode); idempotent.

        Only the first event and those the marks point at are sliced out and parsed; the stream is
        split into ``events`` only when ``streamed_text`` needs them (an estimate), not per call.
        """
        if self.strip_usage or not self._chunks or self._finished:
            return
        self._finished = True
        head = b"".join(self._chunks)
        if head.find(b"\r\n\r\n", 0, 4096) != -1:
            self._sep = b"\r\n\r\n"
        sep = self._sep
        pos = 0
        while True:  # the first non-blank event (blank pieces are skipped, as a split would)
            end = head.find(sep, pos)
            piece = head[pos:] if end == -1 else head[pos:end]
            if end == -1 or piece.strip():
                break
            pos = end + len(sep)
        first = _event_json(piece) if piece.strip() else None
        if first is not None:
            self._note_first(first)
        tail = b"".join(self._tail)
        for data in (head, tail) if tail else (head,):
            self._scan(data)
        self.done = (tail or head).rstrip().endswith(b"[DONE]")

    def _scan(self, data: bytes) -> None:
        """Parse only the events that carry a usage object, a finish reason or an error."""
        starts = self._marked(data, (*_FINISH_MARKS, b'"error"'))
        for mark in _USAGE_MARKS:
            # The last usage object wins, so only the last one needs finding: it is at the very
            # end, so searching backwards reads a few hundred bytes instead of the whole stream.
            at = data.rfind(mark)
            if at != -1:
                starts.add(data.rfind(self._sep, 0, at))
        for start in sorted(starts):
            begin, end = self._event_at(data, start)
            self._note(_event_json(data[begin:end]))

    def _see(self, event: bytes) -> bool:
        """Strip mode, an unterminated last event: note what it says (as ``_see_block``)."""
        self._keep(event)
        if event.endswith(b"[DONE]"):
            self.done = True
            return True
        obj = _event_json(event)
        if obj is not None:
            self._note_first(obj)
        return self._note(obj)

    def fill(self, rec: CallRecord) -> None:
        """Put what the stream said on the span record (``finish`` first)."""
        self.finish()
        if self.finish_reasons:
            rec.finish_reasons = tuple(self.finish_reasons)
        rec.response_id = self.response_id
        rec.response_model = self.response_model
        rec.usage = self.usage
        if self.error is not None and rec.error_type is None:
            rec.error_type = str(self.error.get("code") or self.error.get("type") or "stream_error")
            rec.error_message = str(self.error.get("message") or "")[:500]
        if rec.output_text is not None:
            rec.output_text = redact(self.streamed_text()[0])

    def output_estimate(self) -> int:
        """Output tokens estimated from the streamed text (scaled past ``MAX_KEPT_BYTES``)."""
        text, scale = self.streamed_text()
        return math.ceil(count_tokens(text) * scale)

    def streamed_text(self) -> tuple[str, float]:
        """Text the model produced so far (content, reasoning, tool arguments) and a scale factor.

        The factor is > 1 when events past ``MAX_KEPT_BYTES`` were not kept: multiply an estimate
        from the text by it.
        """
        self.finish()
        if not self.events and self._chunks:
            self.events = [e for e in b"".join(self._chunks).split(self._sep) if e.strip()]
        pieces: list[str] = []
        for event in self.events:
            obj = _event_json(event)
            for choice in (obj.get("choices") or ()) if obj is not None else ():
                delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
                for name in ("content", "reasoning_content", "reasoning", "refusal"):
                    value = delta.get(name)
                    if isinstance(value, str):
                        pieces.append(value)
                for call in delta.get("tool_calls") or ():
                    fn = call.get("function") or {}
                    pieces.append(fn.get("name") or "")
                    pieces.append(fn.get("arguments") or "")
        scale = 1.0
        if self.unkept_bytes and self._kept_bytes:
            scale = (self._kept_bytes + self.unkept_bytes) / self._kept_bytes
        return "".join(pieces), scale


def _event_json(event: bytes) -> dict[str, Any] | None:
    """The JSON object an event's data carries; None for comments, ``[DONE]`` and anything malformed."""
    data = _data(event)
    if not data or data == b"[DONE]":
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None
