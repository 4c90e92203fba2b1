"""The export examples hold together: the OpenTelemetry Collector config and the Grafana dashboard.

No ``otelcol-contrib`` binary can be installed here (it ships as GitHub release binaries and images,
not through PyPI, npm or Debian), so its config is checked for structure: every pipeline names
components that are defined, with known contrib types, and its filters agree with spendgate's own.
The dashboard's PromQL is checked against what a running collector's ``/metrics`` really exports.
"""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from spendgate_collector.exporters.config import ExporterConfig
from spendgate_collector.exporters.enrich import CONTENT_ATTRIBUTES, CONTENT_PREFIXES
from spendgate_semconv import attributes as sc
from tests.collector.conftest import run_collector
from tests.collector.test_exporters import exporter, flush, llm, plain, send
from tests.export.backends import Failure, GrpcBackend

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Component types of the contrib distribution the example may use.
KNOWN_TYPES = {
    "receivers": {"otlp"},
    "processors": {"batch", "memory_limiter", "filter", "transform", "attributes", "tail_sampling"},
    "exporters": {"otlp", "otlphttp", "datadog", "debug", "loadbalancing"},
    "connectors": {"spanmetrics", "routing"},
}
_COMPONENT_ID = re.compile(r"^[a-z][a-z0-9_]*(/[A-Za-z0-9_.-]+)?$")


@pytest.fixture(scope="module")
def otelcol() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / "otelcol-spendgate.yaml").read_text())


def test_otelcol_pipelines_use_defined_components_of_known_types(otelcol: dict[str, Any]) -> None:
    assert {"receivers", "processors", "exporters", "service"} <= set(otelcol)
    pipelines = otelcol["service"]["pipelines"]
    assert pipelines
    used: set[tuple[str, str]] = set()
    for name, pipeline in pipelines.items():
        assert name.split("/")[0] == "traces", name
        assert pipeline["receivers"] and pipeline["exporters"], name
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in (otelcol.get(kind) or {}), f"{name}: {kind} {component} is not defined"
                used.add((kind, component))
        if "memory_limiter" in pipeline.get("processors", []):
            assert "memory_limiter" == pipeline["processors"][0], f"{name}: memory_limiter must come first"
    for kind in ("receivers", "processors", "exporters"):
        for component in otelcol[kind]:
            assert _COMPONENT_ID.match(component), component
            assert component.split("/")[0] in KNOWN_TYPES[kind], component
            assert (kind, component) in used, f"{kind} {component} is defined but no pipeline uses it"


def test_otelcol_receives_what_the_spendgate_exporter_sends(otelcol: dict[str, Any]) -> None:
    grpc_endpoint = otelcol["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert grpc_endpoint.endswith(":4317")
    # The spendgate side, as the example's header shows it, is a valid exporter config.
    ExporterConfig(name="otelcol", protocol="grpc", endpoint="http://otelcol:4317")


def test_otelcol_filters_agree_with_spendgate(otelcol: dict[str, Any]) -> None:
    (condition,) = otelcol["processors"]["filter/llm_only"]["traces"]["span"]
    assert f'attributes["{sc.OPENINFERENCE_SPAN_KIND}"] != "{sc.SPAN_KIND_LLM}"' == condition

    statements = otelcol["processors"]["transform/drop_content"]["trace_statements"][0]["statements"]
    # Each statement is delete_matching_keys(attributes, "<regex>"), the regex an OTTL string literal.
    literals = [re.fullmatch(r'delete_matching_keys\(attributes, "(.*)"\)', s).group(1) for s in statements]  # type: ignore[union-attr]
    patterns = [re.compile(literal.replace("\\\\", "\\")) for literal in literals]

    def removed(key: str) -> bool:
        return any(p.search(key) for p in patterns)

    content = sorted(CONTENT_ATTRIBUTES) + [f"{prefix}0.message.content" for prefix in CONTENT_PREFIXES]
    assert [] == [key for key in content if not removed(key)]
    kept = [
        sc.LLM_MODEL_NAME,
        sc.LLM_TOKEN_COUNT_PROMPT,
        sc.LLM_TOKEN_COUNT_COMPLETION,
        sc.LLM_COST_TOTAL,
        sc.USER_ID,
        sc.SPENDGATE_TEAM,
        sc.GEN_AI_USAGE_INPUT_TOKENS,
        sc.GEN_AI_REQUEST_MODEL,
        sc.LLM_INVOCATION_PARAMETERS,
        "gen_ai.usage.prompt_tokens",
    ]
    assert [] == [key for key in kept if removed(key)]


def _scrape(tmp_path: Path) -> dict[str, set[str]]:
    """Sample names a running collector exports (with exporters busy), each with its label names."""
    backend = GrpcBackend().start()
    backend.failures.append(Failure())  # one retry, so every exporter series exists
    try:
        with run_collector(tmp_path, exporters=[exporter("tempo", backend.endpoint)]) as collector:
            send(collector, [llm(1), plain(2)])
            assert flush(collector)
            with urllib.request.urlopen(f"{collector.api_url}/metrics", timeout=5) as response:
                text = response.read().decode()
    finally:
        backend.stop()
    samples: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?", line)
        assert match, line
        labels = {part.split("=")[0] for part in re.findall(r'[a-zA-Z_][a-zA-Z0-9_]*="', match.group(3) or "")}
        samples.setdefault(match.group(1), set()).update(label.rstrip('="') for label in labels)
    return samples


def test_grafana_dashboard_queries_only_metrics_the_collector_exports(tmp_path: Path) -> None:
    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exported = _scrape(tmp_path)

    problems = []
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            names = re.findall(r"\bspendgate_[a-z_]+", expr)
            assert names, expr
            for name in names:
                if name not in exported:
                    problems.append(f"{panel['title']}: {name} is not exported")
                    continue
            labels = set()
            for group in re.findall(r"\bby \(([^)]*)\)", expr):
                labels.update(label.strip() for label in group.split(","))
            available = set().union(*(exported.get(name, set()) for name in names))
            for label in labels - available:
                problems.append(f"{panel['title']}: no metric in {expr!r} has a {label!r} label")
    assert [] == problems
