"""semconv's scope rule: a field left None matches every call, a given one must be equal."""

from __future__ import annotations

import pytest

from spendgate_semconv.scope import Scope

CALL = {"user": "ana@acme.com", "team": "platform", "cost_center": "cc-1", "repo": "api", "key_id": "k1", "model": "m"}


def test_an_empty_scope_is_the_whole_organisation() -> None:
    assert Scope().matches(**CALL)
    assert Scope().matches(user=None, team=None, cost_center=None, repo=None, key_id=None, model=None)


@pytest.mark.parametrize("field", sorted(CALL))
def test_each_field_must_equal_the_calls(field: str) -> None:
    assert Scope(**{field: CALL[field]}).matches(**CALL)
    assert not Scope(**{field: "other"}).matches(**CALL)
    assert not Scope(**{field: CALL[field]}).matches(**{**CALL, field: None})


def test_every_given_field_must_match_at_once() -> None:
    scope = Scope(team="platform", repo="api")
    assert scope.matches(**CALL)
    assert not scope.matches(**{**CALL, "repo": "web"})
