"""Which calls a budget verdict applies to: the one scope rule the collector and every proxy share.

A scope names any of developer (``user``), team, cost centre, repo, virtual key and model; a field
left ``None`` matches every call, so an all-``None`` scope is the whole organisation. The collector
decides verdicts and budget states with it (``budgets/board.py``) and sends it on the control
stream (``control.proto``'s ``Scope``); each proxy enforces the same rule on the request path
(``control/state.py``). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scope:
    """Which calls a verdict applies to: every non-``None`` field must equal the call's."""

    user: str | None = None
    team: str | None = None
    cost_center: str | None = None
    repo: str | None = None
    key_id: str | None = None
    model: str | None = None

    def matches(
        self,
        *,
        user: str | None,
        team: str | None,
        cost_center: str | None,
        repo: str | None,
        key_id: str | None,
        model: str | None,
    ) -> bool:
        """True when the call is in this scope."""
        return (
            (self.key_id is None or self.key_id == key_id)
            and (self.user is None or self.user == user)
            and (self.team is None or self.team == team)
            and (self.cost_center is None or self.cost_center == cost_center)
            and (self.repo is None or self.repo == repo)
            and (self.model is None or self.model == model)
        )
