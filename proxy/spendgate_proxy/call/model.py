"""What one call is: the client's format, its request (as sent and canonically) and where it may go.

Kept apart from the engine (``serve.py``) so routes, the engine's parts and the span record can
all name a :class:`Call` without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from spendgate_proxy.config import ModelRoute
    from spendgate_proxy.formats.canonical import ChatRequest
    from spendgate_proxy.providers import Provider
    from spendgate_proxy.telemetry.spans import CallRecord

InboundFormat = Literal["openai", "anthropic"]
"""The format the client speaks (and is answered in): Chat Completions or Anthropic Messages."""


@dataclass(slots=True)
class Call:
    """One call to serve: what the client asked, in its format and canonically, and where it may go."""

    inbound: InboundFormat
    req: ChatRequest
    """Canonical request; ``model`` is the name the client asked for."""
    body: dict[str, Any]
    """The client's parsed body, for passthrough to a provider of the same format."""
    attempts: list[tuple[ModelRoute, Provider]]
    rec: CallRecord
    wants_usage: bool = False
    """OpenAI clients: show the usage chunk (Anthropic streams always carry usage)."""
    cursor: bool = False
    """Cursor route: always translate (normalised request), rewrite custom tool calls."""
    custom_mode: Literal["raw", "json"] = "raw"
    forward_headers: Mapping[str, str] | None = None
    """Client headers a same-format provider should see (``anthropic-beta``)."""
    budget_headers: Mapping[str, str] | None = None
    """``x-spendgate-budget*`` headers (``budget_state.py``), added to a successful reply only."""

    @property
    def stream(self) -> bool:
        return self.req.stream


__all__ = ["Call", "InboundFormat"]
