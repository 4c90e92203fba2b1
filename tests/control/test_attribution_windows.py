"""Cursor hook windows at the collector: merging, history for late spans, ingest stamping, the RPC and stream."""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import pytest

from spendgate_collector.app import Collector
from spendgate_collector.attribution.windows import PUBLISH_EVERY_NS, AttributionWindows, Window, window_from
from spendgate_collector.config import CollectorConfig
from spendgate_collector.control import ControlLog, ControlServer
from spendgate_collector.ingest.normalize import Normalizer
from spendgate_collector.ingest.otlp import parse_export_request
from spendgate_collector.records import SpendRecord
from spendgate_semconv import attributes as sc
from spendgate_semconv import control_pb2, control_pb2_grpc
from tests.collector.spans import ns, ours, protobuf_body, span
from tests.control.support import subscribed

S = 1_000_000_000
T0 = ns("2026-11-03T10:00:00")


def _w(repo: str, since_s: int, until_s: int, user: str = "ana@acme.com", branch: str | None = "main") -> Window:
    return Window(
        user, repo, branch, f"https://github.com/acme/{repo}", f"/src/{repo}", T0 + since_s * S, T0 + until_s * S
    )


def _windows() -> AttributionWindows:
    # A clock at T0 + 10 min keeps the reports above inside the one-hour history.
    return AttributionWindows(clock=lambda: T0 + 600 * S)


