"""Spans routed through the collector arrive in a real Arize Phoenix as priced LLM spans with our attribution.

Phoenix runs from its own virtualenv (``bash tests/export/setup_phoenix.sh`` makes ``.venv-phoenix``;
``PHOENIX_VENV`` points elsewhere), offline, with a temporary working directory, on loopback ports.
The test runs the example app (``examples/phoenix/app.py``) against a collector configured like
``examples/phoenix/collector.yaml``, first teaching Phoenix spendgate's rates with
``examples/phoenix/sync_prices.py``, then reads the spans back through Phoenix's REST API and its
cost through Phoenix's GraphQL API. Skipped, saying why, when the Phoenix virtualenv is absent.
"""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from spendgate_proxy.keys import create_key
from tests.collector.conftest import run_collector

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "phoenix"
PHOENIX_VENV = Path(os.environ.get("PHOENIX_VENV", ROOT / ".venv-phoenix"))
PHOENIX_BIN = PHOENIX_VENV / "bin" / "phoenix"
PROJECT = "spendgate-test"
START_TIMEOUT_S = 120.0

pytestmark = [
    pytest.mark.skipif(
        not PHOENIX_BIN.exists(),
        reason=f"Arize Phoenix is not installed in {PHOENIX_VENV}: run `bash tests/export/setup_phoenix.sh`",
    ),
    pytest.mark.timeout(420),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


COST_QUERY = """
query ($id: ID!) {
  node(id: $id) { ... on Span { costSummary { prompt { cost } completion { cost } total { cost } } } }
}"""


def _graphql(base: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{base}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert not answer.get("errors"), answer
    return answer["data"]


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Phoenix server on free loopback ports; yields its base URL."""
    workdir = tmp_path_factory.mktemp("phoenix")
    port = _free_port()
    env = {
        **os.environ,
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(_free_port()),
    }
    log = (workdir / "phoenix.log").open("wb")
    proc = subprocess.Popen([str(PHOENIX_BIN), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).close()
                break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError(
                        f"Phoenix did not start: {(workdir / 'phoenix.log').read_text(errors='replace')[-2000:]}"
                    ) from None
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _sync_prices_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_prices", EXAMPLE / "sync_prices.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _spans(base: str, trace_id: str) -> list[dict[str, Any]]:
    try:
        rows = _get(f"{base}/v1/projects/{PROJECT}/spans?limit=100")["data"]
    except urllib.error.HTTPError:  # the project appears with its first span
        return []
    return [s for s in rows if s["context"]["trace_id"] == trace_id]


def test_spans_arrive_in_phoenix_as_llm_spans_with_model_tokens_attribution_and_matching_cost(
    phoenix: str, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.yaml"
    principal = create_key(keys_file, user="ana@acme.com", team="platform", cost_center="CC-1001", repo="acme-api")[1]
    prices = EXAMPLE / "prices.yaml"

    # Phoenix prices a span when it arrives, from its own table: give it our rates first.
    outcome = _sync_prices_module().sync(phoenix, [("openai", "gpt-4.1-mini")], prices)
    assert {"gpt-4.1-mini": "created"} == outcome
    models = _graphql(phoenix, "{ generativeModels { edges { node { name namePattern kind } } } }")
    custom = [e["node"] for e in models["generativeModels"]["edges"] if e["node"]["kind"] == "CUSTOM"]
    assert [{"name": "spendgate:gpt-4.1-mini", "namePattern": "^gpt\\-4\\.1\\-mini$", "kind": "CUSTOM"}] == custom
    time.sleep(6)  # Phoenix re-reads its model table every 5 s

    # The example's exporter, pointed at this Phoenix.
    example = yaml.safe_load((EXAMPLE / "collector.yaml").read_text())["collector"]["exporters"][0]
    exporter = {**example, "endpoint": f"{phoenix}/v1/traces", "retry_initial_s": 0.1}
    with run_collector(tmp_path, keys_file=keys_file, prices=prices, exporters=[exporter]) as collector:
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{collector.grpc_endpoint}",
            "SPENDGATE_KEY_ID": principal.principal.key_id,
            "PHOENIX_PROJECT_NAME": PROJECT,
        }
        run = subprocess.run(
            [sys.executable, str(EXAMPLE / "app.py")], env=env, capture_output=True, text=True, timeout=60
        )
        assert 0 == run.returncode, run.stderr
        trace_id = run.stdout.strip()
        assert collector.collector.exporters is not None
        assert collector.collector.exporters.wait_idle(30)
        stats = collector.collector.exporters.stats()["phoenix"]
    assert (4, 0) == (stats.sent_spans, sum(stats.dropped_spans.values()))

    deadline = time.monotonic() + 30
    while len(spans := _spans(phoenix, trace_id)) < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert 4 == len(spans)
    by_name = {s["name"]: s for s in spans}
    assert {"answer ticket", "search docs", "chat gpt-4.1-mini"} == set(by_name)
    assert "CHAIN" == by_name["answer ticket"]["span_kind"]
    assert "TOOL" == by_name["search docs"]["span_kind"]

    llm = sorted((s for s in spans if s["span_kind"] == "LLM"), key=lambda s: s["attributes"]["llm.token_count.prompt"])
    assert 2 == len(llm)
    root_id = by_name["answer ticket"]["context"]["span_id"]
    for span, (prompt, completion) in zip(llm, [(1200, 80), (2400, 350)], strict=True):
        attrs = span["attributes"]
        assert root_id == span["parent_id"]
        assert ("gpt-4.1-mini", prompt, completion) == (
            attrs["llm.model_name"],
            attrs["llm.token_count.prompt"],
            attrs["llm.token_count.completion"],
        )
        # Attribution the span did not carry, filled in by the collector from the key's principal.
        assert ("ana@acme.com", "platform", "CC-1001", "acme-api") == (
            attrs["user.id"],
            attrs["spendgate.team"],
            attrs["spendgate.cost_center"],
            attrs["vcs.repository.name"],
        )
        expected = (prompt * 0.30 + completion * 1.20) / 1e6  # examples/phoenix/prices.yaml
        assert pytest.approx(expected) == attrs["llm.cost.total"]
        assert "override" == attrs["spendgate.cost.source"]

        # Phoenix's own cost, from the rates sync_prices.py gave it, agrees with the chargeback.
        cost = _graphql(phoenix, COST_QUERY, {"id": span["id"]})["node"]["costSummary"]
        assert pytest.approx(expected) == cost["total"]["cost"]
        assert pytest.approx(attrs["llm.cost.prompt"]) == cost["prompt"]["cost"]
        assert pytest.approx(attrs["llm.cost.completion"]) == cost["completion"]["cost"]
