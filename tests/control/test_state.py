"""``ControlState``: verdict matching as the request path sees it, and in-order application of updates."""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

from pathlib import Path

import pytest

from spendgate_collector.budgets.board import ROUTE, BudgetState
from spendgate_collector.control import budget_state_message, verdict_message
from spendgate_proxy.control.state import ActiveVerdict, ControlProtocolError, ControlState
from spendgate_proxy.keys import KeyDirectory, Principal, create_key, hash_key, read_key_file
from spendgate_semconv import control_pb2
from tests.control.support import budget_state, verdict

EPOCH = 42
ANA = Principal("key_ana", "ana@acme.com", team="platform", cost_center="CC-1", repo="acme-api")
BO = Principal("key_bo", "bo@acme.com", team="mobile", cost_center="CC-2", repo="acme-ios")


def _state(*verdicts: object, keys: KeyDirectory | None = None) -> ControlState:
    state = ControlState(keys)
    state.apply(
        control_pb2.ControlUpdate(
            version=1,
            epoch=EPOCH,
            snapshot=True,
            verdicts_upsert=[verdict_message(v) for v in verdicts],  # type: ignore[arg-type]
        )
    )
    return state


def _id(found: ActiveVerdict | None) -> str | None:
    return found.id if found else None


def test_no_verdicts_means_none_for_everyone() -> None:
    assert None is ControlState().verdict_for(ANA, "acme-api", "gpt-4o")
    assert None is _state().verdict_for(ANA, "acme-api", "gpt-4o")


def test_a_pause_beats_a_route_whatever_their_age() -> None:
    state = _state(
        verdict("old-route", ROUTE, since_ms=1, route_from="gpt-4o", route_to="gpt-4o-mini", team="platform"),
        verdict("new-pause", since_ms=9, user="ana@acme.com"),
    )
    assert "new-pause" == _id(state.verdict_for(ANA, None, "gpt-4o"))
    assert None is state.verdict_for(BO, None, "gpt-4o")


def test_among_pauses_the_oldest_answers() -> None:
    state = _state(verdict("b", since_ms=5, team="platform"), verdict("a", since_ms=2, repo="acme-api"))
    assert "a" == _id(state.verdict_for(ANA, None, "m"))


@pytest.mark.parametrize(
    ("scope", "ana", "bo"),
    [
        ({}, True, True),  # empty scope: the whole organisation
        ({"user": "ana@acme.com"}, True, False),
        ({"team": "mobile"}, False, True),
        ({"cost_center": "CC-1"}, True, False),
        ({"key_id": "key_bo"}, False, True),
        ({"repo": "acme-api"}, True, False),
        ({"model": "gpt-4o"}, True, True),
        ({"team": "platform", "repo": "acme-ios"}, False, False),  # every set field must match
        ({"team": "platform", "model": "gpt-4o"}, True, False),
    ],
)
def test_pause_scope_fields_must_all_match(scope: dict[str, str], ana: bool, bo: bool) -> None:
    state = _state(verdict("p", **scope))
    assert (ana, bo) == (
        state.verdict_for(ANA, None, "gpt-4o") is not None,
        state.verdict_for(BO, None, "gpt-4o") is not None,
    )


def test_repo_is_the_calls_attributed_repo_else_the_keys_default() -> None:
    state = _state(verdict("p", repo="acme-web"))
    assert None is state.verdict_for(ANA, None, "m")  # ANA's default repo is acme-api
    assert "p" == _id(state.verdict_for(ANA, "acme-web", "m"))


def test_route_applies_to_its_from_model_only_or_to_any_model_when_unset() -> None:
    state = _state(verdict("r", ROUTE, route_from="gpt-4o", route_to="gpt-4o-mini", team="platform"))
    found = state.verdict_for(ANA, None, "gpt-4o")
    assert ("r", "route", "gpt-4o-mini") == (_id(found), found and found.action, found and found.route_to)
    assert None is state.verdict_for(ANA, None, "o3")
    assert None is state.verdict_for(ANA, None, None)
    any_model = _state(verdict("r", ROUTE, route_to="gpt-4o-mini", team="platform"))
    assert "r" == _id(any_model.verdict_for(ANA, None, "o3"))


