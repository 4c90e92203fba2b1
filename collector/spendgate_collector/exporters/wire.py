"""Just enough OTLP wire format to rewrite spans cheaply: a lean schema and a tiny attribute encoder.

Why not the official ``opentelemetry-proto`` classes: a forwarded LLM span carries ~30 attributes,
and reading or rebuilding them as ``KeyValue``/``AnyValue`` objects costs ~1 µs each in Python. This
schema parses the same bytes but declares only what the exporters touch: span ids, ``attributes``
and ``events`` as ``repeated bytes`` (each ``KeyValue`` / ``Event`` stays an opaque byte string that
can be dropped or appended as is). Every other field (names, kinds, parents, links, status,
resource, scope...) is kept by upb as unknown fields and written back unchanged on serialise, so a
span leaves with everything it came with. Field numbers are those of OTLP v1 ``trace.proto``.

The schema is built on first use in a private descriptor pool; importing this module does nothing.
"""

from __future__ import annotations

import functools
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from spendgate_semconv import otlp_wire
from spendgate_semconv.otlp_wire import read_varint as _varint

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "spendgate.export.v1"


def _add(
    msg: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    type_: int,
    *,
    repeated: bool = False,
    type_name: str | None = None,
) -> None:
    label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    field = msg.field.add(name=name, number=number, type=type_, label=label)
    if type_name:
        field.type_name = f".{_PACKAGE}.{type_name}"


@functools.cache
def request_class() -> type[Message]:
    """The export-side lean ``ExportTraceServiceRequest`` class."""
    fdp = descriptor_pb2.FileDescriptorProto(name="spendgate/export_trace.proto", package=_PACKAGE, syntax="proto3")
    span = fdp.message_type.add(name="Span")
    _add(span, "trace_id", 1, _F.TYPE_BYTES)
    _add(span, "span_id", 2, _F.TYPE_BYTES)
    _add(span, "attributes", 9, _F.TYPE_BYTES, repeated=True)
    _add(span, "events", 11, _F.TYPE_BYTES, repeated=True)
    scope_spans = fdp.message_type.add(name="ScopeSpans")
    _add(scope_spans, "spans", 2, _F.TYPE_MESSAGE, repeated=True, type_name="Span")
    resource_spans = fdp.message_type.add(name="ResourceSpans")
    _add(resource_spans, "scope_spans", 2, _F.TYPE_MESSAGE, repeated=True, type_name="ScopeSpans")
    request = fdp.message_type.add(name="ExportTraceServiceRequest")
    _add(request, "resource_spans", 1, _F.TYPE_MESSAGE, repeated=True, type_name="ResourceSpans")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.ExportTraceServiceRequest"))


def parse_request(payload: bytes) -> Any:
    """Parse ``ExportTraceServiceRequest`` bytes (already validated by the pipeline) into the lean schema."""
    return request_class().FromString(payload)


# --- reading keys and event names out of raw messages


def _string_field(raw: bytes, number: int) -> str:
    """The first length-delimited field ``number`` of a raw message, as text ("" when absent/malformed)."""
    pos, end = 0, len(raw)
    try:
        while pos < end:
            tag, pos = _varint(raw, pos)
            wire_type = tag & 7
            if wire_type == 2:
                length, pos = _varint(raw, pos)
                if tag >> 3 == number:
                    return raw[pos : pos + length].decode("utf-8", "replace")
                pos += length
            elif wire_type == 0:
                _, pos = _varint(raw, pos)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            else:
                return ""
    except IndexError:
        return ""
    return ""


def key_of(raw: bytes) -> str:
    """Key of a raw ``KeyValue`` (field 1)."""
    # Fast path: every SDK writes the key first, and keys are shorter than 128 bytes.
    if len(raw) > 1 and raw[0] == 0x0A and raw[1] < 0x80:
        return raw[2 : 2 + raw[1]].decode("utf-8", "replace")
    return _string_field(raw, 1)


def event_name(raw: bytes) -> str:
    """Name of a raw span ``Event`` (field 2; field 1 is its fixed64 time, usually first)."""
    if len(raw) > 10 and raw[0] == 0x09 and raw[9] == 0x12 and raw[10] < 0x80:
        return raw[11 : 11 + raw[10]].decode("utf-8", "replace")
    return _string_field(raw, 2)


# --- writing attributes

# The writer is shared with the proxy's encoder (``spendgate_semconv.otlp_wire``).
key_value = otlp_wire.key_value


# --- reading an OTLP export response


def partial_success(response: bytes) -> tuple[int, str]:
    """``(rejected_spans, error_message)`` of an ``ExportTraceServiceResponse``; ``(0, "")`` when none."""
    if not response:
        return 0, ""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    try:
        parsed = ExportTraceServiceResponse.FromString(response)
    except Exception:  # a receiver's odd answer body is not our failure
        return 0, ""
    return parsed.partial_success.rejected_spans, parsed.partial_success.error_message
