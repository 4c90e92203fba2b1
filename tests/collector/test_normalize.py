"""Normalisation of LLM spans from spendgate, OpenInference and GenAI instrumentations into SpendRecords."""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue
from opentelemetry.sdk.resources import Resource

from spendgate_collector.ingest.normalize import NormalizedBatch, Normalizer
from spendgate_collector.ingest.otlp import decode_value, parse_export_request
from spendgate_collector.keys.file import KeyDirectory
from spendgate_collector.records import SpendRecord
from spendgate_semconv import attributes as sc
from tests.collector.spans import ns, ours, protobuf_body, span

END = "2026-11-03T10:00:00"


def normalize(spans: list[Any], keys: KeyDirectory | None = None) -> NormalizedBatch:
    return Normalizer(keys).normalize(parse_export_request(protobuf_body(spans)))


def only_record(attrs: dict[str, Any], **kw: Any) -> SpendRecord:
    batch = normalize([span(0xAB, 0xCD, attrs, end=END, **kw)])
    assert (1, 0, 0) == (len(batch.records), batch.non_llm, batch.rejected), batch.messages
    return batch.records[0]


def test_spendgate_span_is_read_field_by_field() -> None:
    record = only_record(
        ours(
            model="claude-sonnet-4-5",
            provider="anthropic",
            input_tokens=12_000,
            output_tokens=800,
            cache_read=9000,
            cache_write=1000,
            reasoning=300,
            key_id="key_7f3a9c2b1d",
            **{
                sc.VCS_REPOSITORY_URL_FULL: "https://github.com/acme/acme-api",
                sc.VCS_REF_HEAD_NAME: "main",
                sc.SPENDGATE_MODEL_REQUESTED: "acme-api/claude-sonnet-4-5",
            },
        )
    )
    assert (
        SpendRecord(
            trace_id=f"{0xAB:032x}",
            span_id=f"{0xCD:016x}",
            start_ns=ns(END) - 1_500_000_000,
            end_ns=ns(END),
            model="claude-sonnet-4-5",
            developer="ana@acme.com",
            team="platform",
            cost_center="CC-1001",
            repo="acme-api",
            repo_url="https://github.com/acme/acme-api",
            branch="main",
            repo_source="header",
            feature="agent",
            key_id="key_7f3a9c2b1d",
            provider="anthropic",
            requested_model="acme-api/claude-sonnet-4-5",
            input_tokens=12_000,
            output_tokens=800,
            cache_read_tokens=9000,
            cache_write_tokens=1000,
            reasoning_tokens=300,
            usage_source="provider",
            status="ok",
            error_type=None,
            ttft_ms=123.5,
            service_name="spendgate-proxy",
        )
        == record
    )


def test_openinference_only_span() -> None:
    record = only_record(
        {
            sc.OPENINFERENCE_SPAN_KIND: "LLM",
            sc.LLM_PROVIDER: "openai",
            sc.LLM_MODEL_NAME: "gpt-4o-2024-08-06",
            sc.LLM_TOKEN_COUNT_PROMPT: 500,
            sc.LLM_TOKEN_COUNT_COMPLETION: 50,
            sc.LLM_TOKEN_COUNT_PROMPT_CACHE_READ: 128,
            sc.USER_ID: "cy@acme.com",
            sc.METADATA: '{"team": "data", "cost_center": "CC-2002", "repo": "etl", "feature": "chat"}',
        }
    )
    assert (
        "openai",
        "gpt-4o-2024-08-06",
        None,
        500,
        50,
        128,
        "cy@acme.com",
        "data",
        "CC-2002",
        "etl",
        "chat",
    ) == (
        record.provider,
        record.model,
        record.requested_model,
        record.input_tokens,
        record.output_tokens,
        record.cache_read_tokens,
        record.developer,
        record.team,
        record.cost_center,
        record.repo,
        record.feature,
    )


