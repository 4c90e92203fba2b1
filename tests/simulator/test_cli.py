"""``spendgate simulate-provider`` as a real process: starts, answers, stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import openai
from click.testing import CliRunner

from spendgate_simulator.cli import simulate_provider_command

# SIGINT is re-armed first: a test runner started in the background may hand it down ignored.
LAUNCH = [
    sys.executable,
    "-c",
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from spendgate_app.cli import main; main()",
    "simulate-provider",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"simulator at {url} did not become healthy in {timeout}s")


def test_serves_and_stops_cleanly() -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [*LAUNCH, "--port", str(port), "--chunks", "3", "--cached-ratio", "0.5", "--api-key", "sk-cli"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_healthy(url, process)
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-cli", max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="gpt-4.1",
                messages=[{"role": "user", "content": "hello there"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert len(chunks) == 1 + 3 + 1 + 1  # role, three deltas, finish, usage
        assert chunks[-1].usage.prompt_tokens_details.cached_tokens == chunks[-1].usage.prompt_tokens // 2
    finally:
        # SIGINT is what Ctrl-C sends.
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert f"listening on http://127.0.0.1:{port}/v1" in stderr
    assert "Traceback" not in stderr


def test_sigterm_stops_cleanly_and_the_key_can_come_from_the_environment() -> None:
    env = {**os.environ, "SPENDGATE_SIM_API_KEY": "sk-from-env"}
    process = subprocess.Popen([*LAUNCH, "--port", "0"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stderr.readline()  # printed once the port is bound, so the real port is known
        assert "listening on http://127.0.0.1:" in line
        url = line.split("listening on ")[1].split("/v1")[0]
        assert httpx.get(url + "/healthz", timeout=5).json() == {"status": "ok"}
        assert httpx.get(url + "/v1/models", timeout=5).status_code == 401
        authorized = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer sk-from-env"}, timeout=5)
        assert authorized.status_code == 200
    finally:
        process.terminate()
        _, rest = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "Traceback" not in rest


def test_bad_options_are_usage_errors() -> None:
    runner = CliRunner()
    result = runner.invoke(simulate_provider_command, ["--cached-ratio", "2"])
    assert result.exit_code == 2
    assert "cached-ratio" in result.output
    result = runner.invoke(simulate_provider_command, ["--error-rate-429", "0.8", "--error-rate-500", "0.8"])
    assert result.exit_code == 2
    assert "must not exceed 1" in result.output


def test_help_ends_with_an_example() -> None:
    result = CliRunner().invoke(simulate_provider_command, ["--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "SPENDGATE_SIM_API_KEY" in result.output
