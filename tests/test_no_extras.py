"""Without extras (a plain ``pip install spendgate``) every ``--help`` works, and every command either works
or says in one line which extra to install; never a traceback.

The CLI runs in a subprocess that cannot import what a base install lacks (``tests/support/no_extras.py``).
Commands are enumerated from the click group, so a new command is covered without touching this file;
``NEEDS_EXTRA`` is what we promise about the ones that cannot run without an extra.
``tests/test_base_install.py`` checks the same in a real venv with the base dependencies only.
"""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.collector.conftest import run_collector
from tests.support import no_extras

ROOT = Path(__file__).resolve().parents[1]

# Top-level command -> the extra it needs to run (every other command runs without extras).
NEEDS_EXTRA = {
    "up": "all",
    "proxy": "proxy",
    "collector": "collector",
    "report": "collector",
    "simulate-provider": "proxy",
}
MESSAGE = re.compile(
    r"Error: 'spendgate (\S+)' needs the '(\w+)' extra: pip install 'spendgate\[(\w+)\]' \(missing module \w+\)\n"
)


@pytest.fixture(scope="module")
def blocked() -> list[str]:
    return no_extras.blocked_modules()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plain-install")


def _run_module(
    blocked: list[str], cwd: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SPENDGATE_", "OTEL_"))}
    full_env = {
        **clean,
        "PYTHONPATH": str(ROOT),
        "HOME": str(cwd),  # `cursor install-hooks` writes ~/.spendgate/cursor.json
        "SPENDGATE_API": "http://127.0.0.1:9",  # nothing listens: the API clients fail fast, cleanly
        no_extras.BLOCKED_ENV: ",".join(blocked),
    }
    return subprocess.run(
        [sys.executable, "-m", "tests.support.no_extras", *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _run_all(blocked: list[str], cwd: Path, argvs: list[list[str]]) -> list[dict[str, Any]]:
    done = _run_module(blocked, cwd, "run", stdin=json.dumps(argvs))
    assert 0 == done.returncode, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def tree(blocked: list[str], home: Path) -> list[dict[str, Any]]:
    done = _run_module(blocked, home, "tree")
    assert 0 == done.returncode, done.stderr
    return json.loads(done.stdout)


def test_the_block_refuses_what_only_the_extras_bring(blocked: list[str]) -> None:
    for module in ("aiohttp", "grpc", "sqlite_utils", "genai_prices", "pydantic", "httpx", "orjson", "uvloop"):
        assert module in blocked
    for module in ("jinja2", "prometheus_client", "botocore", "authlib", "joserfc"):
        assert module in blocked
    for module in ("pytest", "packaging", "openai"):  # the dev extra's
        assert module in blocked
    for module in ("click", "yaml", "opentelemetry", "google"):  # what a base install has
        assert module not in blocked


def test_every_command_is_enumerated(tree: list[dict[str, Any]]) -> None:
    paths = [entry["path"] for entry in tree]
    assert sorted(NEEDS_EXTRA) == sorted(p[0] for p in paths if p[0] in NEEDS_EXTRA)
    for expected in (["keys", "list"], ["budgets", "status"], ["status"], ["cursor", "install-hooks"]):
        assert expected in paths


def assert_every_help_works(results: list[dict[str, Any]]) -> None:
    for result in results:
        assert None is result["exception"], result["exception"]
        assert 0 == result["exit_code"], result
        assert result["output"].startswith("Usage: spendgate"), result


def assert_works_or_names_its_extra(results: list[dict[str, Any]]) -> None:
    """Each command as typed with no arguments: it runs (or fails on usage, or cannot reach the
    collector API), or it needs an extra and prints exactly one line naming it."""
    named: dict[str, str] = {}
    for result in results:
        assert None is result["exception"], result["exception"]
        assert result["exit_code"] in (0, 1, 2), result
        assert "Traceback" not in result["output"], result
        match = MESSAGE.fullmatch(result["output"])
        if result["argv"][0] in NEEDS_EXTRA:
            assert match is not None, result
            assert 1 == result["exit_code"]
            command, extra, install = match.groups()
            assert (" ".join(result["argv"]), extra) == (command, install)
            named[command] = extra
        else:
            assert "needs the '" not in result["output"], result
    assert NEEDS_EXTRA == named


def help_argvs(tree: list[dict[str, Any]]) -> list[list[str]]:
    return [["--help"], *([*entry["path"], "--help"] for entry in tree)]


def leaf_argvs(tree: list[dict[str, Any]]) -> list[list[str]]:
    return [entry["path"] for entry in tree if not entry["group"]]


def test_every_help_works(blocked: list[str], home: Path, tree: list[dict[str, Any]]) -> None:
    results = _run_all(blocked, home, help_argvs(tree))
    assert_every_help_works(results)
    # `spendgate --help` ends with which extra each command needs: the same promise as NEEDS_EXTRA.
    listed = {}
    for line in results[0]["output"].split("Extras (pip install 'spendgate[EXTRA]'):\n")[1].splitlines():
        extra, _, names = line.strip().partition(" ")
        listed.update({name: extra for name in names.strip().split(", ") if extra != "none"})
    assert NEEDS_EXTRA == listed


def test_every_command_works_or_names_its_extra(blocked: list[str], home: Path, tree: list[dict[str, Any]]) -> None:
    assert_works_or_names_its_extra(_run_all(blocked, home, leaf_argvs(tree)))


def test_up_as_a_user_runs_it(blocked: list[str], home: Path) -> None:
    # The console script's own path: stderr is the one line, nothing else.
    done = _run_module(blocked, home, "cli", "up", "--demo")
    assert 1 == done.returncode
    assert "" == done.stdout
    assert MESSAGE.fullmatch(done.stderr), done.stderr
    assert done.stderr.startswith("Error: 'spendgate up' needs the 'all' extra: pip install 'spendgate[all]'")


def test_keys_create_list_revoke_on_a_key_file(blocked: list[str], home: Path, tmp_path: Path) -> None:
    keys_file = str(tmp_path / "keys.yaml")
    create = ["keys", "create", "--keys-file", keys_file, "--user", "ana@acme.com", "--team", "platform", "--json"]
    created, listed = _run_all(blocked, home, [create, ["keys", "list", "--keys-file", keys_file, "--json"]])
    assert 0 == created["exit_code"], created
    key = json.loads(created["output"])
    assert key["key"].startswith("sg-")
    rows = json.loads(listed["output"])
    assert [(key["id"], "ana@acme.com", "platform", "active")] == [
        (r["id"], r["user"], r["team"], r["state"]) for r in rows
    ]

    done = _run_module(blocked, home, "cli", "keys", "revoke", key["id"], "--keys-file", keys_file)
    assert 0 == done.returncode, done.stderr
    done = _run_module(blocked, home, "cli", "keys", "list", "--keys-file", keys_file)
    assert 0 == done.returncode, done.stderr
    assert "Traceback" not in done.stderr
    assert ["id", "prefix", "user", "team", "cost_center", "repo", "state", "expires_at"] == done.stdout.split()[:8]
    assert "revoked" in done.stdout.splitlines()[1].split()


def test_budgets_and_status_against_a_running_collector(blocked: list[str], home: Path, tmp_path: Path) -> None:
    # The collector runs here (with its extra); its clients run blocked.
    with run_collector(tmp_path) as running:
        api = ["--api", running.api_url]
        results = _run_all(
            blocked,
            home,
            [
                ["budgets", "set", "platform", "--team", "platform", "--limit", "0.5", *api, "--actor", "ana"],
                ["budgets", "list", *api],
                ["budgets", "status", "platform", *api],
                ["status", *api],
                ["status", "--json", *api],
            ],
        )
    for result in results:
        assert None is result["exception"], result["exception"]
        assert 0 == result["exit_code"], result
    set_, listed, status, screen, as_json = (r["output"] for r in results)
    assert set_.startswith("created budget platform: team=platform, $0.5000 per month")
    assert "platform" in listed.splitlines()[2].split()
    assert "ok" in status.splitlines()[2].split()
    assert "budgets: 1" in screen
    assert "platform" == json.loads(as_json)["budgets"][0]["id"]
