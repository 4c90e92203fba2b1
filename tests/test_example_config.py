"""``examples/spendgate.yaml`` as a user copies it: one collector, two proxies, and a budget that pauses both.

The newcomer review's defect 2: a collector and proxies set up from the example used to ignore
budgets, because the example had no ``control:`` section and a proxy without one ran standalone.
Here the example is used as is, but for the provider's ``base_url`` (pointed at the simulator)
and the ports: the proxies take theirs from ``SPENDGATE_PROXY_LISTEN`` and ``--otlp-endpoint``,
the collector from ``SPENDGATE_COLLECTOR_*``. When the default control address 127.0.0.1:4320 is
free, the control plane is left at its default on both sides (nothing names it); when another
collector holds that port on this machine, both sides are moved to a free port by environment.
"""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from spendgate_proxy.keys import create_key
from spendgate_simulator import SimulatorConfig
from spendgate_simulator import create_app as create_simulator
from tests.support.aio_server import ServerHandle, serve_app

REPO = Path(__file__).resolve().parents[1]
SPENDGATE = [sys.executable, "-c", "from spendgate_app.cli import main; main()"]
DEFAULT_CONTROL = ("127.0.0.1", 4320)
BODY = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "refactor the billing module " * 20}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (httpx.TransportError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def simulator() -> Iterator[ServerHandle]:
    with serve_app(lambda: create_simulator(SimulatorConfig(chunks=5))) as sim:
        yield sim


def test_the_example_config_enforces_a_team_budget_on_two_proxies(tmp_path: Path, simulator: ServerHandle) -> None:
    example = (REPO / "examples" / "spendgate.yaml").read_text()
    assert "https://api.openai.com/v1" in example
    config = tmp_path / "spendgate.yaml"
    config.write_text(example.replace("https://api.openai.com/v1", simulator.url + "/v1"))
    keys_file = tmp_path / "keys.yaml"
    keys = {user: create_key(keys_file, user=user, team="platform")[0] for user in ("ana@acme.com", "bo@acme.com")}
    other, _ = create_key(keys_file, user="cy@acme.com", team="mobile")

    grpc_port, api_port = _free_port(), _free_port()
    api = f"http://127.0.0.1:{api_port}"
    control_env: dict[str, str] = {}
    if not _port_free(*DEFAULT_CONTROL):  # another collector on this machine: both sides move, by environment
        control = f"127.0.0.1:{_free_port()}"
        control_env = {"SPENDGATE_COLLECTOR_CONTROL": control, "SPENDGATE_CONTROL_ENDPOINT": control}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("SPENDGATE_", "OTEL_"))}
    collector_env = {
        **base_env,
        **control_env,
        "SPENDGATE_COLLECTOR_DB": str(tmp_path / "spend.db"),
        "SPENDGATE_COLLECTOR_KEYS_FILE": str(keys_file),
        "SPENDGATE_COLLECTOR_OTLP_GRPC": f"127.0.0.1:{grpc_port}",
        "SPENDGATE_COLLECTOR_OTLP_HTTP": "off",
        "SPENDGATE_COLLECTOR_API": f"127.0.0.1:{api_port}",
        # Budget states reach the proxies at most this often (default 5 s).
        "SPENDGATE_COLLECTOR_CONTROL_BUDGET_REFRESH_S": "1",
    }
    procs: dict[str, subprocess.Popen[str]] = {}
    proxies = [_free_port(), _free_port()]
    try:
        collector = procs["collector"] = subprocess.Popen(
            [*SPENDGATE, "collector", "--config", str(config)], env=collector_env, stderr=subprocess.PIPE, text=True
        )
        _wait(
            lambda: collector.poll() is not None or httpx.get(api + "/healthz").status_code == 200, 30, "the collector"
        )
        if collector.poll() is not None:
            err = collector.stderr.read()  # type: ignore[union-attr]
            assert not control_env and "control: cannot listen on" in err, err
            # The default control port was taken between the check and the start: move both sides.
            control = f"127.0.0.1:{_free_port()}"
            control_env = {"SPENDGATE_COLLECTOR_CONTROL": control, "SPENDGATE_CONTROL_ENDPOINT": control}
            collector_env.update(control_env)
            procs["collector"] = subprocess.Popen(
                [*SPENDGATE, "collector", "--config", str(config)], env=collector_env, stderr=subprocess.PIPE, text=True
            )
            _wait(lambda: httpx.get(api + "/healthz").status_code == 200, 30, "the collector")
        for i, port in enumerate(proxies):
            proxy_env = {
                **base_env,
                **{k: v for k, v in control_env.items() if not k.startswith("SPENDGATE_COLLECTOR_")},
                "OPENAI_API_KEY": "sk-sim",
                "SPENDGATE_PROXY_LISTEN": f"127.0.0.1:{port}",
                "SPENDGATE_KEYS_FILE": str(keys_file),
            }
            procs[f"proxy{i}"] = subprocess.Popen(
                [*SPENDGATE, "proxy", "--config", str(config), "--otlp-endpoint", f"http://127.0.0.1:{grpc_port}"],
                env=proxy_env,
                stderr=subprocess.PIPE,
                text=True,
            )
        for port in proxies:
            _wait(
                lambda p=port: httpx.get(f"http://127.0.0.1:{p}/healthz").json()["control"]["state"] == "connected",
                30,
                "the proxies' control streams",
            )
        assert 2 == len(httpx.get(api + "/healthz").json()["control"]["proxies"])

        def call(port: int, key: str) -> httpx.Response:
            return httpx.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json=BODY,
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )

        # Traffic on both proxies, stored and priced before the budget is set.
        for port, user in zip(proxies, keys, strict=True):
            assert 200 == call(port, keys[user]).status_code
        month = time.strftime("%Y-%m", time.gmtime())
        _wait(
            lambda: (
                sum(r["requests"] for r in httpx.get(api + "/api/spend", params={"month": month}).json()["rows"]) >= 2
            ),
            30,
            "the calls to be stored",
        )

        budget = subprocess.run(
            [*SPENDGATE, "budgets", "set", "platform", "--team", "platform", "--limit", "0.0001", "--api", api],
            capture_output=True,
            text=True,
            timeout=60,
            env=base_env,
        )
        assert 0 == budget.returncode, budget.stderr
        assert "now pause" in budget.stdout + budget.stderr
        # The verdict reaches both proxies over their streams (milliseconds); then the next call is refused.
        for port in proxies:
            _wait(
                lambda p=port: httpx.get(f"http://127.0.0.1:{p}/healthz").json()["control"]["verdicts"] >= 1,
                10,
                "the pause verdict to reach the proxies",
            )
        for port, user in zip(proxies, keys, strict=True):
            refused = call(port, keys[user])
            assert 402 == refused.status_code, refused.text
            assert "budget_paused" == refused.json()["error"]["code"]
        assert 200 == call(proxies[0], other).status_code  # another team is not touched
    finally:
        for proc in procs.values():
            proc.terminate()
        for name, proc in procs.items():
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                err = ""
            if "Traceback" in (err or ""):
                print(f"--- {name} stderr ---\n{err}")
