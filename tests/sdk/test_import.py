"""``import spendgate`` stays cheap: no server stack, no exporter, not even OpenTelemetry until asked."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import spendgate

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = (
    "aiohttp",
    "grpc",
    "spendgate_collector",
    "spendgate_proxy",
    "spendgate_simulator",
    "spendgate_app",
    "uvloop",
    "sqlite_utils",
    "httpx",
    "openai",
)


def _modules_after(code: str) -> list[str]:
    script = textwrap.dedent(code) + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


def _loaded(modules: list[str], prefix: str) -> list[str]:
    return [m for m in modules if m == prefix or m.startswith(prefix + ".")]


def test_import_spendgate_loads_nothing_else() -> None:
    modules = _modules_after("import spendgate")
    for prefix in (*FORBIDDEN, "opentelemetry", "spendgate._setup"):
        assert _loaded(modules, prefix) == [], prefix


def test_the_sdk_api_pulls_no_server_stack() -> None:
    # Using attribute() and configure() (with an in-memory exporter) loads the OTel SDK only.
    modules = _modules_after(
        """
        import spendgate
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        spendgate.configure(exporter=InMemorySpanExporter(), team="t")
        with spendgate.attribute(user="a@b.c"):
            pass
        spendgate.stats()
        spendgate.shutdown()
        """
    )
    for prefix in FORBIDDEN:
        assert _loaded(modules, prefix) == [], prefix


def test_default_grpc_export_loads_the_grpc_client_only() -> None:
    modules = _modules_after(
        """
        import spendgate
        spendgate.configure(endpoint="http://127.0.0.1:9", export_timeout=0.1)
        spendgate.shutdown(100)
        """
    )
    assert _loaded(modules, "grpc")  # the OTLP exporter's client library, which export needs
    for prefix in ("aiohttp", "spendgate_collector", "spendgate_proxy", "uvloop", "sqlite_utils"):
        assert _loaded(modules, prefix) == [], prefix


def test_no_submodule_shadows_a_public_name() -> None:
    # Importing a submodule binds it on the package: one named like a lazy export (as
    # `spendgate.configure` once was) would replace the function with the module.
    submodules = {m.name for m in pkgutil.iter_modules(spendgate.__path__)}
    assert set() == submodules & set(spendgate.__all__)
    assert "_setup" in submodules  # configure() and friends live here
