"""The encoded-field cache of ``otlp_encode.encode_attributes``: same bytes as encoding afresh, bounded."""

from __future__ import annotations

from typing import Any

import pytest

from spendgate_proxy.telemetry import otlp_encode
from spendgate_semconv.otlp_wire import key_value, ld


def _fresh(attributes: dict[str, Any], tag: bytes) -> bytes:
    return b"".join(ld(tag, key_value(k, v)) for k, v in attributes.items() if v is not None)


def test_cached_fields_equal_fresh_encoding_and_never_mix_bool_int_float() -> None:
    otlp_encode._field_cache.clear()
    calls = [
        {"a": 1, "b": "x", "c": None, "d": 1.0, "e": [1, 2]},
        {"a": True, "b": "x", "d": 1, "e": ("y",)},
        {"a": 1.0, "b": "y", "d": True},
        {"a": 1, "b": "x"},
    ]
    for attrs in calls:
        for tag in (b"\x4a", b"\x1a"):
            assert otlp_encode.encode_attributes(attrs, tag) == _fresh(attrs, tag)
    assert ((b"\x4a", "a", 1)) in otlp_encode._field_cache
    assert all(type(k[2]) in (str, int) for k in otlp_encode._field_cache)


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    otlp_encode._field_cache.clear()
    monkeypatch.setattr(otlp_encode, "_FIELD_CACHE_MAX", 10)
    for i in range(35):
        attrs = {"gen_ai.response.id": f"chatcmpl-{i}"}
        assert otlp_encode.encode_attributes(attrs, b"\x4a") == _fresh(attrs, b"\x4a")
        assert len(otlp_encode._field_cache) <= 10
