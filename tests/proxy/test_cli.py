"""The proxy and key commands as a user runs them: real processes, real OTLP export."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
from click.testing import CliRunner

from spendgate_app.cli import cli
from spendgate_semconv import attributes as A
from tests.proxy.conftest import PROVIDER_KEY
from tests.support.aio_server import ServerHandle
from tests.support.otlp_receiver import otlp_receiver

SPENDGATE = [sys.executable, "-c", "from spendgate_app.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    keys = str(tmp_path / "keys.yaml")
    made = runner.invoke(
        cli,
        [
            "keys",
            "create",
            "--keys-file",
            keys,
            "--user",
            "ana@acme.com",
            "--team",
            "web",
            "--expires",
            "30d",
            "--json",
        ],
    )
    assert made.exit_code == 0, made.output
    created = json.loads(made.output)
    assert created["key"].startswith("sg-")
    listed = runner.invoke(cli, ["keys", "list", "--keys-file", keys])
    assert created["id"] in listed.output and "active" in listed.output
    assert created["key"] not in listed.output
    revoked = runner.invoke(cli, ["keys", "revoke", "--keys-file", keys, created["id"]])
    assert revoked.exit_code == 0
    assert (
        json.loads(runner.invoke(cli, ["keys", "list", "--keys-file", keys, "--json"]).output)[0]["state"] == "revoked"
    )
    missing = runner.invoke(cli, ["keys", "revoke", "--keys-file", keys, "key_nope"])
    assert missing.exit_code == 1
    assert "Error: no key with id 'key_nope'" in missing.output
    bad = runner.invoke(cli, ["keys", "create", "--keys-file", keys, "--user", "ana"])
    assert bad.exit_code == 1 and "email" in bad.output


def test_help_lists_commands_and_examples() -> None:
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"])
    for name in ("proxy", "keys", "collector", "report", "up", "simulate-provider"):
        assert name in top.output
    proxy_help = runner.invoke(cli, ["proxy", "--help"])
    assert "Example:" in proxy_help.output and "--upstream" in proxy_help.output
    assert "--control HOST:PORT|off" in proxy_help.output and "off = standalone" in proxy_help.output


def test_the_control_flag_sets_the_endpoint_or_turns_it_off() -> None:
    from spendgate_proxy.cli import _overrides
    from spendgate_proxy.config import load_config

    for flag, endpoint in (("off", None), ("10.0.0.9:4320", "10.0.0.9:4320"), (None, "127.0.0.1:4320")):
        overrides = _overrides(None, None, None, None, (), None, False, flag)
        assert load_config(overrides=overrides, env={}).control.endpoint == endpoint


def test_proxy_config_error_is_one_clear_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("providers:\n  openai:\n    base_url: ftp://nope\n")
    out = subprocess.run([*SPENDGATE, "proxy", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "providers.openai.base_url" in out.stderr
    assert "Traceback" not in out.stderr


def test_proxy_process_exports_spans_over_otlp_grpc(tmp_path: Path, simulator: ServerHandle) -> None:
    from spendgate_proxy.keys import create_key

    keys = tmp_path / "keys.yaml"
    key, _ = create_key(keys, user="ana@acme.com", team="platform", cost_center="CC-1", repo="acme-api")
    port = _free_port()
    with otlp_receiver() as (endpoint, receiver):
        env = {**os.environ, "SIM_KEY": PROVIDER_KEY, "SPENDGATE_CONTROL_ENDPOINT": "off"}  # no collector here
        proc = subprocess.Popen(
            [
                *SPENDGATE,
                "proxy",
                "--listen",
                f"127.0.0.1:{port}",
                "--keys-file",
                str(keys),
                "--upstream",
                simulator.url + "/v1",
                "--upstream-key-env",
                "SIM_KEY",
                "--model",
                "gpt-4.1",
                "--otlp-endpoint",
                f"http://{endpoint}",
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "proxy did not start"
                time.sleep(0.1)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
            list(
                client.chat.completions.create(
                    model="gpt-4.1", stream=True, messages=[{"role": "user", "content": "hello"}]
                )
            )
            client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hello"}])
            spans = receiver.wait(2)
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "listening on" in err
    assert key not in err and PROVIDER_KEY not in err
    assert len(spans) == 2
    for span in spans:
        attrs = span["attributes"]
        assert span["name"] == "chat gpt-4.1"
        assert span["resource"]["service.name"] == "spendgate-proxy"
        assert attrs[A.USER_ID] == "ana@acme.com"
        assert attrs[A.VCS_REPOSITORY_NAME] == "acme-api"
        assert attrs[A.GEN_AI_USAGE_INPUT_TOKENS] > 0
        assert attrs[A.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    assert {s["attributes"][A.SPENDGATE_STREAM] for s in spans} == {True, False}
