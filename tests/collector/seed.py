"""A small, hand-checkable month of spend: three developers in two teams, sent over real OTLP/HTTP.

Costs use the custom model rates of ``conftest.PRICES_YAML`` (USD per million tokens):
acme-coder input 2.00, cache read 0.20, cache write 2.50, output 8.00; acme-mini input 0.50,
output 1.50. Each span's cost is worked out beside it.
"""

from __future__ import annotations

import httpx

from tests.collector.conftest import RunningCollector
from tests.collector.spans import ours, protobuf_body, span

PLATFORM = {"team": "platform", "cost_center": "CC-1001"}
DATA = {"team": "data", "cost_center": "CC-2002"}

SEED = [
    # (5000 x 2.00 + 4000 x 0.20 + 1000 x 2.50 + 500 x 8.00) / 1e6 = 0.0173
    span(
        0x51,
        1,
        ours(
            developer="ana@acme.com",
            **PLATFORM,
            repo="acme-api",
            model="acme-coder",
            provider="acme",
            input_tokens=10_000,
            cache_read=4000,
            cache_write=1000,
            output_tokens=500,
        ),
        end="2026-11-02T09:00:00",
    ),
    # (2000 x 0.50 + 1000 x 1.50) / 1e6 = 0.0025
    span(
        0x51,
        2,
        ours(
            developer="ana@acme.com",
            **PLATFORM,
            repo="acme-api",
            model="acme-mini",
            provider="acme",
            input_tokens=2000,
            output_tokens=1000,
            feature="chat",
        ),
        end="2026-11-15T16:30:00",
    ),
    # (1000 x 2.00 + 100 x 8.00) / 1e6 = 0.0028
    span(
        0x52,
        3,
        ours(
            developer="bo@acme.com",
            **PLATFORM,
            repo="acme-api",
            model="acme-coder",
            provider="acme",
            input_tokens=1000,
            output_tokens=100,
        ),
        end="2026-11-03T10:00:00",
    ),
    # (3000 x 2.00 + 300 x 8.00) / 1e6 = 0.0084
    span(
        0x52,
        4,
        ours(
            developer="bo@acme.com",
            **PLATFORM,
            repo="acme-infra",
            model="acme-coder",
            provider="acme",
            input_tokens=3000,
            output_tokens=300,
            feature="chat",
        ),
        end="2026-11-20T10:00:00",
    ),
    # A failed call still billed for its input: (100 x 2.00) / 1e6 = 0.0002
    span(
        0x52,
        5,
        ours(
            developer="bo@acme.com",
            **PLATFORM,
            repo="acme-api",
            model="acme-coder",
            provider="acme",
            input_tokens=100,
            output_tokens=0,
            **{"error.type": "500"},
        ),
        end="2026-11-04T10:00:00",
        error=True,
    ),
    # (40000 x 0.50 + 2000 x 1.50) / 1e6 = 0.023
    span(
        0x53,
        6,
        ours(
            developer="cy@acme.com",
            **DATA,
            repo="etl",
            model="acme-mini",
            provider="acme",
            input_tokens=40_000,
            output_tokens=2000,
        ),
        end="2026-11-30T23:59:59",
    ),
    # No price known: counted as unpriced, never as zero.
    span(
        0x53,
        7,
        ours(
            developer="cy@acme.com",
            **DATA,
            repo="etl",
            model="mystery-model",
            provider="acme",
            input_tokens=500,
            output_tokens=50,
        ),
        end="2026-11-10T08:00:00",
    ),
    # October: outside every November query. (1000 x 2.00 + 100 x 8.00) / 1e6 = 0.0028
    span(
        0x51,
        8,
        ours(
            developer="ana@acme.com",
            **PLATFORM,
            repo="acme-api",
            model="acme-coder",
            provider="acme",
            input_tokens=1000,
            output_tokens=100,
        ),
        end="2026-10-31T23:59:59",
    ),
]

CHARGEBACK_CSV_2026_11 = """\
month,developer,team,cost_center,repo,cost_usd,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,reasoning_tokens,requests,unpriced_requests
2026-11,ana@acme.com,platform,CC-1001,acme-api,0.019800,12000,1500,4000,1000,0,2,0
2026-11,bo@acme.com,platform,CC-1001,acme-api,0.003000,1100,100,0,0,0,2,0
2026-11,bo@acme.com,platform,CC-1001,acme-infra,0.008400,3000,300,0,0,0,1,0
2026-11,cy@acme.com,data,CC-2002,etl,0.023000,40500,2050,0,0,0,2,1
"""


def send(running: RunningCollector, spans: list) -> None:
    """Post ``spans`` to the collector over OTLP/HTTP; it answers once they are stored."""
    response = httpx.post(
        running.http_url,
        content=protobuf_body(spans),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def seed(running: RunningCollector) -> None:
    """Send ``SEED`` (twice, to prove retries change nothing) and check the answers."""
    for _ in range(2):
        send(running, SEED)
