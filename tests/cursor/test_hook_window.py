"""HookWindows: per-developer windows, refresh, latest report wins, expiry and the size cap."""

from __future__ import annotations

import pytest

from spendgate_proxy.attribution.hook_window import HookAttribution, HookWindows, developer_of

S = 1_000_000_000


def _att(repo: str, since: int, ttl: int = 60, branch: str | None = "main") -> HookAttribution:
    url = f"https://github.com/acme/{repo}"
    return HookAttribution(repo, branch, url, f"/src/{repo}", since * S, (since + ttl) * S)


def test_lookup_within_and_after_the_window() -> None:
    w = HookWindows()
    w.report("jane@acme.dev", _att("api", 100))
    assert w.lookup("jane@acme.dev", 130 * S).repo == "api"
    assert w.lookup("bob@acme.dev", 130 * S) is None
    assert w.lookup(None, 130 * S) is None
    assert w.lookup("jane@acme.dev", 160 * S) is None
    assert len(w) == 0  # dropped lazily by the lookup that found it expired


def test_refresh_keeps_since_and_extends_until() -> None:
    w = HookWindows()
    w.report("jane", _att("api", 100))
    got = w.report("jane", _att("api", 150))
    assert (got.since_ns, got.until_ns) == (100 * S, 210 * S)
    assert w.lookup("jane", 200 * S) == got


def test_latest_report_wins_when_two_repos_are_open() -> None:
    w = HookWindows()
    w.report("jane", _att("api", 100))
    got = w.report("jane", _att("web", 110))
    assert got.since_ns == 110 * S  # a switch starts a new window
    assert w.lookup("jane", 111 * S).repo == "web"
    w.report("jane", _att("api", 120))
    assert w.lookup("jane", 121 * S).repo == "api"


def test_apply_never_replaces_a_newer_window() -> None:
    w = HookWindows()
    w.report("jane", _att("web", 200))
    assert not w.apply("jane", _att("api", 150))
    assert w.lookup("jane", 201 * S).repo == "web"
    assert w.apply("jane", _att("api", 250))
    assert w.lookup("jane", 251 * S).repo == "api"


def test_memory_is_bounded_oldest_report_evicted() -> None:
    w = HookWindows(max_developers=3)
    for i in range(5):
        w.report(f"dev{i}", _att("api", 100 + i, ttl=1000))
    assert len(w) == 3
    assert w.evicted == 2
    assert w.lookup("dev0", 110 * S) is None
    assert w.lookup("dev4", 110 * S) is not None


def test_reports_sweep_expired_entries() -> None:
    w = HookWindows()
    w.report("old", _att("api", 0, ttl=10))
    w.report("new", _att("api", 100))
    assert "old" not in w.snapshot(0)
    assert len(w) == 1


def test_developer_falls_back_to_key_id() -> None:
    assert developer_of("jane@acme.dev", "key_1") == "jane@acme.dev"
    assert developer_of("", "key_1") == "key_1"
    with pytest.raises(ValueError):
        HookWindows(max_developers=0)
