"""A Cursor hook report shared across proxies: one collector process, two proxy processes.

The hook reaches proxy A; the developer's next calls land on proxy B, which must know the repo at
request time (the repo's budget shows in B's reply headers, and the repo's pause refuses the call
on B while another developer on B is served). The collector stores the calls under the repo.
"""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx

from tests import test_budget_loop as _loop
from tests.cursor import test_hook_script as _script
from tests.cursor.test_hook_script import event, run_hook
from tests.test_budget_loop import Loop, _wait

# The real-process harness (collector + two proxies + simulated provider) and a real git checkout.
loop = _loop.loop
git_repo = _script.git_repo


def test_hook_on_proxy_a_attributes_and_pauses_calls_on_proxy_b(loop: Loop, git_repo: Path, tmp_path: Path) -> None:
    a, b = loop.proxies
    loop.budget(
        "api-repo",
        {"name": "api repo", "scope": {"repo": "api"}, "period": "month", "limit_usd": 0.003, "owner": "lead@acme.com"},
    )
    done = run_hook(
        json.dumps(event(git_repo)).encode(),
        tmp_path,
        SPENDGATE_URL=f"http://127.0.0.1:{a}",
        SPENDGATE_KEY=loop.keys["ana@acme.com"],
    )
    assert (0, b"") == (done.returncode, done.stderr)

    # B learns ana's window through the collector: her replies on B fall within the repo's budget.
    _wait(
        lambda: loop.call(b, "ana@acme.com").headers.get("x-spendgate-budget") == "api-repo",
        15,
        "proxy B to attribute ana's call to the hook's repo",
    )
    assert loop.call(b, "bo@acme.com").headers.get("x-spendgate-budget") is None
    forwards = httpx.get(f"http://127.0.0.1:{a}/healthz").json()["control"]["hook_forwards"]
    assert forwards["sent"] >= 1 and 0 == forwards["dropped"]

    # The repo's pause applies at request time on B to ana's hook-attributed calls, not to bo's.
    sent = 0
    while loop.call(b, "ana@acme.com").status_code != 402:
        sent += 1
        assert sent < 200, "the repo budget never paused"
    error = loop.call(b, "ana@acme.com").json()["error"]
    assert ("budget_paused" == error["code"] and "api repo" in error["message"]) or "api-repo" in error["message"]
    assert 200 == loop.call(b, "bo@acme.com").status_code

    # The collector stored ana's calls under the repo, branch and source (read from its SQLite file).
    with sqlite3.connect(loop.tmp / "spend.db") as db:
        rows = set(
            db.execute("SELECT developer, repo, branch, repo_source FROM spend WHERE developer = 'ana@acme.com'")
        )
    assert ("ana@acme.com", "api", "feature/budgets", "cursor-hook") in rows
