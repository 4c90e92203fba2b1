"""The Cursor Admin API poller inside a real ``Collector``: config, start/shutdown, writes via the pipeline."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from spendgate_collector.app import Collector
from spendgate_collector.config import CollectorConfig, load_config
from spendgate_collector.errors import ConfigError
from spendgate_simulator.cursor_admin import AdminSimulator, create_admin_app, usage_event
from tests.support.aio_server import start_app


def test_config_section_defaults_and_env_json() -> None:
    cfg = CollectorConfig()
    assert cfg.cursor_admin.enabled is False
    assert cfg.cursor_admin.base_url == "https://api.cursor.com"
    assert cfg.cursor_admin.api_key_env == "CURSOR_ADMIN_API_KEY"
    assert cfg.cursor_admin.requests_per_minute == 20
    env = {"SPENDGATE_COLLECTOR_CURSOR_ADMIN": '{"enabled": true, "page_size": 50}'}
    loaded = load_config(environ=env)
    assert loaded.cursor_admin.enabled and loaded.cursor_admin.page_size == 50
    with pytest.raises(ConfigError, match="cursor_admin"):
        load_config(environ={"SPENDGATE_COLLECTOR_CURSOR_ADMIN": '{"page_size": 0}'})


def test_enabled_without_key_fails_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CURSOR_TEST_KEY", raising=False)
    cfg = CollectorConfig(
        db=tmp_path / "s.db",
        otlp_grpc=None,
        otlp_http=None,
        api=None,
        control=None,
        cursor_admin={"enabled": True, "api_key_env": "CURSOR_TEST_KEY"},
    )

    async def main() -> None:
        with pytest.raises(ConfigError, match=r"\$CURSOR_TEST_KEY"):
            await Collector(cfg).start()

    asyncio.run(main())


def test_collector_polls_and_stores_cursor_billed_spend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURSOR_TEST_KEY", "key_test_team")
    now_ms = time.time_ns() // 1_000_000
    sim = AdminSimulator(
        events=[usage_event(now_ms - 60_000 * i, "alice@acme.dev", total_cents=100) for i in range(1, 4)]
    )

    async def main() -> None:
        runner, port = await start_app(create_admin_app(sim))
        cfg = CollectorConfig(
            db=tmp_path / "s.db",
            otlp_grpc=None,
            otlp_http=None,
            api=None,
            control=None,
            cursor_admin={
                "enabled": True,
                "api_key_env": "CURSOR_TEST_KEY",
                "base_url": f"http://127.0.0.1:{port}",
                "requests_per_minute": 600,
                "poll_interval_s": 0.1,
                "backfill_s": 3600,
            },
        )
        collector = Collector(cfg)
        try:
            await collector.start()
            assert collector.cursor_admin is not None
            for _ in range(200):
                if collector.cursor_admin.totals.inserted >= 3:
                    break
                await asyncio.sleep(0.02)
            assert collector.cursor_admin.totals.inserted == 3
            assert collector.store is not None
            rows = collector.store.raw_rows()
            assert len(rows) == 3 and {r["service_name"] for r in rows} == {"cursor-admin-api"}
            assert sum(r["cost_usd"] for r in rows) == pytest.approx(3.0)
        finally:
            await collector.shutdown()
            await runner.cleanup()

    asyncio.run(main())
