"""``POST /hooks/cursor`` on a live proxy: the hook script run as Cursor runs it, then the developer's
next call through the official ``openai`` client carries the reported repo (source ``cursor-hook``).

Everything is real: the proxy and a simulated provider on loopback, the proxy's span worker, a git
checkout, and the script under the system ``python3`` with the event JSON on stdin.
"""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from spendgate_semconv import attributes as sc
from spendgate_simulator import SimulatorConfig
from spendgate_simulator import create_app as create_simulator
from tests.cursor import test_hook_script as _script
from tests.cursor.test_hook_script import event, free_port, run_hook
from tests.proxy.conftest import PROVIDER_KEY, Gateway, start_gateway
from tests.support.aio_server import ServerHandle, serve_app

TIMINGS: list[float] = []
git_repo = _script.git_repo  # the same real git checkout fixture (origin acme/api, branch feature/budgets)


@pytest.fixture(scope="module")
def simulator() -> Iterator[ServerHandle]:
    with serve_app(lambda: create_simulator(SimulatorConfig(api_key=PROVIDER_KEY))) as sim:
        yield sim


@pytest.fixture
def gateway(tmp_path: Path, simulator: ServerHandle) -> Iterator[Gateway]:
    yield from start_gateway(tmp_path, simulator)


def _hook(gw: Gateway, root: Path, tmp_path: Path, user: str = "ana@acme.com", **extra: object) -> float:
    """Run the hook script against the gateway as Cursor would; returns its wall time in ms."""
    started = time.perf_counter()
    done = run_hook(
        json.dumps(event(root, **extra)).encode(),
        tmp_path,
        SPENDGATE_URL=gw.proxy.url,
        SPENDGATE_KEY=gw.keys[user],
    )
    elapsed = (time.perf_counter() - started) * 1000
    assert 0 == done.returncode
    assert {"continue": True} == json.loads(done.stdout)
    assert b"" == done.stderr
    return elapsed


def _chat(gw: Gateway, user: str = "ana@acme.com") -> dict:
    """One call with the official client; the attributes of its span."""
    gw.clear()
    reply = gw.client(user).chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices
    (span,) = gw.wait_spans(1)
    return dict(span.attributes or {})


def test_a_remote_url_with_credentials_reaches_no_span(gateway: Gateway) -> None:
    # An older or edited script might send the remote with a token in it: the gateway strips it.
    url = "https://ana:ghp_s3cr3t@github.com/acme/api.git?ref=x#frag"
    assert 204 == _post(gateway, {"repo": "api", "repo_url": url}, gateway.keys["ana@acme.com"]).status_code
    attrs = _chat(gateway)
    assert attrs[sc.VCS_REPOSITORY_URL_FULL] == "https://github.com/acme/api.git"
    assert all("s3cr3t" not in str(v) for v in attrs.values())


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        ("https://github.com/acme/api", "https://github.com/acme/api"),
        ("https://x-access-token:tok@github.com/acme/api.git", "https://github.com/acme/api.git"),
        ("ssh://git@gitlab.acme.dev:2222/team/api.git", "ssh://gitlab.acme.dev:2222/team/api.git"),
        ("git@github.com:acme/api.git", "git@github.com:acme/api.git"),
        ("http://u:p@[::1]:8080/r?q=1", "http://[::1]:8080/r"),
        (None, None),
    ],
)
def test_clean_remote_url(url: str | None, clean: str | None) -> None:
    from spendgate_proxy.routes.hooks import clean_remote_url

    assert clean_remote_url(url) == clean


