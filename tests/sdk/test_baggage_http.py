"""Attribution crosses an HTTP hop between two services, each its own process using spendgate.configure().

Service A enters ``spendgate.attribute`` and calls service B with the W3C trace context and baggage
injected by OTel's standard propagator; B has no attribution of its own beyond its configure()
defaults, and its LLM span must still be charged to A's caller.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from spendgate_semconv import attributes as sc
from tests.sdk.conftest import attribution_of

ROOT = Path(__file__).resolve().parents[2]
SERVICE = Path(__file__).with_name("_service.py")


@contextmanager
def _service(name: str, *args: str) -> Iterator[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key in [k for k in env if k.startswith("OTEL_")]:
        del env[key]
    proc = subprocess.Popen(
        [sys.executable, str(SERVICE), name, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.strip().isdigit():
            proc.kill()
            raise RuntimeError(f"service {name} did not start: {line!r} {proc.communicate(timeout=10)[1]}")
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        proc.terminate()
        proc.wait(10)


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=20) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def services() -> Iterator[Callable[..., dict[str, Any]]]:
    """Two pairs: A -> B with baggage on, and A -> B where B ignores baggage."""
    with (
        _service("svc-b", "--team", "platform", "--cost-center", "cc-b") as b,
        _service("svc-a", "--downstream", b, "--team", "payments") as a,
        _service("svc-b-closed", "--team", "platform", "--no-baggage") as b_closed,
        _service("svc-a2", "--downstream", b_closed) as a2,
    ):

        def ask(query: str, closed: bool = False) -> dict[str, Any]:
            return _get(f"{a2 if closed else a}/ask?{query}")

        yield ask


def test_baggage_carries_attribution_to_the_downstream_service(services: Callable[..., dict[str, Any]]) -> None:
    result = services("user=ana@acme.com&feature=rag")
    assert "spendgate.user=ana%40acme.com" in result["sent_headers"]["baggage"]
    assert attribution_of(result["own"]["attributes"]) == {
        sc.USER_ID: "ana@acme.com",
        sc.SPENDGATE_FEATURE: "rag",
        sc.SPENDGATE_TEAM: "payments",
    }
    # B: user and feature from A's baggage; team and cost centre from B's own configure() defaults,
    # because A's team came from A's defaults, which are not propagated.
    assert attribution_of(result["downstream"]["attributes"]) == {
        sc.USER_ID: "ana@acme.com",
        sc.SPENDGATE_FEATURE: "rag",
        sc.SPENDGATE_TEAM: "platform",
        sc.SPENDGATE_COST_CENTER: "cc-b",
    }
    assert result["own"]["trace_id"] == result["downstream"]["trace_id"]


def test_each_request_gets_its_own_attribution(services: Callable[..., dict[str, Any]]) -> None:
    users = [services(f"user=dev{i}@acme.com")["downstream"]["attributes"].get(sc.USER_ID) for i in range(5)]
    assert users == [f"dev{i}@acme.com" for i in range(5)]


def test_downstream_can_ignore_baggage(services: Callable[..., dict[str, Any]]) -> None:
    result = services("user=ana@acme.com&feature=rag", closed=True)
    assert result["own"]["attributes"][sc.USER_ID] == "ana@acme.com"
    assert attribution_of(result["downstream"]["attributes"]) == {sc.SPENDGATE_TEAM: "platform"}