@pytest.mark.parametrize(
    "attrs",
    [
        {  # GenAI v1.37+
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_PROVIDER_NAME: "anthropic",
            sc.GEN_AI_REQUEST_MODEL: "claude-sonnet-4",
            sc.GEN_AI_RESPONSE_MODEL: "claude-sonnet-4-20250514",
            sc.GEN_AI_USAGE_INPUT_TOKENS: 3000,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 200,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 1000,
            sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 500,
        },
        {  # pre-1.37 names: gen_ai.system and prompt/completion tokens
            sc.GEN_AI_SYSTEM: "anthropic",
            sc.GEN_AI_REQUEST_MODEL: "claude-sonnet-4",
            sc.GEN_AI_RESPONSE_MODEL: "claude-sonnet-4-20250514",
            "gen_ai.usage.prompt_tokens": 3000,
            "gen_ai.usage.completion_tokens": 200,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 1000,
            sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 500,
        },
    ],
    ids=["gen_ai-new", "gen_ai-old"],
)
def test_gen_ai_only_span(attrs: dict[str, Any]) -> None:
    record = only_record(attrs)
    assert ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4", 3000, 200, 1000, 500, None, None) == (
        record.provider,
        record.model,
        record.requested_model,
        record.input_tokens,
        record.output_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
        record.developer,
        record.team,
    )


def test_usage_alone_makes_a_gen_ai_span_an_llm_span() -> None:
    record = only_record({"gen_ai.usage.output_tokens": 7, sc.GEN_AI_SYSTEM: "openai"})
    assert (None, 0, 7) == (record.model, record.input_tokens, record.output_tokens)


def test_non_llm_spans_are_counted_not_recorded() -> None:
    batch = normalize(
        [
            span(1, 1, {"http.request.method": "POST", "url.path": "/v1/chat/completions"}),
            span(1, 2, {sc.OPENINFERENCE_SPAN_KIND: "CHAIN", sc.LLM_MODEL_NAME: "gpt-4o"}),
            span(1, 3, ours()),
        ]
    )
    assert (3, 2, 0, [f"{3:016x}"]) == (batch.spans, batch.non_llm, batch.rejected, [r.span_id for r in batch.records])


def test_exclusive_input_count_is_made_inclusive() -> None:
    # An instrumentation that copied Anthropic's raw input_tokens (which excludes cache tokens):
    # the total cannot be smaller than its parts, so the parts are added back.
    record = only_record(
        {
            sc.GEN_AI_PROVIDER_NAME: "anthropic",
            sc.GEN_AI_REQUEST_MODEL: "claude-sonnet-4",
            sc.GEN_AI_USAGE_INPUT_TOKENS: 20,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 4000,
            sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 600,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 10,
        }
    )
    assert (4620, 4000, 600) == (record.input_tokens, record.cache_read_tokens, record.cache_write_tokens)


def test_error_status_and_error_type() -> None:
    with_type = only_record(ours(**{sc.ERROR_TYPE: "429"}))
    status_only = only_record(ours(), error=True)
    assert [("error", "429"), ("error", "error")] == [
        (with_type.status, with_type.error_type),
        (status_only.status, status_only.error_type),
    ]