def test_a_verdict_past_its_until_time_stops_applying_on_its_own() -> None:
    state = _state(verdict("p", team="platform", until_ms=5_000))
    assert "p" == _id(state.verdict_for(ANA, None, "m", now_ms=4_999))
    assert None is state.verdict_for(ANA, None, "m", now_ms=5_000)


def test_many_verdicts_in_other_scopes_do_not_hide_the_one_that_matches() -> None:
    others = [verdict(f"t{i}", team=f"team-{i}") for i in range(200)]
    state = _state(*others, verdict("mine", cost_center="CC-2"))
    assert (None, "mine") == (_id(state.verdict_for(ANA, None, "m")), _id(state.verdict_for(BO, None, "m")))


def _delta(version: int, *, epoch: int = EPOCH, **fields: object) -> control_pb2.ControlUpdate:
    return control_pb2.ControlUpdate(version=version, epoch=epoch, **fields)  # type: ignore[arg-type]


def test_deltas_apply_in_order_and_replays_are_skipped() -> None:
    state = _state()
    assert state.apply(_delta(2, verdicts_upsert=[verdict_message(verdict("p", team="platform"))]))
    assert not state.apply(_delta(2, verdicts_removed=["p"]))  # a replay of version 2: skipped
    assert (2, 1, "p") == (state.version, state.duplicates, _id(state.verdict_for(ANA, None, "m")))
    assert state.apply(_delta(3, verdicts_removed=["p"]))
    assert None is state.verdict_for(ANA, None, "m")
    assert not state.apply(_delta(3, heartbeat=True))


@pytest.mark.parametrize(
    "update",
    [
        _delta(5),  # version 3 and 4 were never seen
        _delta(2, epoch=EPOCH + 1),  # another collector lifetime, without a snapshot
        _delta(4, heartbeat=True),  # the collector is ahead of what this proxy applied
    ],
    ids=["gap", "foreign epoch", "heartbeat ahead"],
)
def test_an_out_of_order_update_is_refused_and_changes_nothing(update: control_pb2.ControlUpdate) -> None:
    state = _state(verdict("p", team="platform"))
    with pytest.raises(ControlProtocolError):
        state.apply(update)
    assert (1, EPOCH, "p") == (state.version, state.epoch, _id(state.verdict_for(ANA, None, "m")))


