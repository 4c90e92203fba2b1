"""The hook script run as Cursor runs it: system ``python3``, event JSON on stdin, a real git repo,
and a real HTTP receiver on loopback standing in for the gateway's ``/hooks/cursor`` endpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from spendgate_proxy.attribution.workspace import normalise_remote_url
from spendgate_proxy.cursor import hook_script
from tests.support.aio_server import ServerHandle, serve_app

SCRIPT = Path(hook_script.__file__)
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else (shutil.which("python3") or sys.executable)
"""The system interpreter, as the hook runs in Cursor (a pyenv shim on PATH adds ~100 ms of bash)."""
KEY = "sg-dev-test-key-0123456789"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def git_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("acme-checkout")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, env=env)

    git("init", "-q")
    git("remote", "add", "origin", "git@github.com:acme/api.git")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "init")
    git("checkout", "-q", "-b", "feature/budgets")
    return root


class Receiver:
    """Records every POST to /hooks/cursor; ``delay`` makes it hang, to exercise the deadline."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict]] = []
        self.delay = 0.0

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            if self.delay:
                await asyncio.sleep(self.delay)
            self.requests.append((dict(request.headers), await request.json()))
            return web.json_response({"ok": True}, status=202)

        app = web.Application()
        app.router.add_post("/hooks/cursor", handle)
        return app


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, ServerHandle]]:
    rec = Receiver()
    with serve_app(rec.app) as handle:
        yield rec, handle


def event(root: Path, name: str = "beforeSubmitPrompt", **extra: object) -> dict:
    return {
        "conversation_id": "c0a8f7e2-conv",
        "generation_id": "9d1e-gen",
        "model": "claude-sonnet-4-6",
        "cursor_version": "2.1.0",
        "workspace_roots": [str(root), "/somewhere/else"],
        "user_email": "jane@acme.dev",
        "hook_event_name": name,
        **extra,
    }


def run_hook(
    stdin: bytes, tmp_path: Path, args: tuple[str, ...] = (), label: str = "", **env: str
) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SPENDGATE_")}
    full_env = {**clean, "HOME": str(tmp_path), "SPENDGATE_CURSOR_CONFIG": str(tmp_path / "none.json"), **env}
    started = time.perf_counter()
    done = subprocess.run([PYTHON, str(SCRIPT), *args], input=stdin, capture_output=True, env=full_env, timeout=10)
    if label:
        TIMINGS[label] = (time.perf_counter() - started) * 1000
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reports_repo_branch_and_key(git_repo: Path, receiver: tuple[Receiver, ServerHandle], tmp_path: Path):
    rec, handle = receiver
    done = run_hook(
        json.dumps(event(git_repo)).encode(), tmp_path, label="report", SPENDGATE_URL=handle.url, SPENDGATE_KEY=KEY
    )
    assert done.returncode == 0
    assert done.stdout == b'{"continue": true}\n'  # what beforeSubmitPrompt expects, nothing else
    assert done.stderr == b""
    assert len(rec.requests) == 1
    headers, payload = rec.requests[0]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["Content-Type"] == "application/json"
    sent_at = payload.pop("sent_at")
    assert sent_at.endswith("+00:00") and "T" in sent_at
    assert payload == {
        "conversation_id": "c0a8f7e2-conv",
        "generation_id": "9d1e-gen",
        "model": "claude-sonnet-4-6",
        "workspace_root": str(git_repo),
        "repo_url": "https://github.com/acme/api",
        "repo": "api",
        "branch": "feature/budgets",
        "hook_event_name": "beforeSubmitPrompt",
        "user_email": "jane@acme.dev",
        "cursor_version": "2.1.0",
    }


def test_not_a_git_repo_reports_folder_name(receiver: tuple[Receiver, ServerHandle], tmp_path: Path):
    rec, handle = receiver
    folder = tmp_path / "scratch-notes"
    folder.mkdir()
    done = run_hook(
        json.dumps(event(folder, "afterFileEdit")).encode(), tmp_path, SPENDGATE_URL=handle.url, SPENDGATE_KEY=KEY
    )
    assert (done.returncode, done.stdout) == (0, b"{}\n")
    payload = rec.requests[0][1]
    assert (payload["repo"], payload["repo_url"], payload["branch"]) == ("scratch-notes", None, None)


def test_gateway_down_exits_zero_silently(git_repo: Path, tmp_path: Path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    done = run_hook(json.dumps(event(git_repo)).encode(), tmp_path, label="down", SPENDGATE_URL=url, SPENDGATE_KEY=KEY)
    assert (done.returncode, done.stdout, done.stderr) == (0, b'{"continue": true}\n', b"")


def test_hanging_gateway_is_cut_at_the_deadline(
    git_repo: Path, receiver: tuple[Receiver, ServerHandle], tmp_path: Path
):
    rec, handle = receiver
    rec.delay = 5.0
    done = run_hook(
        json.dumps(event(git_repo)).encode(), tmp_path, label="hanging", SPENDGATE_URL=handle.url, SPENDGATE_KEY=KEY
    )
    assert (done.returncode, done.stderr) == (0, b"")
    # Generous bound (CI noise); the real guarantee is the script's own deadline, asserted below.
    assert TIMINGS["hanging"] < 1000


def test_deadline_settings():
    assert hook_script.TOTAL_TIMEOUT_S <= 0.3
    assert hook_script.GIT_TIMEOUT_S <= hook_script.TOTAL_TIMEOUT_S


def test_unconfigured_or_garbage_input_is_silent(
    git_repo: Path, receiver: tuple[Receiver, ServerHandle], tmp_path: Path
):
    rec, handle = receiver
    assert run_hook(json.dumps(event(git_repo)).encode(), tmp_path, SPENDGATE_URL=handle.url).stdout == (
        b'{"continue": true}\n'
    )  # no key: nothing sent
    for junk in (b"", b"not json", b"[1, 2]", b'{"workspace_roots": 7}'):
        done = run_hook(junk, tmp_path, SPENDGATE_URL=handle.url, SPENDGATE_KEY=KEY)
        assert (done.returncode, done.stderr) == (0, b"")
        assert json.loads(done.stdout) == {}
    assert len(rec.requests) == 1  # only the last junk ({"workspace_roots": 7}) is a dict: sent, no repo
    assert rec.requests[0][1]["repo"] is None


def test_settings_file_and_gateway_argument(git_repo: Path, receiver: tuple[Receiver, ServerHandle], tmp_path: Path):
    rec, handle = receiver
    config = tmp_path / "cursor.json"
    config.write_text(json.dumps({"key_env": "ACME_SPENDGATE_KEY"}))
    done = run_hook(
        json.dumps(event(git_repo)).encode(),
        tmp_path,
        args=("--gateway", handle.url),
        SPENDGATE_CURSOR_CONFIG=str(config),
        ACME_SPENDGATE_KEY="sg-from-named-var",
    )
    assert done.returncode == 0
    assert rec.requests[0][0]["Authorization"] == "Bearer sg-from-named-var"


@pytest.mark.parametrize(
    "url", ["git@github.com:acme/api.git", "https://u:p@GitHub.com/acme/api.git", "ssh://git@host:22/a/b.git", "x"]
)
def test_script_and_library_normalise_alike(url: str):
    assert hook_script.normalise_remote_url(url) == normalise_remote_url(url)