def test_attribution_falls_back_to_resource_then_key(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(
        """\
version: 1
keys:
  - id: key_7f3a9c2b1d
    hash: "sha256:00"
    prefix: "sg-AbCd"
    user: dev@acme.com
    team: platform
    cost_center: CC-1001
    repo: acme-api
    models: []
    expires_at: null
    disabled: false
    created_at: "2026-11-29T10:00:00+00:00"
"""
    )
    keys = KeyDirectory(keys_file)
    bare = ours(developer=None, team=None, cost_center=None, repo=None, key_id="key_7f3a9c2b1d")
    resource = Resource.create({"service.name": "sdk-app", sc.SPENDGATE_TEAM: "ml"})
    batch = normalize([span(1, 1, bare, resource=resource), span(1, 2, {**bare, sc.USER_ID: "x@acme.com"})], keys)
    first, second = batch.records
    # The resource names the team; the key fills the rest and marks where the repo came from.
    assert ("dev@acme.com", "ml", "CC-1001", "acme-api", "key-default") == (
        first.developer,
        first.team,
        first.cost_center,
        first.repo,
        first.repo_source,
    )
    assert ("x@acme.com", "platform") == (second.developer, second.team)
    # An unknown key id leaves the gaps empty.
    (unknown,) = normalize([span(1, 3, {**bare, sc.SPENDGATE_KEY_ID: "key_nope"})], keys).records
    assert (None, None) == (unknown.developer, unknown.team)


def test_keys_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text("version: 1\nkeys:\n  - id: k1\n    user: a@acme.com\n")
    keys = KeyDirectory(keys_file, check_interval_s=0)
    assert "a@acme.com" == keys.lookup("k1").user  # type: ignore[union-attr]
    keys_file.write_text("version: 1\nkeys:\n  - id: k1\n    user: b@acme.com\n  - id: k2\n")
    os.utime(keys_file, ns=(1, 10**18))  # a new mtime even on coarse-grained file systems
    keys.refresh()
    assert ("b@acme.com", 2) == (keys.lookup("k1").user, len(keys))  # type: ignore[union-attr]
    keys_file.write_text("keys: [not: valid")  # a broken file keeps the last good directory
    os.utime(keys_file, ns=(1, 2 * 10**18))
    keys.refresh()
    assert 2 == len(keys)


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({sc.LLM_TOKEN_COUNT_PROMPT: -1}, "input tokens is negative"),
        ({sc.LLM_TOKEN_COUNT_COMPLETION: "many"}, "output tokens is not a number"),
        ({sc.LLM_TOKEN_COUNT_PROMPT_CACHE_READ: True}, "cache read tokens is a boolean"),
    ],
)
def test_malformed_token_counts_reject_the_span(attrs: dict[str, Any], reason: str) -> None:
    batch = normalize([span(1, 1, {**ours(), **attrs})])
    assert (0, 1) == (len(batch.records), batch.rejected)
    assert [f"span {1:016x}: {reason}"] == batch.messages


def test_invalid_ids_reject_the_span() -> None:
    batch = normalize([span(0, 1, ours()), span(1, 0, ours())])
    assert (0, 2, ["invalid trace_id or span_id (need 16 and 8 non-zero bytes)"]) == (
        len(batch.records),
        batch.rejected,
        batch.messages,
    )


def test_numbers_sent_as_strings_or_doubles_are_accepted() -> None:
    record = only_record({**ours(), sc.LLM_TOKEN_COUNT_PROMPT: "1200", sc.LLM_TOKEN_COUNT_COMPLETION: 30.0})
    assert (1200, 30) == (record.input_tokens, record.output_tokens)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (AnyValue(string_value="héllo"), "héllo"),
        (AnyValue(string_value="x" * 300), "x" * 300),  # two-byte length varint
        (AnyValue(int_value=0), 0),
        (AnyValue(int_value=-5), -5),
        (AnyValue(int_value=2**40), 2**40),
        (AnyValue(bool_value=True), True),
        (AnyValue(double_value=1.5), 1.5),
        (AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="a"), AnyValue(int_value=2)])), ["a", 2]),
        (AnyValue(bytes_value=b"\x00\x01"), b"\x00\x01"),
        (AnyValue(), None),
    ],
)
def test_decode_value_matches_the_official_classes(value: AnyValue, expected: Any) -> None:
    assert expected == decode_value(value.SerializeToString())
    assert expected == decode_value(value.SerializeToString())  # memoised path


def test_decode_value_double_bits() -> None:
    assert 0.1 == decode_value(b"\x21" + struct.pack("<d", 0.1))