def test_snapshot_replaces_keys_and_verdicts_and_makes_the_state_ready(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    local_key, _ = create_key(keys_file, user="local@acme.com")
    keys = KeyDirectory(keys_file)
    state = ControlState(keys, on_no_state="fail_closed")
    assert (False, True) == (state.ready, state.should_refuse)
    assert "local@acme.com" == keys.lookup(local_key).user  # before any snapshot: the file

    entry = control_pb2.KeyEntry(
        key_id="key_ana", hash=hash_key("sg-ana"), prefix="sg-ana", user="ana@acme.com", team="platform"
    )
    state.apply(
        control_pb2.ControlUpdate(
            version=7,
            epoch=EPOCH,
            snapshot=True,
            keys_upsert=[entry],
            verdicts_upsert=[verdict_message(verdict("p", team="platform"))],
        )
    )
    assert (True, False, 7, EPOCH) == (state.ready, state.should_refuse, state.version, state.epoch)
    assert "platform" == keys.lookup("sg-ana").team
    with pytest.raises(LookupError, match="unknown virtual key"):
        keys.lookup(local_key)  # the collector's directory replaced the file's
    create_key(keys_file, user="later@acme.com")
    assert not keys.reload_if_changed()  # and the file no longer overrides it

    state.apply(control_pb2.ControlUpdate(version=1, epoch=EPOCH + 1, snapshot=True))  # a restarted collector
    assert (0, 1, EPOCH + 1) == (len(keys), state.version, state.epoch)
    assert None is state.verdict_for(ANA, None, "m")


def test_key_deltas_upsert_revoke_and_remove(tmp_path: Path) -> None:
    keys = KeyDirectory()
    state = ControlState(keys)
    state.apply(control_pb2.ControlUpdate(version=1, epoch=EPOCH, snapshot=True))
    ana = control_pb2.KeyEntry(key_id="key_ana", hash=hash_key("sg-ana"), user="ana@acme.com", models=["gpt-4o"])
    state.apply(_delta(2, keys_upsert=[ana]))
    assert ("ana@acme.com", ("gpt-4o",)) == (keys.lookup("sg-ana").user, keys.lookup("sg-ana").models)

    rotated = control_pb2.KeyEntry(key_id="key_ana", hash=hash_key("sg-ana-2"), user="ana@acme.com")
    state.apply(_delta(3, keys_upsert=[rotated]))
    assert "key_ana" == keys.lookup("sg-ana-2").key_id
    with pytest.raises(LookupError):
        keys.lookup("sg-ana")  # the old hash went with the change

    revoked = control_pb2.KeyEntry(key_id="key_ana", hash=hash_key("sg-ana-2"), user="a@x", revoked_at_unix_ms=1)
    state.apply(_delta(4, keys_upsert=[revoked]))
    with pytest.raises(LookupError, match="revoked"):
        keys.lookup("sg-ana-2")
    expired = control_pb2.KeyEntry(key_id="key_ana", hash=hash_key("sg-ana-2"), user="a@x", expires_at_unix_ms=1)
    state.apply(_delta(5, keys_upsert=[expired]))
    with pytest.raises(LookupError, match="expired"):
        keys.lookup("sg-ana-2")

    state.apply(_delta(6, keys_removed=["key_ana", "key_unknown"]))
    assert 0 == len(keys)


def test_key_entries_round_trip_the_key_file_fields(tmp_path: Path) -> None:
    from spendgate_collector.keys.file import read_key_entries
    from spendgate_proxy.control.state import record_from

    keys_file = tmp_path / "keys.yaml"
    create_key(keys_file, user="ana@acme.com", team="platform", cost_center="CC-1", repo="r", models=("a", "b"))
    (original,) = read_key_file(keys_file)
    (entry,) = read_key_entries(keys_file).values()
    rebuilt = record_from(entry)
    assert original.principal == rebuilt.principal
    assert (original.hash, original.prefix) == (rebuilt.hash, rebuilt.prefix)
    # The wire carries milliseconds: created_at survives to the millisecond.
    assert abs((original.created_at - rebuilt.created_at).total_seconds()) < 0.001


def test_an_org_wide_route_applies_to_everyone_asking_for_its_model() -> None:
    state = _state(verdict("r", ROUTE, route_from="gpt-4.5", route_to="gpt-4.1"))
    assert ("r", "r", None) == (
        _id(state.verdict_for(ANA, None, "gpt-4.5")),
        _id(state.verdict_for(BO, None, "gpt-4.5")),
        _id(state.verdict_for(BO, None, "gpt-4.1")),
    )


def test_a_lapsed_pause_gives_way_to_a_route_still_in_force() -> None:
    state = _state(
        verdict("lapsed", team="platform", since_ms=1, until_ms=5_000),
        verdict("r", ROUTE, route_to="mini", since_ms=2),
    )
    assert "lapsed" == _id(state.verdict_for(ANA, None, "m", now_ms=4_000))
    assert "r" == _id(state.verdict_for(ANA, None, "m", now_ms=6_000))


# --- budget states: the tightest budget a call is within, for response headers


def _budgets(*states: BudgetState) -> ControlState:
    state = ControlState()
    state.apply(
        control_pb2.ControlUpdate(
            version=1, epoch=EPOCH, snapshot=True, budgets_upsert=[budget_state_message(b) for b in states]
        )
    )
    return state


def _budget_id(state: ControlState, principal: Principal, **kwargs: object) -> str | None:
    found = state.budget_for(principal, None, "gpt-4o", **kwargs)  # type: ignore[arg-type]
    return found.budget_id if found else None


def test_no_budgets_means_no_budget_for_anyone() -> None:
    assert None is ControlState().budget_for(ANA, "acme-api", "gpt-4o")
    assert None is _budgets().budget_for(ANA, "acme-api", "gpt-4o")


def test_budget_for_answers_the_tightest_budget_in_scope_with_its_headers() -> None:
    state = _budgets(
        budget_state("platform", limit_usd=10, spend_usd=4, team="platform"),  # 6 left
        budget_state("org", limit_usd=100, spend_usd=97),  # 3 left
        budget_state("bo", limit_usd=1, spend_usd=0.25, state="alert", user="bo@acme.com"),  # 0.75 left
        budget_state("ios", limit_usd=1, spend_usd=0, repo="acme-ios", model="o3"),  # another model
    )
    assert "org" == _budget_id(state, ANA)
    found = state.budget_for(BO, None, "gpt-4o")
    assert found is not None
    assert {
        "x-spendgate-budget": "bo",
        "x-spendgate-budget-remaining-usd": "0.750000",
        "x-spendgate-budget-limit-usd": "1.000000",
        "x-spendgate-budget-reset": "2100-01-01T00:00:00Z",
        "x-spendgate-budget-state": "alert",
    }.items() <= found.headers.items()
    assert "x-spendgate-budget-reset" in found.headers["Access-Control-Expose-Headers"]


def test_a_principal_outside_every_budget_gets_none() -> None:
    state = _budgets(budget_state("platform", spend_usd=1, team="platform"), budget_state("mine", repo="acme-api"))
    assert "platform" == _budget_id(state, ANA)
    assert None is state.budget_for(BO, None, "gpt-4o")
    assert "mine" == _budget_id(_budgets(budget_state("mine", repo="acme-api")), ANA)
    assert None is state.budget_for(BO, "acme-api-fork", "gpt-4o")


def test_lifted_and_ended_budgets_give_no_headers() -> None:
    state = _budgets(
        budget_state("lifted", limit_usd=1, spend_usd=0.9, lifted=True, team="platform"),
        budget_state("ended", period_end_ms=5_000, user="ana@acme.com"),
    )
    assert None is state.budget_for(ANA, None, "m")
    assert "ended" == _budget_id(state, ANA, now_ms=4_999)


def test_budget_deltas_refresh_and_remove_in_order() -> None:
    state = _budgets(
        budget_state("platform", limit_usd=10, spend_usd=4, team="platform"),
        budget_state("org", limit_usd=100, spend_usd=97),
    )
    spent = budget_state_message(budget_state("org", limit_usd=100, spend_usd=50))
    assert state.apply(control_pb2.ControlUpdate(version=2, epoch=EPOCH, budgets_upsert=[spent]))
    assert "platform" == _budget_id(state, ANA)
    assert state.apply(control_pb2.ControlUpdate(version=3, epoch=EPOCH, budgets_removed=["platform"]))
    assert ("org", 3, 1) == (_budget_id(state, ANA), state.version, len(state.budgets()))
    # A replay changes nothing.
    assert not state.apply(control_pb2.ControlUpdate(version=2, epoch=EPOCH, budgets_removed=["org"]))
    assert "org" == _budget_id(state, ANA)


def test_by_repo_is_true_exactly_while_a_verdict_or_budget_is_held() -> None:
    # The hot path resolves a call's attribution before the upstream request only while this is true.
    assert False is ControlState().by_repo
    assert False is _state().by_repo
    state = _state(verdict("p", repo="acme-web"))
    assert True is state.by_repo
    assert state.apply(_delta(2, verdicts_removed=["p"]))
    assert False is state.by_repo
    assert True is _budgets(budget_state("mine", repo="acme-api")).by_repo
