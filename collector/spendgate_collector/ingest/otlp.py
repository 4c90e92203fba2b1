"""Decode OTLP trace export requests cheaply: a lean wire-compatible schema, and OTLP/JSON to protobuf.

Why a second schema: reading attributes through the official ``KeyValue``/``AnyValue`` classes costs
about 0.8 µs per attribute (one wrapper object per message touched), ~25 µs for a typical 30-attribute
LLM span, which alone would cap ingest near 30,000 spans/s before any real work. The lean schema
parses the very same bytes but declares ``attributes`` as ``repeated bytes``: upb hands us each
``KeyValue`` as a plain ``bytes`` object (no wrappers; ~1 µs per span to parse), and an
``AttributeReader`` splits and decodes only the attributes the normaliser reads, memoised on the
whole ``KeyValue`` because most attributes (model, team, developer, provider) repeat from span to
span. Only the fields spendgate reads are declared; everything else is carried as unknown fields
and ignored. (A ``map<string, bytes>``
declaration is wire-compatible too, but upb's map container costs ~0.35 µs per entry to read.)

The schema is built on first use, in a private descriptor pool, so importing this module does nothing.
"""

from __future__ import annotations

import base64
import binascii
import functools
import struct
from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from spendgate_semconv.otlp_wire import read_varint as _varint

from ..errors import InvalidPayload

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "spendgate.lean.v1"

# Span status code on the wire (opentelemetry.proto.trace.v1.Status.StatusCode).
STATUS_CODE_ERROR = 2

# Decoded attribute values are memoised by their raw bytes; bounded so a stream of unique values
# (token counts, ids) cannot grow memory: the cache is simply cleared when full.
_VALUE_CACHE_MAX = 65_536
_VALUE_CACHE_MAX_LEN = 96
_value_cache: dict[bytes, Any] = {}
_KV_CACHE_MAX = 65_536
_KV_CACHE_MAX_LEN = 160


def _message(fdp: descriptor_pb2.FileDescriptorProto, name: str) -> descriptor_pb2.DescriptorProto:
    return fdp.message_type.add(name=name)


def _field(msg: descriptor_pb2.DescriptorProto, name: str, number: int, type_: int, **kw: Any) -> None:
    msg.field.add(name=name, number=number, type=type_, label=kw.pop("label", _F.LABEL_OPTIONAL), **kw)


def _attributes_field(msg: descriptor_pb2.DescriptorProto, number: int) -> None:
    _field(msg, "attributes", number, _F.TYPE_BYTES, label=_F.LABEL_REPEATED)


@functools.cache
def lean_request_class() -> type[Message]:
    """The lean ``ExportTraceServiceRequest`` message class (field numbers as in OTLP v1)."""
    fdp = descriptor_pb2.FileDescriptorProto(name="spendgate/lean_trace.proto", package=_PACKAGE, syntax="proto3")
    status = _message(fdp, "Status")
    # bytes, not string: a badly encoded status message must not make the whole request undecodable.
    _field(status, "message", 2, _F.TYPE_BYTES)
    _field(status, "code", 3, _F.TYPE_INT32)

    span = _message(fdp, "Span")
    _field(span, "trace_id", 1, _F.TYPE_BYTES)
    _field(span, "span_id", 2, _F.TYPE_BYTES)
    _field(span, "start_time_unix_nano", 7, _F.TYPE_FIXED64)
    _field(span, "end_time_unix_nano", 8, _F.TYPE_FIXED64)
    _attributes_field(span, 9)
    _field(span, "status", 15, _F.TYPE_MESSAGE, type_name=f".{_PACKAGE}.Status")

    scope_spans = _message(fdp, "ScopeSpans")
    _field(scope_spans, "spans", 2, _F.TYPE_MESSAGE, type_name=f".{_PACKAGE}.Span", label=_F.LABEL_REPEATED)

    resource = _message(fdp, "Resource")
    _attributes_field(resource, 1)

    resource_spans = _message(fdp, "ResourceSpans")
    _field(resource_spans, "resource", 1, _F.TYPE_MESSAGE, type_name=f".{_PACKAGE}.Resource")
    _field(
        resource_spans,
        "scope_spans",
        2,
        _F.TYPE_MESSAGE,
        type_name=f".{_PACKAGE}.ScopeSpans",
        label=_F.LABEL_REPEATED,
    )

    request = _message(fdp, "ExportTraceServiceRequest")
    _field(
        request,
        "resource_spans",
        1,
        _F.TYPE_MESSAGE,
        type_name=f".{_PACKAGE}.ResourceSpans",
        label=_F.LABEL_REPEATED,
    )

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.ExportTraceServiceRequest"))


def parse_export_request(payload: bytes) -> Any:
    """Parse a protobuf ``ExportTraceServiceRequest`` into the lean schema; raise ``InvalidPayload``."""
    try:
        return lean_request_class().FromString(payload)
    except DecodeError as exc:
        raise InvalidPayload(f"undecodable OTLP protobuf: {exc}") from None


