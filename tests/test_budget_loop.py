"""The verdict loop for real: one collector process, two proxy processes, one simulated provider.

A team budget is crossed by traffic split across both proxies; both pause the team within the
lag; other teams are untouched; the collector restarts and the proxies keep enforcing the last
state, resubscribe and converge; an override lifts the pause on both; a ``route`` threshold
rewrites the model on both; a successful reply to a call within a budget carries the budget's
state in ``x-spendgate-budget*`` headers; and the next period (reached by restarting the collector
with its ``clock_offset_s`` test hook) lifts a pause on both proxies.
"""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from spendgate_proxy.keys import create_key
from spendgate_simulator import SimulatorConfig
from spendgate_simulator import create_app as create_simulator
from tests.support.aio_server import ServerHandle, serve_app

SPENDGATE = [sys.executable, "-c", "from spendgate_app.cli import main; main()"]
BODY = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "refactor the billing module " * 20}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` until true; returns the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Loop:
    tmp: Path
    sim: ServerHandle
    keys: dict[str, str]
    grpc: int
    control: int
    api: int
    proxies: list[int]
    procs: dict[str, subprocess.Popen[str]]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api}"

    def start_collector(self, **extra_env: str) -> None:
        env = {
            **os.environ,
            "SPENDGATE_COLLECTOR_CONTROL_HEARTBEAT_S": "1",
            # Budget states reach the proxies at most this often (default 5 s): 1 s keeps the test short.
            "SPENDGATE_COLLECTOR_CONTROL_BUDGET_REFRESH_S": "1",
            **extra_env,
        }
        self.procs["collector"] = subprocess.Popen(
            [
                *SPENDGATE,
                "collector",
                "--db",
                str(self.tmp / "spend.db"),
                "--otlp-grpc",
                f"127.0.0.1:{self.grpc}",
                "--otlp-http",
                "off",
                "--api",
                f"127.0.0.1:{self.api}",
                "--keys-file",
                str(self.tmp / "keys.yaml"),
                "--control",
                f"127.0.0.1:{self.control}",
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait(lambda: httpx.get(self.api_url + "/healthz").status_code == 200, 30, "the collector")

    def stop_collector(self) -> None:
        proc = self.procs.pop("collector")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)

    def call(self, proxy: int, user: str, model: str = "gpt-4.1") -> httpx.Response:
        return httpx.post(
            f"http://127.0.0.1:{proxy}/v1/chat/completions",
            json={**BODY, "model": model},
            headers={"Authorization": f"Bearer {self.keys[user]}"},
            timeout=30,
        )

    def budget(self, budget_id: str, body: dict) -> None:
        resp = httpx.put(f"{self.api_url}/api/budgets/{budget_id}", json=body, headers={"X-Spendgate-Actor": "test"})
        assert resp.status_code in (200, 201), resp.text

    def status(self, budget_id: str) -> dict[str, Any]:
        rows = httpx.get(f"{self.api_url}/api/budgets/status").json()["budgets"]
        return next(row for row in rows if row["id"] == budget_id)

    def pause_both(self, users: tuple[str, str] = ("ana@acme.com", "bo@acme.com")) -> None:
        """Traffic from two developers, split across the two proxies, until both refuse them."""
        sent = 0
        while self.call(self.proxies[0], users[0]).status_code != 402:
            assert self.call(self.proxies[1], users[1]).status_code in (200, 402)
            sent += 1
            assert sent < 200, "the budget never paused the team"
        for port, user in zip(self.proxies, users, strict=True):
            _wait(lambda p=port, u=user: self.call(p, u).status_code == 402, 10, "both proxies to pause")


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    keys_file = tmp_path / "keys.yaml"
    keys = {}
    for user, team in [("ana@acme.com", "platform"), ("bo@acme.com", "platform"), ("cy@acme.com", "mobile")]:
        keys[user], _ = create_key(keys_file, user=user, team=team)
    with serve_app(lambda: create_simulator(SimulatorConfig(chunks=5))) as sim:
        lp = Loop(tmp_path, sim, keys, _free_port(), _free_port(), _free_port(), [_free_port(), _free_port()], {})
        try:
            lp.start_collector()
            for i, port in enumerate(lp.proxies):
                cfg = tmp_path / f"proxy{i}.yaml"
                cfg.write_text(
                    f"listen: 127.0.0.1:{port}\nkeys_file: {keys_file}\n"
                    f"providers:\n  sim:\n    base_url: {sim.url}/v1\n"
                    "models:\n  - {name: gpt-4.1, provider: sim}\n  - {name: gpt-4.1-mini, provider: sim}\n"
                    f"telemetry:\n  endpoint: http://127.0.0.1:{lp.grpc}\n  export_interval_s: 1.0\n"
                    f"control:\n  endpoint: 127.0.0.1:{lp.control}\n  heartbeat_timeout_s: 3\n"
                    "  reconnect_initial_backoff_s: 0.1\n  reconnect_max_backoff_s: 1\n  proxy_id: proxy-"
                    + str(i)
                    + "\n"
                )
                lp.procs[f"proxy{i}"] = subprocess.Popen(
                    [*SPENDGATE, "proxy", "--config", str(cfg)], stderr=subprocess.PIPE, text=True
                )
            for port in lp.proxies:
                _wait(
                    lambda p=port: httpx.get(f"http://127.0.0.1:{p}/healthz").json()["control"]["ready"],
                    30,
                    "the proxies' first control snapshot",
                )
            yield lp
        finally:
            for proc in lp.procs.values():
                proc.terminate()
            for name, proc in lp.procs.items():
                try:
                    _, err = proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    err = ""
                if "Traceback" in (err or ""):
                    print(f"--- {name} stderr ---\n{err}")


def test_team_budget_pauses_on_both_proxies_survives_restart_and_override_lifts(loop: Loop) -> None:
    p0, p1 = loop.proxies
    loop.budget(
        "platform",
        {
            "name": "platform monthly",
            "scope": {"team": "platform"},
            "period": "month",
            "limit_usd": 0.003,
            "owner": "lead@acme.com",
        },
    )

    # Traffic from two developers of the team, split across the two proxies, until one refuses.
    sent, paused_at = 0, None
    while paused_at is None:
        for port, user in ((p0, "ana@acme.com"), (p1, "bo@acme.com")):
            resp = loop.call(port, user)
            if resp.status_code == 402:
                paused_at = port
                break
            assert resp.status_code == 200, resp.text
            sent += 1
        assert sent < 200, "the budget never paused the team"
    error = loop.call(paused_at, "ana@acme.com").json()["error"]
    assert (error["type"], error["code"]) == ("budget_exceeded", "budget_paused")
    assert "platform" in error["message"] and "lead@acme.com" in error["message"]
    # ... and the other proxy pauses the team too, within the lag.
    other = p1 if paused_at == p0 else p0
    lag = _wait(lambda: loop.call(other, "bo@acme.com").status_code == 402, 10, "the second proxy to pause")
    assert lag < 10
    # Other teams are not touched.
    assert loop.call(p0, "cy@acme.com").status_code == 200
    assert loop.call(p1, "cy@acme.com").status_code == 200

    # Collector down: the proxies keep enforcing the last state (fail-static) ...
    loop.stop_collector()
    assert loop.call(p0, "ana@acme.com").status_code == 402
    assert loop.call(p1, "bo@acme.com").status_code == 402
    assert loop.call(p1, "cy@acme.com").status_code == 200  # ... and keep serving everyone else.
    # Back up: totals were durable, the verdict is rebuilt, the proxies resubscribe and agree.
    loop.start_collector()
    for port in loop.proxies:
        _wait(
            lambda p=port: httpx.get(f"http://127.0.0.1:{p}/healthz").json()["control"]["connected"],
            20,
            "the proxies to resubscribe",
        )
        assert loop.call(port, "ana@acme.com").status_code == 402

    # An override lifts the pause on both proxies.
    override = {"action": "lift", "for": "2h", "reason": "refactor must finish", "actor": "lead@acme.com"}
    resp = httpx.post(f"{loop.api_url}/api/budgets/platform/overrides", json=override)
    assert resp.status_code in (200, 201), resp.text
    for port in loop.proxies:
        _wait(lambda p=port: loop.call(p, "ana@acme.com").status_code == 200, 10, "the override to reach a proxy")
    audit = httpx.get(f"{loop.api_url}/api/audit").json()
    assert any("lead@acme.com" in str(entry) for entry in audit.get("entries", audit))

    # `spendgate status` shows the budget, its override and both proxies.
    status = subprocess.run([*SPENDGATE, "status", "--api", loop.api_url], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "2 proxies connected" in status.stdout
    assert "NOT ENFORCED" not in status.stdout  # both resubscribed to the restarted collector
    assert "proxy-0" in status.stdout and "proxy-1" in status.stdout
    assert "team=platform" in status.stdout
    assert "override: lift" in status.stdout and "lead@acme.com" in status.stdout


def test_route_threshold_rewrites_the_model_on_both_proxies(loop: Loop) -> None:
    route = {"at": 1.0, "action": "route", "from": "gpt-4.1", "to": "gpt-4.1-mini"}
    loop.budget("mobile", {"scope": {"team": "mobile"}, "period": "day", "limit_usd": 0.002, "thresholds": [route]})
    served = []
    for _ in range(60):
        for port in loop.proxies:
            resp = loop.call(port, "cy@acme.com")
            assert resp.status_code == 200, resp.text
            served.append(resp.json()["model"])
        if served[-1] == "gpt-4.1-mini":
            break
        time.sleep(0.1)
    assert served[0] == "gpt-4.1"
    assert served[-1] == "gpt-4.1-mini", "the route verdict never arrived"
    for port in loop.proxies:
        _wait(lambda p=port: loop.call(p, "cy@acme.com").json()["model"] == "gpt-4.1-mini", 10, "both proxies to route")
    # Routing is per team: the platform team still gets what it asks for.
    assert loop.call(loop.proxies[0], "ana@acme.com").json()["model"] == "gpt-4.1"


BUDGET_HEADERS = (
    "x-spendgate-budget",
    "x-spendgate-budget-remaining-usd",
    "x-spendgate-budget-limit-usd",
    "x-spendgate-budget-reset",
    "x-spendgate-budget-state",
)


def test_budget_headers_tell_a_client_within_a_budget_where_it_stands(loop: Loop) -> None:
    p0, p1 = loop.proxies
    loop.budget("platform", {"scope": {"team": "platform"}, "period": "day", "limit_usd": 5.0})
    # The state is pushed as soon as the budget exists: no spend needed for the headers to appear.
    for port in loop.proxies:
        _wait(lambda p=port: "x-spendgate-budget" in loop.call(p, "ana@acme.com").headers, 10, "budget headers")
    period_end = datetime.fromisoformat(loop.status("platform")["period"]["end"])

    def budget_headers(resp: httpx.Response) -> tuple[str, ...]:
        assert resp.status_code == 200, resp.text
        return tuple(resp.headers.get(name, "") for name in BUDGET_HEADERS)

    budget, remaining, limit, reset, state = budget_headers(loop.call(p0, "ana@acme.com"))
    assert ("platform", "5.000000", period_end, "ok") == (budget, limit, datetime.fromisoformat(reset), state)
    assert 0 < float(remaining) <= 5.0
    # Spend shows in `remaining` after the export interval plus the collector's refresh.
    _wait(
        lambda: float(loop.call(p1, "bo@acme.com").headers["x-spendgate-budget-remaining-usd"]) < 5.0,
        15,
        "spend to lower the remaining budget",
    )
    spent = loop.status("platform")["spend_usd"]
    # The headers never show more spend than the collector has counted (1e-6: they are rounded to 6 places).
    assert 0 < 5.0 - float(budget_headers(loop.call(p1, "bo@acme.com"))[1]) <= spent + 1e-6

    key = loop.keys["ana@acme.com"]
    auth = {"Authorization": f"Bearer {key}"}
    # Streamed Chat Completions (headers go out before the first chunk) ...
    with httpx.stream(
        "POST", f"http://127.0.0.1:{p0}/v1/chat/completions", json={**BODY, "stream": True}, headers=auth, timeout=30
    ) as resp:
        resp.read()
        assert "platform" == budget_headers(resp)[0]
    # ... the Anthropic Messages door (translated to the OpenAI-format provider) ...
    messages = {"model": "gpt-4.1", "max_tokens": 64, "messages": BODY["messages"]}
    resp = httpx.post(f"http://127.0.0.1:{p1}/v1/messages", json=messages, headers={"x-api-key": key}, timeout=30)
    assert "platform" == budget_headers(resp)[0]
    # ... and the Cursor route.
    resp = httpx.post(f"http://127.0.0.1:{p0}/cursor/v1/chat/completions", json=BODY, headers=auth, timeout=30)
    assert "platform" == budget_headers(resp)[0]

    # A developer outside every budget sees none of them.
    resp = loop.call(p0, "cy@acme.com")
    assert 200 == resp.status_code
    assert [] == [name for name in BUDGET_HEADERS if name in resp.headers]


def test_the_next_period_lifts_a_pause_on_both_proxies(loop: Loop) -> None:
    loop.budget("platform", {"scope": {"team": "platform"}, "period": "day", "limit_usd": 0.003})
    loop.pause_both()
    paused = loop.status("platform")
    assert "pause" == paused["state"] and paused["spend_usd"] > 0.003

    # The collector comes back one day ahead (test hook): its budgets are in the next period.
    loop.stop_collector()
    loop.start_collector(SPENDGATE_COLLECTOR_CLOCK_OFFSET_S="86400")
    for port, user in zip(loop.proxies, ("ana@acme.com", "bo@acme.com"), strict=True):
        _wait(lambda p=port, u=user: loop.call(p, u).status_code == 200, 20, "the new period to reach a proxy")
    status = loop.status("platform")
    assert (paused["period"]["end"], 0.0, "ok", []) == (
        status["period"]["start"],
        status["spend_usd"],
        status["state"],
        status["verdicts"],
    )
