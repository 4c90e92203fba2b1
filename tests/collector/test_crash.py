"""Crash safety: SIGKILL the collector process mid-ingestion, restart it, and every span is stored once.

The official OTLP/gRPC exporter streams batches at a collector subprocess. The process is killed
without warning while exports are in flight, then restarted on the same database and port. The
exporter's own retries resend whatever was not acknowledged; since the collector acknowledges only
after commit and ignores spans it already has, the database must end with every span exactly once
and rollups that agree with the raw rows.
"""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.collector.spans import ours, span

BATCHES = 40
SPANS_PER_BATCH = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_collector(db: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-c",
        "from spendgate_app.cli import main; main()",
        "collector",
        "--db",
        str(db),
        "--otlp-grpc",
        f"127.0.0.1:{port}",
        "--otlp-http",
        "off",
        "--api",
        "off",
        "--control",
        "off",
        "--log-level",
        "warning",
    ]
    with log.open("ab") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, cwd=db.parent)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"collector exited with {process.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("collector did not start listening in 30s")


def stored_count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM spend").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.timeout(180)
def test_sigkill_mid_ingestion_then_restart_stores_every_span_once(tmp_path: Path) -> None:
    db = tmp_path / "spendgate.db"
    log = tmp_path / "collector.log"
    port = free_port()
    batches = [
        [
            span(0x1000 + b, i + 1, ours(developer=f"dev{i % 7}@acme.com", input_tokens=1000 + i, output_tokens=10))
            for i in range(SPANS_PER_BATCH)
        ]
        for b in range(BATCHES)
    ]
    results: list[SpanExportResult] = []
    exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True, timeout=60)

    def export_all() -> None:
        for batch in batches:
            results.append(exporter.export(batch))

    process = start_collector(db, port, log)
    sender = threading.Thread(target=export_all)
    sender.start()
    try:
        # Kill once ingestion is well under way, while the exporter keeps sending.
        deadline = time.monotonic() + 60
        while stored_count(db) < BATCHES * SPANS_PER_BATCH // 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        killed_at = stored_count(db)
        assert 0 < killed_at < BATCHES * SPANS_PER_BATCH, "the kill must land mid-ingestion"

        process = start_collector(db, port, log)
        sender.join(150)
        assert not sender.is_alive(), "the exporter never finished its retries"
    finally:
        exporter.shutdown()
        process.send_signal(signal.SIGTERM)
        assert 0 == process.wait(30), log.read_text()

    assert [SpanExportResult.SUCCESS] * BATCHES == results
    with sqlite3.connect(db) as conn:
        rows, distinct = conn.execute("SELECT count(*), count(DISTINCT trace_id || span_id) FROM spend").fetchone()
        rolled_daily = conn.execute("SELECT sum(requests), sum(input_tokens) FROM rollup_daily").fetchone()
        rolled_monthly = conn.execute("SELECT sum(requests) FROM rollup_monthly").fetchone()[0]
        raw_input = conn.execute("SELECT sum(input_tokens) FROM spend").fetchone()[0]
    total = BATCHES * SPANS_PER_BATCH
    assert (total, total) == (rows, distinct)
    assert (total, raw_input) == rolled_daily
    assert total == rolled_monthly
