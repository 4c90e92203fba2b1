"""The auth section: validation errors that name the field, secrets from the environment, claim mapping."""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
from pathlib import Path

import pytest

from spendgate_collector.auth import Forbidden, Role
from spendgate_collector.auth.claims import identity_from_claims
from spendgate_collector.auth.config import OidcConfig
from spendgate_collector.errors import ConfigError
from tests.collector.conftest import run_collector

OIDC = {"issuer": "https://idp.acme.com", "client_id": "sg", "public_url": "https://spend.acme.com"}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"api": "0.0.0.0:8788"}, "auth.mode"),
        ({"api": "10.0.0.5:8788", "auth": {"mode": "open"}}, "auth.mode"),
        ({"auth": {"mode": "oidc"}}, "auth.oidc.issuer"),
        ({"auth": {"mode": "oidc", "oidc": {**OIDC, "public_url": None}}}, "auth.oidc.public_url"),
        ({"auth": {"mode": "oidc", "oidc": {**OIDC, "issuer": "http://idp.acme.com"}}}, "auth.oidc.issuer"),
        ({"auth": {"mode": "oidc", "oidc": {**OIDC, "scopes": ["email"]}}}, "auth.oidc.scopes"),
        ({"auth": {"mode": "sso"}}, "auth.mode"),
        ({"auth": {"mode": "oidc", "oidc": {**OIDC, "role_map": {"owner": ["x"]}}}}, "auth.oidc.role_map.owner"),
    ],
)
def test_bad_settings_name_the_field(settings: dict, named: str) -> None:
    from spendgate_collector.config import load_config

    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(environ={}, **settings)


def test_oidc_may_listen_beyond_loopback_and_open_on_loopback() -> None:
    from spendgate_collector.config import load_config

    assert "oidc" == load_config(environ={}, api="0.0.0.0:8788", auth={"mode": "oidc", "oidc": OIDC}).auth.mode
    assert "open" == load_config(environ={}, api="[::1]:8788").auth.mode
    env = {
        "SPENDGATE_COLLECTOR_AUTH": '{"mode": "oidc", "oidc": {"issuer": "https://i", "client_id": "c", '
        '"public_url": "https://p"}}'
    }
    assert "oidc" == load_config(environ=env).auth.mode


def test_a_short_admin_token_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDGATE_ADMIN_TOKEN", "short")
    with pytest.raises(ConfigError, match=r"auth\.admin_token_env") as err, run_collector(tmp_path):
        pass
    assert "short" not in str(err.value).replace("shorter", "")


def _cfg(**kw: object) -> OidcConfig:
    return OidcConfig(**{**OIDC, "role_map": {"admin": ["a"], "finance": ["f"], "lead": ["l"]}, **kw})


def test_claims_map_to_roles_in_priority_order() -> None:
    base = {"sub": "s1", "email": "x@acme.com", "email_verified": True}
    assert Role.ADMIN == identity_from_claims({**base, "groups": ["l", "a"]}, _cfg()).role
    assert Role.FINANCE == identity_from_claims({**base, "groups": ["f", "l"]}, _cfg()).role
    lead = identity_from_claims({**base, "groups": "l", "teams": ["web", 3, ""]}, _cfg())
    assert (Role.LEAD, ("web",)) == (lead.role, lead.teams)
    assert Role.DEVELOPER == identity_from_claims({**base, "groups": ["other"]}, _cfg()).role
    with pytest.raises(Forbidden):
        identity_from_claims({**base, "groups": ["other"]}, _cfg(default_role=None))
    with pytest.raises(Forbidden):
        identity_from_claims({**base, "email_verified": False}, _cfg())
    assert () == identity_from_claims({**base, "teams": ["web"]}, _cfg(teams_claim=None)).teams
