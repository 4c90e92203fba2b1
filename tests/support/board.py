"""Read a collector's ``ControlLog`` back as the budgets' own ``Verdict`` / ``BudgetState`` values.

The budget engine publishes typed verdicts into the control log, which keeps them only in wire form
(what proxies receive). Budget tests assert on the typed values, so this decodes the wire form; a
field lost or garbled on the way to the wire therefore fails those tests too. Empty strings on the
wire are absent values (``None``), as the proxy reads them.
"""

from __future__ import annotations

from spendgate_collector.budgets.board import PAUSE, ROUTE, BudgetState, Scope, Verdict
from spendgate_collector.control import ControlLog
from spendgate_semconv import control_pb2

_ACTIONS = {control_pb2.Verdict.PAUSE: PAUSE, control_pb2.Verdict.ROUTE: ROUTE}


def _scope(s: control_pb2.Scope) -> Scope:
    return Scope(
        user=s.user or None,
        team=s.team or None,
        cost_center=s.cost_center or None,
        repo=s.repo or None,
        key_id=s.key_id or None,
        model=s.model or None,
    )


def in_force(log: ControlLog) -> list[Verdict]:
    """Every verdict the log holds, in the order they were put in force."""
    return [
        Verdict(
            id=v.id,
            action=_ACTIONS[v.action],
            scope=_scope(v.scope),
            budget_id=v.budget_id,
            reason=v.reason,
            spend_usd=v.spend_usd,
            limit_usd=v.limit_usd,
            since_ms=v.since_ms,
            until_ms=v.until_ms,
            route_from=v.route_from or None,
            route_to=v.route_to or None,
            override_hint=v.override_hint,
        )
        for v in log.verdicts.values()
    ]


def budget_states(log: ControlLog) -> list[BudgetState]:
    """Every budget state the log holds."""
    return [
        BudgetState(
            budget_id=b.budget_id,
            scope=_scope(b.scope),
            limit_usd=b.limit_usd,
            spend_usd=b.spend_usd,
            period_start_ms=b.period_start_ms,
            period_end_ms=b.period_end_ms,
            state=b.state,
            lifted=b.lifted,
        )
        for b in log.budgets.values()
    ]
