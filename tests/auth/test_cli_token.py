"""The collector CLIs (budgets, status, report --api) get in with $SPENDGATE_ADMIN_TOKEN when sign-in is on."""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import click
import pytest
from click.testing import CliRunner

from spendgate_collector.budgets.cli import budgets_group
from spendgate_collector.query import status_cli
from spendgate_collector.query.report import ApiSource, ReportError
from tests.support.oidc_idp import ADMIN_TOKEN, OidcStack

BUDGET = ["set", "cli-team", "--limit", "50", "--period", "month", "--team", "platform"]


def test_without_the_token_the_clis_are_refused(oidc_stack: OidcStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPENDGATE_ADMIN_TOKEN", raising=False)
    with pytest.raises(click.ClickException, match="401"):
        status_cli.collect(oidc_stack.api_url)
    with pytest.raises(ReportError, match="401"):
        ApiSource(oidc_stack.api_url).spend({})
    result = CliRunner().invoke(budgets_group, ["list", "--api", oidc_stack.api_url])
    assert 0 != result.exit_code


def test_with_the_token_the_clis_act_as_admin(oidc_stack: OidcStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDGATE_ADMIN_TOKEN", ADMIN_TOKEN)
    assert "ok" == status_cli.collect(oidc_stack.api_url)["health"]["status"]
    assert [] == ApiSource(oidc_stack.api_url).spend({})
    result = CliRunner().invoke(budgets_group, [*BUDGET, "--api", oidc_stack.api_url, "--actor", "ops"])
    assert 0 == result.exit_code, result.output
    audit = oidc_stack.client(headers=oidc_stack.admin_token_headers()).get("/api/audit").json()["entries"]
    assert "ops (admin token)" == audit[0]["actor"]
