"""What one call is: the client's format, its request (as sent and canonically) and where it may go.

Kept apart from the engine (``serve.py``) so routes, the engine's parts and the span record can
all name a :class:`Call` without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from spendgate_proxy.config import ModelRoute
    from spendgate_proxy.formats.canonical import ChatRequest
    from spendgate_proxy.providers import Provider
    from spendgate_proxy.telemetry.spans import CallRecord

InboundFormat = Literal["openai", "anthropic"]
"""The format the client speaks (and is answered in): Chat Completions or Anthropic Messages."""


class Seen(Protocol):
    """What a relay learnt from the answer (a tap over bytes, or the canonical events' progress)."""

    def fill(self, rec: CallRecord) -> None:
        """Put what was seen (usage, finish reasons, id, model, errors, text) on the span record."""

    def output_estimate(self) -> int:
        """Output tokens estimated from what was streamed, for when the provider never said."""


@dataclass(slots=True)
class Call:
    """One call to serve: what the client asked, in its format and canonically, and where it may go."""

    inbound: InboundFormat
    req: ChatRequest | None
    """Canonical request; ``model`` is the name the client asked for. None on the Chat Completions
    hot path: the body goes to OpenAI-compatible providers as it came (``raw``), never parsed."""
    body: dict[str, Any]
    """The client's parsed body, for passthrough to a provider of the same format."""
    attempts: list[tuple[ModelRoute, Provider]]
    rec: CallRecord | None
    """The span record; None until :meth:`record` builds it with ``make_record``."""
    wants_usage: bool = False
    """OpenAI clients: show the usage chunk (Anthropic streams always carry usage)."""
    cursor: bool = False
    """Cursor route: always translate (normalised request), rewrite custom tool calls."""
    custom_mode: Literal["raw", "json"] = "raw"
    forward_headers: Mapping[str, str] | None = None
    """Client headers a same-format provider should see (``anthropic-beta``)."""
    budget_headers: Mapping[str, str] | None = None
    """``x-spendgate-budget*`` headers (``budget_state.py``), added to a successful reply only."""
    raw: bytes = b""
    """The request body as received; sent as is while ``body`` is unchanged (hot path)."""
    changed: bool = False
    """``body`` differs from ``raw`` (the model renamed, usage asked for)."""
    make_record: Callable[[], CallRecord] | None = None
    """Builds the span record on first need: once the request is written, or when the call ends first."""
    seen: Seen | None = None
    """What the relay learnt from the answer, for the span (set by the relay)."""

    @property
    def stream(self) -> bool:
        if self.req is not None:
            return self.req.stream
        return self.body.get("stream") is True

    def record(self) -> CallRecord:
        """The span record, built now if nothing needed it before."""
        rec = self.rec
        if rec is None:
            assert self.make_record is not None, "a call without a record says how to make one"
            rec = self.rec = self.make_record()
        return rec


__all__ = ["Call", "InboundFormat", "Seen"]
