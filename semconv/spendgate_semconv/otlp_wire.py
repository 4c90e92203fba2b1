"""Protobuf wire-format writing (and varint reading) for OTLP, shared by the proxy's and the collector's encoders.

The proxy encodes its spans straight to OTLP bytes, and the collector's exporters splice cost and
attribution into spans they forward; both write ``KeyValue``/``AnyValue`` messages by hand because
the generic protobuf objects cost several times more per span (docs/performance.md). This module is
that one writer: no imports beyond the standard library, so it fits in ``semconv`` (the only code
the proxy and the collector share).

Reference: opentelemetry/proto/common/v1/common.proto.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

pack_double = struct.Struct("<d").pack
pack_fixed64 = struct.Struct("<Q").pack

_SMALL = [bytes((i,)) for i in range(128)]


def varint(n: int) -> bytes:
    """A base-128 varint; negative numbers as int64 two's complement (10 bytes), as protobuf does."""
    if 0 <= n < 0x80:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    """The varint starting at ``raw[pos]`` and the position after it (raises ``IndexError`` if cut short)."""
    result = shift = 0
    while True:
        byte = raw[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def ld(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 0x80 else varint(n)) + payload


def any_value(value: Any) -> bytes:
    """An ``AnyValue`` body: str, bool, int, float, bytes, or a list/tuple of those (anything else as str)."""
    if value.__class__ is str:
        return ld(b"\x0a", value.encode())
    if isinstance(value, bool):  # before int: bool is an int subclass
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + pack_double(value)
    if isinstance(value, list | tuple):
        return ld(b"\x2a", b"".join(ld(b"\x0a", any_value(v)) for v in value))
    if isinstance(value, bytes):
        return ld(b"\x3a", value)
    return ld(b"\x0a", str(value).encode())


@functools.lru_cache(maxsize=4096)
def _key(key: str) -> bytes:
    # Attribute keys come from a small fixed set: encode each once.
    return ld(b"\x0a", key.encode())


def key_value(key: str, value: Any) -> bytes:
    """A ``KeyValue`` body."""
    return _key(key) + ld(b"\x12", any_value(value))