def test_refresh_extends_a_window_and_publishes_only_when_it_grew_enough() -> None:
    w = _windows()
    first, publish = w.report(_w("api", 0, 900))
    assert publish and (T0, T0 + 900 * S) == (first.since_ns, first.until_ns)
    small, publish = w.report(_w("api", 5, 905))
    assert not publish and (T0, T0 + 905 * S) == (small.since_ns, small.until_ns)
    big, publish = w.report(_w("api", 0 + PUBLISH_EVERY_NS // S, 900 + PUBLISH_EVERY_NS // S))
    assert publish and T0 == big.since_ns
    stale, publish = w.report(_w("api", 1, 901))  # a late, older report changes nothing
    assert not publish and big == stale


def test_latest_report_wins_and_history_answers_for_earlier_times() -> None:
    w = _windows()
    w.report(_w("api", 0, 900))
    w.report(_w("web", 100, 1000))
    w.report(_w("api", 200, 1100))
    assert "web" == w.match("ana@acme.com", T0 + 150 * S).repo
    assert "api" == w.match("ana@acme.com", T0 + 50 * S).repo
    assert "api" == w.match("ana@acme.com", T0 + 250 * S).repo
    assert "api" == w.match("ana@acme.com", T0 - 2 * S).repo  # clock skew slack before the first report
    assert w.match("ana@acme.com", T0 - 60 * S) is None
    assert w.match("ana@acme.com", T0 + 1100 * S) is None
    assert w.match("bo@acme.com", T0 + 50 * S) is None
    assert ["api"] == [x.repo for x in w.live(T0 + 1000 * S)]


def test_history_older_than_the_horizon_is_dropped() -> None:
    now = [T0]
    w = AttributionWindows(history_s=60, clock=lambda: now[0])
    w.report(_w("api", 0, 10))
    now[0] = T0 + 200 * S
    w.report(_w("web", 200, 300))
    assert w.match("ana@acme.com", T0 + 5 * S) is None
    assert "web" == w.match("ana@acme.com", T0 + 250 * S).repo


def _record(repo: str | None, source: str | None, start_s: int, developer: str | None = "ana@acme.com") -> SpendRecord:
    return SpendRecord(
        "ab" * 16,
        "cd" * 8,
        T0 + start_s * S,
        T0 + start_s * S + S,
        "gpt-4o",
        developer,
        repo=repo,
        repo_source=source,
        key_id="key_1",
    )


@pytest.mark.parametrize(
    ("repo", "source", "stamped"),
    [
        (None, None, True),
        (None, sc.RepoSource.NONE, True),
        ("default-repo", sc.RepoSource.KEY_DEFAULT, True),
        ("guess", sc.RepoSource.PROMPT_WORKSPACE, True),
        ("explicit", sc.RepoSource.HEADER, False),
        ("explicit", sc.RepoSource.PATH_PREFIX, False),
        ("explicit", sc.RepoSource.MODEL_ALIAS, False),
        ("from-resource", None, False),
    ],
)
def test_stamp_overrides_only_weaker_sources(repo: str | None, source: str | None, stamped: bool) -> None:
    w = _windows()
    w.report(_w("api", 0, 900, branch="feature/x"))
    record = _record(repo, source, 30)
    assert stamped == w.stamp(record)
    if stamped:
        assert ("api", "feature/x", "https://github.com/acme/api", "cursor-hook") == (
            record.repo,
            record.branch,
            record.repo_url,
            record.repo_source,
        )
    else:
        assert (repo, source) == (record.repo, record.repo_source)


def test_stamp_falls_back_to_the_key_id_and_ignores_spans_outside_windows() -> None:
    w = _windows()
    w.report(_w("api", 0, 900, user="key_1"))
    assert w.stamp(_record(None, None, 30, developer=None))
    assert not w.stamp(_record(None, None, 2000, developer=None))


def test_normalizer_stamps_a_span_that_arrived_without_the_repo() -> None:
    w = _windows()
    end = "2026-11-03T10:05:00"
    w.report(_w("api", 0, 900))
    bare = ours(repo=None)  # a proxy that had no window yet: no repo, source absent
    keyed = ours(repo="default", **{sc.SPENDGATE_REPO_SOURCE: sc.RepoSource.KEY_DEFAULT})
    header = ours(repo="explicit")  # spans.ours() marks a repo as header-sourced
    other = ours(repo=None, developer="bo@acme.com")
    body = protobuf_body(
        [span(1, 1, bare, end=end), span(1, 2, keyed, end=end), span(1, 3, header, end=end), span(1, 4, other, end=end)]
    )
    batch = Normalizer(None, w).normalize(parse_export_request(body))
    got = [(r.repo, r.repo_source) for r in batch.records]
    assert [("api", "cursor-hook"), ("api", "cursor-hook"), ("explicit", "header"), (None, None)] == got


def test_wire_window_is_validated_by_field() -> None:
    good = _w("api", 0, 900).message()
    assert _w("api", 0, 900) == window_from(good)
    for field, value, named in (
        ("user", "", "window.user"),
        ("repo", "", "window.repo"),
        ("until_unix_ns", 1, "window.until_unix_ns"),
    ):
        bad = control_pb2.AttributionWindow()
        bad.CopyFrom(good)
        setattr(bad, field, value)
        with pytest.raises(ValueError, match=named):
            window_from(bad)


def test_report_attribution_rpc_publishes_on_the_stream_and_in_snapshots() -> None:
    async def scenario() -> None:
        server = ControlServer("127.0.0.1:0", ControlLog(), None)
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        stub = control_pb2_grpc.ControlPlaneStub(channel)
        now = time.time_ns()
        window = Window("ana@acme.com", "api", "main", None, "/src/api", now, now + 900 * S)
        try:
            async with subscribed(server.port) as sub:
                snap = await sub.read()
                assert snap.snapshot and not snap.windows_upsert
                ack = await stub.ReportAttribution(
                    control_pb2.AttributionReport(proxy_id="p1", window=window.message())
                )
                assert "api" == ack.window.repo
                delta = await sub.read_change()
                assert (snap.version + 1, ["api"]) == (delta.version, [x.repo for x in delta.windows_upsert])
                # A refresh a second later extends the window but is not worth a new version.
                later = Window("ana@acme.com", "api", "main", None, "/src/api", now + S, now + 901 * S)
                ack = await stub.ReportAttribution(control_pb2.AttributionReport(window=later.message()))
                assert (now, now + 901 * S) == (ack.window.since_unix_ns, ack.window.until_unix_ns)
                assert server.log is not None and delta.version == server.log.version
            async with subscribed(server.port) as sub:
                snap = await sub.read()
                assert ["ana@acme.com"] == [x.user for x in snap.windows_upsert]
            bad = Window("", "api", None, None, None, now, now + S).message()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ReportAttribution(control_pb2.AttributionReport(window=bad))
            assert grpc.StatusCode.INVALID_ARGUMENT == err.value.code()
            assert "window.user" in (err.value.details() or "")
        finally:
            await channel.close()
            await server.stop()

    asyncio.run(scenario())


def test_lapsed_windows_leave_snapshots() -> None:
    async def scenario() -> None:
        server = ControlServer("127.0.0.1:0", ControlLog(), None)
        await server.start()
        try:
            assert server.log is not None
            now = time.time_ns()
            server.log.apply(windows_upsert=[Window("ana", "api", None, None, None, now - 10 * S, now - S).message()])
            server.log.apply(windows_upsert=[Window("bo", "web", None, None, None, now, now + 60 * S).message()])
            assert ["bo"] == [x.user for x in server.log.snapshot().windows_upsert]
            assert {"bo"} == set(server.log.windows)  # the lapsed one was pruned by the next change
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_collector_gives_a_late_span_the_repo_before_storing_it(tmp_path: Path) -> None:
    """A proxy reports a window; a span that reached the collector without a repo is stored with it."""
    config = CollectorConfig(
        db=tmp_path / "c.db", otlp_grpc="off", otlp_http="127.0.0.1:0", api="off", control="127.0.0.1:0"
    )

    async def scenario() -> None:
        async with Collector(config) as collector:
            channel = grpc.aio.insecure_channel(collector.control_endpoint or "")
            # A span from ten minutes ago (exported late) inside a window reported then; ends on a whole second.
            end = datetime.now(UTC).replace(microsecond=0, tzinfo=None) - timedelta(minutes=10)
            start = ns(end.isoformat()) - 1500 * 1_000_000  # the span below starts 1.5 s before its end
            window = Window(
                "ana@acme.com", "api", "main", "https://github.com/acme/api", "/src/api", start - S, start + 900 * S
            )
            try:
                stub = control_pb2_grpc.ControlPlaneStub(channel)
                await stub.ReportAttribution(control_pb2.AttributionReport(proxy_id="p", window=window.message()))
            finally:
                await channel.close()
            body = protobuf_body(
                [
                    span(7, 1, ours(repo=None), end=end.isoformat()),
                    span(7, 2, ours(repo="explicit"), end=end.isoformat()),
                ]
            )
            async with httpx.AsyncClient() as http:
                resp = await http.post(
                    f"http://127.0.0.1:{collector.otlp_http_port}/v1/traces",
                    content=body,
                    headers={"Content-Type": "application/x-protobuf"},
                )
                assert 200 == resp.status_code

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / "c.db") as db:
        rows = set(db.execute("SELECT span_id, repo, branch, repo_url, repo_source FROM spend"))
    assert {
        ("0000000000000001", "api", "main", "https://github.com/acme/api", "cursor-hook"),
        ("0000000000000002", "explicit", None, None, "header"),
    } == rows
