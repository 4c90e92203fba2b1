"""The shared OTLP wire writer: its bytes decode, with the official protobuf classes, to the same values."""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from spendgate_semconv.otlp_wire import any_value, key_value, read_varint, varint


@pytest.mark.parametrize(
    "value",
    ["", "héllo", True, False, 0, 1, 127, 128, 2**40, -1, -(2**63), 0.5, -3.25, ["a", 1, True], (), b"\x00\xff"],
)
def test_any_value_round_trips(value: object) -> None:
    decoded = AnyValue.FromString(any_value(value))
    kind = decoded.WhichOneof("value")
    if isinstance(value, list | tuple):
        assert [getattr(v, v.WhichOneof("value")) for v in decoded.array_value.values] == list(value)
    else:  # a oneof keeps presence, so even "", 0 and False come back as set
        assert getattr(decoded, kind) == value


def test_key_value_and_varint() -> None:
    kv = KeyValue.FromString(key_value("llm.token_count.prompt", 1234))
    assert (kv.key, kv.value.int_value) == ("llm.token_count.prompt", 1234)
    assert varint(300) == b"\xac\x02"
    assert len(varint(-1)) == 10


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**35, 2**64 - 1])
def test_read_varint_reads_what_varint_writes(n: int) -> None:
    data = b"\xff" + varint(n) + b"\x01"
    assert read_varint(data, 1) == (n, len(data) - 1)
