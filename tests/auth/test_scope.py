"""scope_filter and the budget helpers: each role's slice, refusals, and the store's IN condition on real SQLite."""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
from datetime import date
from pathlib import Path

import pytest

from spendgate_collector.auth import Forbidden, Identity, Role, can_manage_budget, can_see_budget, scope_filter
from spendgate_collector.budgets.model import parse_budget
from spendgate_collector.store.query import SpendFilter
from spendgate_collector.store.sqlite import SQLiteStore
from tests.collector.test_store import record

ADMIN = Identity("a", Role.ADMIN, email="root@acme.com")
FINANCE = Identity("f", Role.FINANCE, email="fin@acme.com")
LEAD_ONE = Identity("l1", Role.LEAD, email="lea@acme.com", teams=("platform",))
LEAD_TWO = Identity("l2", Role.LEAD, email="leo@acme.com", teams=("platform", "mobile"))
DEV = Identity("d", Role.DEVELOPER, email="ana@acme.com", teams=("platform",))


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteStore(tmp_path / "s.db")
    s.write(
        [
            record(1, developer="ana@acme.com", team="platform"),
            record(2, developer="bob@acme.com", team="mobile"),
            record(3, developer="cy@acme.com", team="web"),
            record(4, developer="dee@acme.com", team="platform"),
        ]
    )
    yield s
    s.close()


def developers(store: SQLiteStore, flt: SpendFilter) -> list[str]:
    return sorted(row["developer"] for row in store.spend(flt, ("developer",)))


@pytest.mark.parametrize("who", [ADMIN, FINANCE])
def test_admin_and_finance_see_everything(store: SQLiteStore, who: Identity) -> None:
    flt = SpendFilter(equals=(("team", "web"),))
    assert flt == scope_filter(who, flt)
    assert ["ana@acme.com", "bob@acme.com", "cy@acme.com", "dee@acme.com"] == developers(
        store, scope_filter(who, SpendFilter())
    )


def test_developer_sees_only_their_own_usage(store: SQLiteStore) -> None:
    assert ["ana@acme.com"] == developers(store, scope_filter(DEV, SpendFilter()))
    own = SpendFilter(equals=(("developer", "ana@acme.com"),))
    assert ["ana@acme.com"] == developers(store, scope_filter(DEV, own))
    with pytest.raises(Forbidden):
        scope_filter(DEV, SpendFilter(equals=(("developer", "bob@acme.com"),)))
    with pytest.raises(Forbidden):
        scope_filter(Identity("x", Role.DEVELOPER), SpendFilter())


def test_lead_with_one_team_gets_an_equality_and_with_several_an_in_condition(store: SQLiteStore) -> None:
    one = scope_filter(LEAD_ONE, SpendFilter())
    assert (("team", "platform"),) == one.equals
    assert ["ana@acme.com", "dee@acme.com"] == developers(store, one)
    two = scope_filter(LEAD_TWO, SpendFilter(start=date(2026, 11, 1), end=date(2026, 11, 30)))
    assert (("team", ("platform", "mobile")),) == two.within
    assert ["ana@acme.com", "bob@acme.com", "dee@acme.com"] == developers(store, two)
    # Monthly rollups answer the chargeback; the IN condition must hold there too.
    assert ["mobile", "platform", "platform"] == sorted(row["team"] for row in store.chargeback(two))
    assert ["bob@acme.com"] == developers(store, scope_filter(LEAD_TWO, SpendFilter(equals=(("team", "mobile"),))))
    with pytest.raises(Forbidden):
        scope_filter(LEAD_ONE, SpendFilter(equals=(("team", "web"),)))
    with pytest.raises(Forbidden):
        scope_filter(Identity("x", Role.LEAD, email="x@acme.com"), SpendFilter())


def test_empty_in_condition_matches_nothing(store: SQLiteStore) -> None:
    assert [] == developers(store, SpendFilter(within=(("team", ()),)))


def budget(**scope: str):
    return parse_budget({"id": "b", "name": "b", "scope": scope, "period": "month", "limit_usd": 10})


@pytest.mark.parametrize(
    ("scope", "admin", "finance", "lead", "developer"),
    [
        ({}, "rw", "r", "r", "r"),
        ({"team": "platform"}, "rw", "r", "rw", "r"),
        ({"team": "mobile"}, "rw", "r", "rw", "-"),
        ({"team": "web"}, "rw", "r", "-", "-"),
        ({"user": "ana@acme.com"}, "rw", "r", "-", "r"),
        ({"user": "bob@acme.com"}, "rw", "r", "-", "-"),
        ({"team": "platform", "user": "bob@acme.com"}, "rw", "r", "rw", "-"),
        ({"repo": "acme-api"}, "rw", "r", "r", "r"),
        ({"key_id": "k1"}, "rw", "r", "-", "-"),
    ],
)
def test_budget_visibility_and_management(
    scope: dict[str, str], admin: str, finance: str, lead: str, developer: str
) -> None:
    b = budget(**scope)
    for who, expected in ((ADMIN, admin), (FINANCE, finance), (LEAD_TWO, lead), (DEV, developer)):
        got = ("r" if can_see_budget(who, b.scope_dict) else "") + ("w" if can_manage_budget(who, b.scope_dict) else "")
        assert (expected if expected != "-" else "") == got, who.role