def _post(gw: Gateway, body: object, key: str | None, raw: bytes | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if raw is not None:
        return httpx.post(gw.proxy.url + "/hooks/cursor", content=raw, headers=headers)
    return httpx.post(gw.proxy.url + "/hooks/cursor", json=body, headers=headers)


def test_hook_then_the_next_call_carries_the_repo(gateway: Gateway, git_repo: Path, tmp_path: Path) -> None:
    # Before any report, ana's calls fall back to her key's default repo.
    before = _chat(gateway)
    assert ("acme-api", "key-default") == (before[sc.VCS_REPOSITORY_NAME], before[sc.SPENDGATE_REPO_SOURCE])

    TIMINGS.append(_hook(gateway, git_repo, tmp_path))
    after = _chat(gateway)
    assert ("api", "feature/budgets", "https://github.com/acme/api", "cursor-hook") == (
        after[sc.VCS_REPOSITORY_NAME],
        after[sc.VCS_REF_HEAD_NAME],
        after[sc.VCS_REPOSITORY_URL_FULL],
        after[sc.SPENDGATE_REPO_SOURCE],
    )
    # Other developers are not touched by ana's window.
    other = _chat(gateway, "bo@acme.com")
    assert sc.RepoSource.CURSOR_HOOK != other.get(sc.SPENDGATE_REPO_SOURCE)
    # The key never shows up in the span.
    assert all(gateway.keys["ana@acme.com"] not in str(v) for v in after.values())

    # Time the script end to end against the live gateway (reported, not asserted tightly).
    for _ in range(9):
        TIMINGS.append(_hook(gateway, git_repo, tmp_path))
    median = statistics.median(TIMINGS)
    print(f"\nhook script against a live proxy: median {median:.0f} ms over {len(TIMINGS)} runs")
    assert median < 1000


def test_latest_report_wins_between_two_checkouts(gateway: Gateway, tmp_path: Path) -> None:
    key = gateway.keys["ana@acme.com"]
    assert 204 == _post(gateway, {"repo": "api", "branch": "main"}, key).status_code
    assert 204 == _post(gateway, {"repo": "web", "branch": "next"}, key).status_code
    attrs = _chat(gateway)
    assert ("web", "next", "cursor-hook") == (
        attrs[sc.VCS_REPOSITORY_NAME],
        attrs[sc.VCS_REF_HEAD_NAME],
        attrs[sc.SPENDGATE_REPO_SOURCE],
    )


def test_script_exits_0_fast_with_the_gateway_down(git_repo: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    done = run_hook(
        json.dumps(event(git_repo)).encode(),
        tmp_path,
        SPENDGATE_URL=f"http://127.0.0.1:{free_port()}",
        SPENDGATE_KEY="sg-whatever",
    )
    elapsed = (time.perf_counter() - started) * 1000
    assert (0, b"") == (done.returncode, done.stderr)
    assert elapsed < 2000  # the script's own deadline is 300 ms; this only catches a hang


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"repo": 7}, "repo"),
        ({"repo": "api", "branch": ["main"]}, "branch"),
        ({"repo": "api", "workspace_root": {"a": 1}}, "workspace_root"),
        ({"repo": "api", "repo_url": "x" * 5000}, "repo_url"),
        ({"repo": "api", "user_email": True}, "user_email"),
    ],
)
def test_bad_fields_get_a_400_naming_the_field(gateway: Gateway, body: dict, param: str) -> None:
    resp = _post(gateway, body, gateway.keys["ana@acme.com"])
    assert 400 == resp.status_code
    error = resp.json()["error"]
    assert ("invalid_request_error", "invalid_hook_report", param) == (error["type"], error["code"], error["param"])
    assert param in error["message"]


def test_malformed_and_oversized_bodies(gateway: Gateway) -> None:
    key = gateway.keys["ana@acme.com"]
    assert "invalid_json" == _post(gateway, None, key, raw=b"{not json").json()["error"]["code"]
    assert "invalid_json" == _post(gateway, None, key, raw=b"[1, 2]").json()["error"]["code"]
    big = _post(gateway, None, key, raw=json.dumps({"repo": "api", "pad": "x" * 20_000}).encode())
    assert (413, "request_too_large") == (big.status_code, big.json()["error"]["code"])
    # A report with no workspace (the script found no root) is valid and changes nothing.
    assert 204 == _post(gateway, {"repo": None, "hook_event_name": "afterFileEdit"}, key).status_code
    assert "key-default" == _chat(gateway)[sc.SPENDGATE_REPO_SOURCE]


def test_bad_or_missing_key_gets_the_chat_routes_401(gateway: Gateway) -> None:
    for key, code in ((None, "missing_api_key"), ("sg-not-a-real-key", "invalid_api_key")):
        resp = _post(gateway, {"repo": "api"}, key)
        assert 401 == resp.status_code
        error = resp.json()["error"]
        assert (code, "authentication_error") == (error["code"], error["type"])
        # Exactly what the chat route answers for the same key.
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        chat = httpx.post(gateway.proxy.url + "/v1/chat/completions", json={"model": "gpt-4.1"}, headers=headers)
        assert (chat.status_code, chat.json()) == (resp.status_code, resp.json())
    # Nothing was stored: ana's calls are still on her key's default.
    assert "key-default" == _chat(gateway)[sc.SPENDGATE_REPO_SOURCE]


def test_the_window_lapses_after_its_ttl(tmp_path: Path, simulator: ServerHandle) -> None:
    # 1.5 s leaves room for the first call on a loaded CI machine; the test then waits it out.
    for gw in start_gateway(tmp_path, simulator, cursor={"hook_window_s": 1.5}):
        assert 204 == _post(gw, {"repo": "api"}, gw.keys["ana@acme.com"]).status_code
        reported = time.monotonic()  # the window was opened before the reply, so it ends before reported + 1.5
        assert "cursor-hook" == _chat(gw)[sc.SPENDGATE_REPO_SOURCE]
        time.sleep(max(0.0, 1.6 - (time.monotonic() - reported)))
        assert "key-default" == _chat(gw)[sc.SPENDGATE_REPO_SOURCE]