def _decode_fast(raw: bytes) -> Any:
    """Decode the common one-field ``AnyValue`` encodings; raise ``ValueError`` for anything else."""
    tag = raw[0]
    if tag == 0x0A:  # string_value, length-delimited
        length, pos = _varint(raw, 1)
        if pos + length == len(raw):
            return raw[pos:].decode("utf-8", "replace")
    elif tag == 0x18:  # int_value, varint (two's complement int64)
        value, pos = _varint(raw, 1)
        if pos == len(raw):
            return value - (1 << 64) if value >= 1 << 63 else value
    elif tag == 0x10:  # bool_value
        value, pos = _varint(raw, 1)
        if pos == len(raw):
            return bool(value)
    elif tag == 0x21 and len(raw) == 9:  # double_value, fixed64
        return struct.unpack_from("<d", raw, 1)[0]
    raise ValueError("not a single scalar")


def _from_any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_from_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _from_any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _decode_slow(raw: bytes) -> Any:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    try:
        return _from_any_value(AnyValue.FromString(raw))
    except DecodeError:
        return None


def _split_key_value(raw: bytes) -> tuple[str, bytes] | None:
    """``KeyValue`` bytes → ``(key, raw AnyValue bytes)``; ``None`` when malformed."""
    # Fast path: key then value, both shorter than 128 bytes (one-byte lengths), as every SDK writes them.
    key_len = raw[1]
    if raw[0] == 0x0A and key_len < 0x80:
        value_at = 2 + key_len
        if raw[value_at] == 0x12 and raw[value_at + 1] + value_at + 2 == len(raw):
            return raw[2:value_at].decode("utf-8", "replace"), raw[value_at + 2 :]
    key = ""
    value = b""
    pos, end = 0, len(raw)
    while pos < end:
        tag, pos = _varint(raw, pos)
        wire_type = tag & 7
        if wire_type == 2:
            length, pos = _varint(raw, pos)
            chunk = raw[pos : pos + length]
            pos += length
            if tag >> 3 == 1:
                key = chunk.decode("utf-8", "replace")
            elif tag >> 3 == 2:
                value = chunk
        elif wire_type == 0:
            _, pos = _varint(raw, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            return None
    if pos != end or not key:
        return None
    return key, value


_SKIP = ("", None)  # cache entry of an attribute nobody asked for


class AttributeReader:
    """Read the wanted attributes of lean-schema messages as ``{key: decoded value}``.

    Each raw ``KeyValue`` is split and (when wanted) decoded once, then memoised on its bytes, so the
    common case costs one dict lookup per attribute; unwanted attributes are remembered as skipped.
    Malformed entries are skipped; a repeated key keeps its last value. Not thread-safe: each
    pipeline thread needs its own reader.
    """

    def __init__(self, wanted: Callable[[str], bool], cache_max: int = _KV_CACHE_MAX) -> None:
        self._wanted = wanted
        self._cache: dict[bytes, tuple[str, Any]] = {}
        self._cache_max = cache_max

    def read(self, raw_attributes: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        cache = self._cache
        for raw in raw_attributes:
            entry = cache.get(raw)
            if entry is None:
                entry = self._decode(raw)
                if len(raw) <= _KV_CACHE_MAX_LEN:
                    if len(cache) >= self._cache_max:
                        cache.clear()
                    cache[raw] = entry
            if entry is not _SKIP:
                out[entry[0]] = entry[1]
        return out

    def _decode(self, raw: bytes) -> tuple[str, Any]:
        try:
            pair = _split_key_value(raw)
        except IndexError:
            return _SKIP
        if pair is None or not self._wanted(pair[0]):
            return _SKIP
        return pair[0], decode_value(pair[1])


def decode_value(raw: bytes) -> Any:
    """Turn the raw bytes of an OTLP ``AnyValue`` into a Python value (``None`` when empty/invalid)."""
    if not raw:
        return None
    cached = _value_cache.get(raw)
    if cached is not None:
        return cached
    try:
        value = _decode_fast(raw)
    except (ValueError, IndexError):
        value = _decode_slow(raw)
    if len(raw) <= _VALUE_CACHE_MAX_LEN and value is not None:
        if len(_value_cache) >= _VALUE_CACHE_MAX:
            _value_cache.clear()
        _value_cache[raw] = value
    return value


# OTLP/JSON differs from protobuf's canonical JSON mapping in one way that matters: trace and span
# ids are hex strings, not base64. Everything else (camelCase names, integer enums, int64 as
# strings) is what json_format already accepts.
_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(obj: dict[str, Any]) -> None:
    for name in _ID_FIELDS:
        value = obj.get(name)
        if isinstance(value, str):
            try:
                obj[name] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                # Not hex: drop it, so the span is rejected as malformed instead of the whole request.
                obj[name] = ""


def json_to_protobuf(body: bytes) -> bytes:
    """Convert an OTLP/JSON ``ExportTraceServiceRequest`` to protobuf bytes; raise ``InvalidPayload``."""
    import orjson
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidPayload("OTLP/JSON body must be an object with resourceSpans")
    try:
        for rs in doc.get("resourceSpans") or doc.get("resource_spans") or ():
            for ss in rs.get("scopeSpans") or rs.get("scope_spans") or ():
                for span in ss.get("spans") or ():
                    _hex_ids_to_base64(span)
                    for link in span.get("links") or ():
                        _hex_ids_to_base64(link)
        message = json_format.ParseDict(doc, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, AttributeError, TypeError, binascii.Error) as exc:
        raise InvalidPayload(f"invalid OTLP/JSON: {exc}") from None
    return message.SerializeToString()
