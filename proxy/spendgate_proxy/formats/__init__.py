"""Request and response formats: the canonical chat model, one adapter per wire format, and the format interface.

``canonical`` is the hub every format parses to and renders from (its docstring states the
conventions all adapters share: arguments stay JSON strings, token totals follow OpenAI, ``extra``
keeps a format's own fields). The adapters are ``openai`` (Chat Completions) and ``anthropic``
(Messages), each a package split by job (``request``, ``response``, ``sse``, and for Anthropic
``errors``), plus ``responses_shaped`` (Responses-shaped request bodies, parsed only). Around
them: ``errors`` (OpenAI's error vocabulary, which is the proxy's canonical error form, and
context overflows), ``estimate`` (token estimates), ``detect`` (which shape a body has) and
``cursor`` (what only Cursor needs). Nothing here does I/O, so adapters can be tested (and
benchmarked) on bytes alone. What translation keeps and drops: docs/translation.md.

The format interface is declared once below: :class:`WireFormat` (both directions, bodies and
streams) and :class:`RequestFormat` (request bodies only). Each adapter module satisfies one as it
stands; mypy checks that at the end of this module, and ``tests/formats/test_interface.py`` runs
every adapter through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from spendgate_proxy.formats.canonical import ChatRequest, ChatResponse, StreamEvent, Usage
from spendgate_proxy.formats.detect import Shape, detect_shape


@runtime_checkable
class SSEParser(Protocol):
    """A provider's stream bytes, cut anywhere, → canonical events; one parser per stream.

    :meth:`feed` returns the events the bytes complete, :meth:`close` flushes the rest at the end
    of the stream, and :attr:`done` turns true once the stream has said it is over.
    """

    done: bool

    def feed(self, data: bytes) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]: ...


@runtime_checkable
class SSEWriter(Protocol):
    """Canonical events → a client's stream bytes; one writer per response.

    :meth:`write` returns the bytes for one event (possibly ``b""``), :meth:`close` the tail, and
    :attr:`usage` keeps the last usage seen, for the span, whether or not the client sees it.
    """

    usage: Usage | None

    def write(self, event: StreamEvent) -> bytes: ...

    def close(self) -> bytes: ...

    def write_all(self, events: Iterable[StreamEvent]) -> bytes: ...


@runtime_checkable
class RequestFormat(Protocol):
    """A request body shape the proxy accepts: parsed to the canonical model."""

    def parse_request(self, body: Mapping[str, Any], /) -> ChatRequest: ...


@runtime_checkable
class WireFormat(RequestFormat, Protocol):
    """A wire format spoken both ways: request and response bodies, and streams, to and from canonical.

    Adapters take format-specific keyword arguments beyond these (all optional); this is what
    code that does not know the format may rely on.
    """

    def render_request(self, req: ChatRequest, /) -> dict[str, Any]: ...

    def parse_response(self, obj: Mapping[str, Any], /) -> ChatResponse: ...

    def render_response(self, resp: ChatResponse, /) -> dict[str, Any]: ...

    def sse_parser(self) -> SSEParser: ...

    def sse_writer(self, *, model: str | None = None) -> SSEWriter: ...


if TYPE_CHECKING:
    # Only mypy reads this: each adapter module is checked against the interface it claims.
    # (Importing the adapters here at run time would be circular: they import this package.)
    from spendgate_proxy.formats import anthropic, openai, responses_shaped

    _WIRE_FORMATS: tuple[WireFormat, ...] = (anthropic, openai)
    _REQUEST_FORMATS: tuple[RequestFormat, ...] = (anthropic, openai, responses_shaped)


__all__ = [
    "ChatRequest",
    "ChatResponse",
    "RequestFormat",
    "SSEParser",
    "SSEWriter",
    "Shape",
    "StreamEvent",
    "Usage",
    "WireFormat",
    "detect_shape",
]
