"""The client side of a passthrough stream: as few writes (and wake-ups of the client) as the bytes allow.

A proxied stream costs the proxy one ``write`` system call per piece it sends, and on loopback or
a LAN that call is a large share of the per-call CPU (docs/performance.md). Two of them carry no
data of their own: the response head, which aiohttp's ``StreamResponse`` sends by itself at
``prepare``, and the chunked-encoding end marker sent by ``write_eof``. :class:`SSEResponse` puts
the head in the same write as the first chunk **when that chunk has already arrived** (otherwise
the head goes out at once, as before: the client never waits longer for anything), and the caller
sends the last chunk with ``write_eof(last)`` when the upstream body is known to be complete.
The bytes on the wire are exactly the same; only their grouping into writes changes.
"""

from __future__ import annotations

from aiohttp import web


class SSEResponse(web.StreamResponse):
    """A ``StreamResponse`` whose head may wait for the first chunk (``head_with_first_chunk``).

    Relies on aiohttp's ``_send_headers_immediately`` switch (aiohttp >= 3.12, used by its own
    ``web.Response``); on a version without it the head simply goes out at ``prepare``.
    """

    def __init__(self, *, headers: dict[str, str], head_with_first_chunk: bool) -> None:
        super().__init__(status=200, headers=headers)
        self._send_headers_immediately = not head_with_first_chunk

    def send_head(self) -> None:
        """Send the head now if it is still waiting (the first chunk turned out to be empty)."""
        writer = self._payload_writer
        send = getattr(writer, "send_headers", None)
        if send is not None:
            send()


__all__ = ["SSEResponse"]
