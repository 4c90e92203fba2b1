"""``RepoChain`` on its own: the order of the sources, the branch rule, and that a stronger source
spares the request path the weaker ones (no hook lookup, no prompt read)."""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from spendgate_proxy.attribution.chain import Attribution, RepoChain
from spendgate_proxy.attribution.hook_window import HookAttribution, HookWindows
from spendgate_proxy.keys import Principal
from spendgate_semconv.attributes import RepoSource

ANA = Principal("key_ana", "ana@acme.com", repo="acme-api")
NOBODY = Principal("key_ci", "", repo=None)  # a key without a user: windows are keyed by key id
PROMPT = "<user_info>\nThe absolute path of the user's workspace is /Users/ana/src/billing-service.\n</user_info>"
BODY = {"model": "gpt-4.1", "messages": [{"role": "system", "content": PROMPT}]}
NOW = 1_000 * 10**9


class Watched(Mapping[str, Any]):
    """A body that counts reads, to show when the prompt was (not) looked at."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body, self.reads = body, 0

    def __getitem__(self, key: str) -> Any:
        self.reads += 1
        return self.body[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.body)

    def __len__(self) -> int:
        return len(self.body)


class CountingHooks:
    def __init__(self, windows: HookWindows) -> None:
        self.windows, self.lookups = windows, 0

    def lookup(self, user: str | None, now_ns: int) -> HookAttribution | None:
        self.lookups += 1
        return self.windows.lookup(user, now_ns)


def hook(repo: str, branch: str | None = "main") -> HookAttribution:
    return HookAttribution(repo, branch, None, None, NOW - 10**9, NOW + 10**9)


def chain(windows: HookWindows | None = None, **kwargs: Any) -> tuple[RepoChain, CountingHooks]:
    hooks = CountingHooks(windows or HookWindows())
    return RepoChain(["gpt-4.1", "claude-sonnet-4-6", "openai/gpt-4o"], hooks=hooks, **kwargs), hooks


def test_split_model() -> None:
    c, _ = chain()
    assert ("gpt-4.1", None) == c.split_model("gpt-4.1")
    assert ("claude-sonnet-4-6", "acme-api") == c.split_model("acme-api/claude-sonnet-4-6")
    assert ("claude-sonnet-4-6-thinking", "acme/api") == c.split_model("acme/api/claude-sonnet-4-6-thinking")
    assert ("openai/gpt-4o", None) == c.split_model("openai/gpt-4o")  # a configured provider-style id
    assert ("openai/gpt-4.1", None) == c.split_model("openai/gpt-4.1")  # a provider namespace, never a repo
    assert ("acme-api/gpt-9", None) == c.split_model("acme-api/gpt-9")  # not a configured model


@pytest.mark.parametrize(
    ("headers", "prefix", "alias", "want"),
    [
        ({"x-spendgate-repo": "h"}, {}, None, Attribution("h", RepoSource.HEADER)),
        ({}, {"repo": "p", "branch": "b"}, None, Attribution("p", RepoSource.PATH_PREFIX, "b")),
        ({"x-spendgate-branch": "b"}, {}, "a", Attribution("a", RepoSource.MODEL_ALIAS, "b")),
    ],
)
def test_a_stronger_source_skips_the_hook_and_the_prompt(
    headers: dict[str, str], prefix: dict[str, str], alias: str | None, want: Attribution
) -> None:
    windows = HookWindows()
    windows.report("ana@acme.com", hook("from-hook"))
    c, hooks = chain(windows)
    body = Watched(BODY)
    assert want == c.resolve(headers, prefix, ANA, now_ns=NOW, alias_repo=alias, body=body)
    assert (0, 0) == (hooks.lookups, body.reads)


def test_hook_then_prompt_then_key() -> None:
    windows = HookWindows()
    windows.report("ana@acme.com", hook("from-hook", "feat/x"))
    windows.report("key_ci", hook("ci-repo", None))
    c, hooks = chain(windows)
    body = Watched(BODY)
    assert Attribution("from-hook", RepoSource.CURSOR_HOOK, "feat/x") == c.resolve({}, {}, ANA, now_ns=NOW, body=body)
    assert 0 == body.reads  # the hook answered: the prompt is never read
    assert Attribution("ci-repo", RepoSource.CURSOR_HOOK) == c.resolve({}, {}, NOBODY, now_ns=NOW, body=body)
    later = NOW + 2 * 10**9  # both windows have expired
    assert Attribution("billing-service", RepoSource.PROMPT_WORKSPACE) == c.resolve(
        {}, {}, ANA, now_ns=later, body=body
    )
    assert Attribution("acme-api", RepoSource.KEY_DEFAULT) == c.resolve({}, {}, ANA, now_ns=later, body={})
    assert Attribution() == c.resolve({}, {}, NOBODY, now_ns=later, body={"messages": []})
    assert 5 == hooks.lookups


def test_prompt_off_and_rules() -> None:
    off, _ = chain(prompt_workspace=False)
    body = Watched(BODY)
    assert Attribution("acme-api", RepoSource.KEY_DEFAULT) == off.resolve({}, {}, ANA, now_ns=NOW, body=body)
    assert 0 == body.reads
    ruled, _ = chain(workspace_rules=[{"pattern": "/Users/*/src/billing-*", "repo": "billing"}])
    assert "billing" == ruled.resolve({}, {}, ANA, now_ns=NOW, body=BODY).repo


def test_bad_rules_raise() -> None:
    with pytest.raises(ValueError, match="rule 0"):
        RepoChain([], workspace_rules=[{"regex": "("}])
