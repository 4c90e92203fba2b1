"""examples/sdk_app.py runs as documented: on its own (console spans), and against given provider and OTLP endpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openinference.instrumentation.openai")

from spendgate_semconv import attributes as sc
from spendgate_simulator import SimulatorConfig, create_app
from tests.support.aio_server import serve_app
from tests.support.otlp_receiver import otlp_receiver

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sdk_app.py"
EXPECTED = [
    ("ana@acme.com", "rag"),
    ("bob@acme.com", "summarise"),
    ("carol@acme.com", "chat"),
    ("dan@acme.com", "chat"),
]


def _run(extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    env.update({"PYTHONPATH": str(ROOT), **extra_env})
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, timeout=90)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_runs_alone_against_the_in_process_simulator() -> None:
    proc = _run({})
    spans = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted((s[sc.USER_ID], s[sc.SPENDGATE_FEATURE]) for s in spans) == EXPECTED
    for span in spans:
        assert (span[sc.SPENDGATE_TEAM], span[sc.VCS_REPOSITORY_NAME]) == ("search", "acme-rag")
        assert span[sc.LLM_TOKEN_COUNT_PROMPT] > 0
    assert "spans_stamped=4" in proc.stderr
    assert "spans_exported=4" in proc.stderr


def test_uses_openai_base_url_and_the_otlp_endpoint() -> None:
    with (
        serve_app(lambda: create_app(SimulatorConfig(api_key="sk-example"))) as provider,
        otlp_receiver() as (address, receiver),
    ):
        proc = _run(
            {
                "OPENAI_BASE_URL": provider.url + "/v1",
                "OPENAI_API_KEY": "sk-example",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{address}",
            }
        )
        spans = receiver.wait(4, timeout=10)
    assert proc.stdout == ""  # nothing on the console when exporting over OTLP
    assert sorted((s["attributes"][sc.USER_ID], s["attributes"][sc.SPENDGATE_FEATURE]) for s in spans) == EXPECTED
    assert {s["resource"]["service.name"] for s in spans} == {"sdk-example"}
